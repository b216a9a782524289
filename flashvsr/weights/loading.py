"""Loading model folders: the official v1 / v1.1 releases and this project's own models.

An official folder holds the four release files of SPEC §1 plus ``posi_prompt.pth`` (the
fixed text embedding, shipped with the reference code). This project's folders hold a
``config.json`` (a :class:`ModelConfig`) and one ``model.safetensors`` with every component
under its prefix (``dit.``, ``lq_proj.``, ``tc_decoder.``, ``vae.``) and the text context as
``context``. Every pickle is read with ``torch.load(weights_only=True)``: no code from a
user's file ever runs. The DiT is built on the meta device and filled tensor by tensor, so
its weights are never held twice.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..config import RELEASE_LQ_PROJ_MODE, ModelConfig, official_config
from ..models import FlashVSRModels

DIT_FILE = "diffusion_pytorch_model_streaming_dmd.safetensors"
LQ_PROJ_FILE = "LQ_proj_in.ckpt"
TC_DECODER_FILE = "TCDecoder.ckpt"
VAE_FILE = "Wan2.1_VAE.pth"
PROMPT_FILE = "posi_prompt.pth"
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
RELEASE_FILE = "flashvsr_release.json"  # optional {"release": "v1.1"} written by the user
CONTEXT_KEY = "context"
MAX_KEYS_SHOWN = 8
PROMPT_HINT = (
    "it ships with the reference code as examples/WanVSR/prompt_tensor/posi_prompt.pth: "
    "copy it into the weights folder or pass its path explicitly"
)


class WeightsError(Exception):
    """A model folder or file that cannot be loaded; the message names the file and keys."""


@dataclass
class LoadReport:
    folder: Path
    release: str
    release_reason: str
    kind: str  # "official" or "flashvsr"
    parameters: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        total = sum(self.parameters.values()) / 1e6
        parts = ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in self.parameters.items())
        what = (f"FlashVSR {self.release} weights ({self.release_reason})" if self.kind == "official"
                else f"model {self.folder.name} (release rule {self.release}, {self.release_reason})")  # fmt: skip
        return f"{what} from {self.folder}: {total:.1f}M parameters ({parts})"


# --------------------------------------------------------------------------------------------
# Release detection


def detect_release(folder: Path, explicit: str | None = None) -> tuple[str, str]:
    """(release, why): an explicit choice, a release file in the folder, or the folder name."""
    if explicit is not None:
        if explicit not in RELEASE_LQ_PROJ_MODE:
            raise WeightsError(f"unknown release {explicit!r}; choose one of {sorted(RELEASE_LQ_PROJ_MODE)}")
        return explicit, "chosen explicitly"
    marker = folder / RELEASE_FILE
    if marker.is_file():
        try:
            release = json.loads(marker.read_text())["release"]
        except (ValueError, KeyError, TypeError) as e:
            raise WeightsError(f"{marker}: expected {{\"release\": \"v1\" | \"v1.1\"}} ({e})") from None
        if release not in RELEASE_LQ_PROJ_MODE:
            raise WeightsError(f"{marker}: unknown release {release!r}")
        return release, f"from {RELEASE_FILE}"
    name = folder.resolve().name.lower()
    if re.search(r"v1[._-]?1(?!\d)", name):
        return "v1.1", f"folder name {folder.resolve().name!r}"
    if re.search(r"v1(?![._-]?\d)", name) or name == "flashvsr":
        return "v1", f"folder name {folder.resolve().name!r}"
    raise WeightsError(
        f"cannot tell whether {folder} holds the v1 or the v1.1 release (mixing them gives ghosting): "
        f"pass the release explicitly (--release v1 or v1.1) or name the folder FlashVSR-v1 / FlashVSR-v1.1"
    )


# --------------------------------------------------------------------------------------------
# Reading files


def read_pickled_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict from a torch pickle, without executing code from the file."""
    if not path.is_file():
        raise WeightsError(f"missing file {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e):
            raise WeightsError(f"{path}: cannot be read as a torch checkpoint ({_first_line(e)})") from None
        obj = _load_without_mmap(path)
    except Exception as e:  # unpickling errors, truncated zips, refused globals
        raise WeightsError(f"{path}: cannot be read as a safe torch checkpoint ({_first_line(e)})") from None
    return _unwrap_state_dict(obj, path)


def _load_without_mmap(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"{path}: cannot be read as a safe torch checkpoint ({_first_line(e)})") from None


def _unwrap_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and not all(torch.is_tensor(v) for v in obj.values()):
        for key in ("state_dict", "model", "module", "params"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors")
    for prefix in ("model.", "module."):
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix) :]: v for k, v in obj.items()}
    return obj


