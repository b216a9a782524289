"""Loading model folders: official layout, release detection, safe pickles, clear errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from flashvsr.weights import loading
from flashvsr.weights.loading import WeightsError, detect_release, load_model, save_model

from .conftest import tiny_models


def write_official_layout(folder: Path, models, with_config=True) -> Path:
    """The four release files + prompt, as the official folders lay them out."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in models.dit.state_dict().items()}, str(folder / loading.DIT_FILE))
    torch.save(models.lq_proj.state_dict(), folder / loading.LQ_PROJ_FILE)
    torch.save(models.tc_decoder.state_dict(), folder / loading.TC_DECODER_FILE)
    torch.save({"model": {f"model.{k}": v for k, v in models.vae.state_dict().items()}}, folder / loading.VAE_FILE)
    torch.save(models.context, folder / loading.PROMPT_FILE)
    if with_config:
        (folder / loading.CONFIG_FILE).write_text(json.dumps(models.config.to_dict()))
    return folder


@pytest.mark.parametrize(
    "name,release",
    [("FlashVSR", "v1"), ("FlashVSR-v1.1", "v1.1"), ("flashvsr_v1_1", "v1.1"), ("FlashVSR-v1", "v1"), ("weights-v11", "v1.1")],
)
def test_release_is_detected_from_folder_name(tmp_path, name, release):
    folder = tmp_path / name
    folder.mkdir()
    got, why = detect_release(folder)
    assert got == release and name in why


def test_release_marker_file_and_explicit_choice(tmp_path):
    folder = tmp_path / "my-weights"
    folder.mkdir()
    with pytest.raises(WeightsError, match="--release"):
        detect_release(folder)
    (folder / loading.RELEASE_FILE).write_text('{"release": "v1.1"}')
    assert detect_release(folder) == ("v1.1", f"from {loading.RELEASE_FILE}")
    assert detect_release(folder, "v1")[0] == "v1"
    with pytest.raises(WeightsError, match="unknown release"):
        detect_release(folder, "v2")


def test_flashvsr_folder_round_trip(tmp_path):
    models = tiny_models(decoders=("tiny", "full"))
    save_model(models, tmp_path / "m")
    loaded, report = load_model(tmp_path / "m", variants=("tiny", "full"), dtype=torch.float32)
    assert report.kind == "flashvsr" and report.release == "v1.1"
    for name, module in models.modules().items():
        theirs = loaded.modules()[name].state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in module.state_dict().items())
    assert torch.equal(loaded.context, models.context)
    assert "parameters" in report.summary()


def test_official_layout_with_wrong_sizes_names_file_and_keys(tmp_path):
    models = tiny_models("v1")
    folder = write_official_layout(tmp_path / "FlashVSR", models, with_config=False)
    # without config.json the files must have the official sizes: the error names file and keys
    with pytest.raises(WeightsError) as err:
        load_model(folder, dtype=torch.bfloat16)
    assert loading.DIT_FILE in str(err.value) and "wrong shape" in str(err.value)
    assert "blocks.0.cross_attn.q.weight (32, 32) (expected (1536, 1536))" in str(err.value)


def test_official_layout_with_sizes_from_config(tmp_path, monkeypatch):
    models = tiny_models("v1")
    folder = write_official_layout(tmp_path / "FlashVSR", models)
    monkeypatch.setattr(loading, "official_config", lambda release, num_layers: models.config)
    (folder / loading.CONFIG_FILE).unlink()
    loaded, report = load_model(folder, variants=("tiny", "full"), dtype=torch.bfloat16)
    assert report.kind == "official" and report.release == "v1" and "folder name" in report.release_reason
    assert loaded.lq_proj.cfg.mode == "buffer"
    assert loaded.dit.blocks[0].self_attn.q.weight.dtype == torch.bfloat16
    assert torch.equal(loaded.vae.decoder.conv1.weight.float(), models.vae.decoder.conv1.weight.bfloat16().float())


def test_missing_and_malicious_files_give_clear_errors(tmp_path, monkeypatch):
    models = tiny_models()
    folder = write_official_layout(tmp_path / "FlashVSR-v1.1", models)
    monkeypatch.setattr(loading, "official_config", lambda release, num_layers: models.config)
    (folder / loading.CONFIG_FILE).unlink()
    (folder / loading.PROMPT_FILE).unlink()
    with pytest.raises(WeightsError, match="posi_prompt.pth.*prompt_tensor"):
        load_model(folder)

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    (folder / loading.LQ_PROJ_FILE).write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(WeightsError, match=loading.LQ_PROJ_FILE):
        load_model(folder)
    assert not (tmp_path / "pwned").exists()

    sd = models.lq_proj.state_dict()
    sd.pop("conv2.bias")
    torch.save(sd, folder / loading.LQ_PROJ_FILE)
    with pytest.raises(WeightsError, match=r"LQ_proj_in.ckpt.*missing keys: conv2.bias"):
        load_model(folder)
    (folder / loading.DIT_FILE).write_bytes(b"not safetensors")
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        load_model(folder)
    with pytest.raises(WeightsError, match="does not exist"):
        load_model(tmp_path / "nowhere")
