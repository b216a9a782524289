"""The small model shipped inside the package, used when no weights folder is given."""

from __future__ import annotations

from pathlib import Path

from .loading import CONFIG_FILE, WeightsError

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "assets" / "flashvsr-small"


def default_model_folder() -> Path:
    if not (BUNDLED_DIR / CONFIG_FILE).is_file():
        raise WeightsError(
            f"the bundled model is missing from {BUNDLED_DIR}; reinstall the package or pass a weights folder"
        )
    return BUNDLED_DIR
