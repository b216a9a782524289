"""FlashVSR: one-step, streaming, diffusion-based video super-resolution."""

__version__ = "0.1.0"


def __getattr__(name):  # lazy: importing the package stays cheap for the CLI
    if name == "Upscaler":
        from .pipeline import Upscaler

        return Upscaler
    raise AttributeError(name)