def read_prompt(path: Path) -> torch.Tensor:
    if not path.is_file():
        raise WeightsError(f"missing text-prompt embedding {path}: {PROMPT_HINT}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"{path}: cannot be read as a safe torch tensor file ({_first_line(e)})") from None
    if isinstance(obj, dict) and len(obj) == 1:
        obj = next(iter(obj.values()))
    if not torch.is_tensor(obj) or obj.ndim != 3 or obj.shape[0] != 1:
        raise WeightsError(f"{path}: expected a (1, tokens, dim) tensor, got {type(obj).__name__}")
    return obj.float()


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


# --------------------------------------------------------------------------------------------
# Filling modules


def check_keys(module: nn.Module, found: dict[str, tuple[int, ...]], source: str) -> None:
    """Raise a WeightsError naming ``source`` and the missing, unexpected or mis-shaped keys."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mis_shaped = sorted(k for k in set(expected) & set(found) if tuple(found[k]) != expected[k])
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_show(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_show(unexpected)}")
    if mis_shaped:
        shown = [f"{k} {tuple(found[k])} (expected {expected[k]})" for k in mis_shaped[:MAX_KEYS_SHOWN]]
        problems.append(f"{len(mis_shaped)} keys with the wrong shape: {', '.join(shown)}")
    if problems:
        raise WeightsError(f"{source} does not match the model: " + "; ".join(problems))


def _show(keys: list[str]) -> str:
    more = f" … (+{len(keys) - MAX_KEYS_SHOWN})" if len(keys) > MAX_KEYS_SHOWN else ""
    return ", ".join(keys[:MAX_KEYS_SHOWN]) + more


def fill_module(module: nn.Module, tensors: dict[str, torch.Tensor], source: str, dtype: torch.dtype) -> nn.Module:
    check_keys(module, {k: tuple(v.shape) for k, v in tensors.items()}, source)
    module.load_state_dict({k: v.to(dtype) for k, v in tensors.items()}, strict=True, assign=True)
    return module


def fill_from_safetensors(
    module: nn.Module, path: Path, dtype: torch.dtype, prefix: str = "", device: str = "cpu"
) -> nn.Module:
    """Fill a (meta-device) module from ``path``, converting one tensor at a time."""
    with _open_safetensors(path, device) as f:
        keys = [k[len(prefix) :] for k in f.keys() if k.startswith(prefix)]
        shapes = {k: tuple(f.get_slice(prefix + k).get_shape()) for k in keys}
        check_keys(module, shapes, f"{path}" + (f" [{prefix}*]" if prefix else ""))
        state = {k: f.get_tensor(prefix + k).to(dtype) for k in keys}
    module.load_state_dict(state, strict=True, assign=True)
    return module


def read_safetensors(path: Path, dtype: torch.dtype, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors under ``prefix`` (prefix removed) of one safetensors file, as ``dtype``."""
    with _open_safetensors(path, "cpu") as f:
        return {k[len(prefix) :]: f.get_tensor(k).to(dtype) for k in f.keys() if k.startswith(prefix)}


def _open_safetensors(path: Path, device: str):
    if not path.is_file():
        raise WeightsError(f"missing file {path}")
    try:
        return safe_open(str(path), framework="pt", device=device)
    except Exception as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({_first_line(e)})") from None


def dit_layers_in(path: Path) -> int:
    with _open_safetensors(path, "cpu") as f:
        indices = {int(m.group(1)) for k in f.keys() if (m := re.match(r"blocks\.(\d+)\.", k))}
    if not indices:
        raise WeightsError(f"{path}: no DiT blocks (keys 'blocks.<i>.…') found")
    return max(indices) + 1


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------------------------
# Folders


def load_model(
    folder: str | Path,
    release: str | None = None,
    variants: Iterable[str] = ("tiny",),
    dtype: torch.dtype = torch.bfloat16,
    prompt: str | Path | None = None,
) -> tuple[FlashVSRModels, LoadReport]:
    """Load an official release folder or one of this project's model folders (on CPU)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightsError(f"weights folder {folder} does not exist")
    variants = tuple(variants)
    if (folder / CONFIG_FILE).is_file():
        return _load_flashvsr_folder(folder, release, variants, dtype)
    return _load_official_folder(folder, release, variants, dtype, prompt)


def _load_official_folder(folder, release, variants, dtype, prompt):
    release, why = detect_release(folder, release)
    dit_path = folder / DIT_FILE
    config = official_config(release, num_layers=dit_layers_in(dit_path))
    models = FlashVSRModels.build(config, decoders=variants, device="meta")
    fill_from_safetensors(models.dit, dit_path, dtype)
    fill_module(models.lq_proj, read_pickled_state_dict(folder / LQ_PROJ_FILE), str(folder / LQ_PROJ_FILE), dtype)
    if models.tc_decoder is not None:
        path = folder / TC_DECODER_FILE
        fill_module(models.tc_decoder, read_pickled_state_dict(path), str(path), dtype)
    if models.vae is not None:
        path = folder / VAE_FILE
        fill_module(models.vae, read_pickled_state_dict(path), str(path), dtype)
    models.context = read_prompt(Path(prompt) if prompt else folder / PROMPT_FILE).to(dtype)
    _check_context(models, folder / PROMPT_FILE)
    report = LoadReport(folder, release, why, "official", {k: _count(m) for k, m in models.modules().items()})
    return models, report


VARIANT_COMPONENT = {"tiny": "tc_decoder", "full": "vae"}  # the decoder each variant needs


def folder_variants(folder: Path) -> tuple[str, ...]:
    """The variants a FlashVSR model folder has weights for (e.g. no "full" without a VAE)."""
    with _open_safetensors(Path(folder) / MODEL_FILE, "cpu") as f:
        available = {k.split(".", 1)[0] for k in f.keys()}
    return tuple(v for v, component in VARIANT_COMPONENT.items() if component in available)


def read_folder_config(folder: str | Path) -> ModelConfig:
    """The :class:`ModelConfig` of one of this project's model folders."""
    path = Path(folder) / CONFIG_FILE
    try:
        return ModelConfig.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as e:
        raise WeightsError(f"{path}: invalid model config ({e})") from None


def _load_flashvsr_folder(folder, release, variants, dtype):
    config = read_folder_config(folder)
    why = "from config.json"
    if release is not None and release != config.release:
        raise WeightsError(f"{folder} is a {config.release} model; --release {release} does not apply to it")
    path = folder / MODEL_FILE
    wanted = tuple(v for v in variants if v in folder_variants(folder))
    missing = set(variants) - set(wanted)
    if missing:
        raise WeightsError(f"{path} has no weights for the {', '.join(sorted(missing))} variant")
    models = FlashVSRModels.build(config, decoders=wanted, device="meta")
    for name, module in models.modules().items():
        fill_from_safetensors(module, path, dtype, prefix=f"{name}.")
    with _open_safetensors(path, "cpu") as f:
        if CONTEXT_KEY not in f.keys():
            raise WeightsError(f"{path}: missing key {CONTEXT_KEY!r} (the text-prompt embedding)")
        models.context = f.get_tensor(CONTEXT_KEY).to(dtype)
    _check_context(models, path)
    report = LoadReport(folder, config.release, why, "flashvsr", {k: _count(m) for k, m in models.modules().items()})
    return models, report


def _check_context(models: FlashVSRModels, source: Path) -> None:
    want = (models.config.dit.text_len, models.config.dit.text_dim)
    if tuple(models.context.shape[1:]) != want:
        raise WeightsError(f"{source}: text embedding has shape {tuple(models.context.shape)}, expected (1, {want[0]}, {want[1]})")


def save_model(models: FlashVSRModels, folder: str | Path) -> Path:
    """Write ``models`` as a FlashVSR model folder (config.json + model.safetensors)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {CONTEXT_KEY: models.context.detach().float().contiguous().cpu()}
    for name, module in models.modules().items():
        for k, v in module.state_dict().items():
            tensors[f"{name}.{k}"] = v.detach().contiguous().cpu()
    save_file(tensors, str(folder / MODEL_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(models.config.to_dict(), indent=2) + "\n")
    return folder
