"""Training pipeline: every stage runs, learns on a fixed batch, resumes, exports a model the
upscaler loads; parallel causal training equals streaming inference; packing, LoRA, DDP/FSDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flashvsr import cli
from flashvsr.config import EngineConfig, SparseAttentionConfig
from flashvsr.data.datasets import ClipDataset, loader
from flashvsr.data.manifest import read_manifest
from flashvsr.engine.state import StreamTracer
from flashvsr.engine.stream import StreamingEngine
from flashvsr.models.dit import dense_attention
from flashvsr.pipeline import Upscaler
from flashvsr.train import distributed as D
from flashvsr.train.attention import CausalSparseAttention, call_groups
from flashvsr.train.config import load_train_config
from flashvsr.train.export import export_model, replace_decoder
from flashvsr.train.lora import add_lora, merge_lora
from flashvsr.train.nets import merge_lora_state
from flashvsr.train.packing import PackedItem, packed_velocity
from flashvsr.train.run import run_stage
from flashvsr.train.stages import TASKS, load_frozen_vae
from flashvsr.train.trainer import Trainer, checkpoint_weights, load_checkpoint
from flashvsr.weights.loading import folder_variants

from .conftest import REPO, random_frames, tiny_models
from .training_helpers import make_dataset, stage_toml

STAGE_ARGS = {
    "vae": {},
    "stage1": {"vae": "vae"},
    "stage2": {"vae": "vae", "init": "stage1", "latent_frames": 6},
    "stage3": {"vae": "vae", "init": "stage2", "teacher": "stage1", "latent_frames": 6},
    "tcdecoder": {"vae": "vae"},
}


def write_config(root: Path, stage: str, steps: int = 4, name: str | None = None, extra: str = "") -> Path:
    args = {k: (root / v if k in ("vae", "init", "teacher") else v) for k, v in STAGE_ARGS[stage].items()}
    path = root / f"{name or stage}.toml"
    path.write_text(stage_toml(stage, root / "data", root / (name or stage), steps=steps, extra=extra, **args))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """All stages in order, a few steps each, on a synthetic data set."""
    root = tmp_path_factory.mktemp("train")
    make_dataset(root / "data")
    for stage in STAGE_ARGS:
        losses = run_stage(write_config(root, stage))
        assert losses and all(np.isfinite(v) for v in losses.values()), (stage, losses)
    return root


def test_every_stage_writes_checkpoints_metrics_and_samples(trained: Path):
    for stage in STAGE_ARGS:
        run = trained / stage
        ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
        assert ckpt["stage"] == stage and ckpt["step"] == 4 and ckpt["optimizers"]
        assert load_checkpoint(run)["models"] == {}  # final.pt: EMA weights only
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 4
        assert list((run / "samples").glob("step_*.png"))
    stats = load_checkpoint(trained / "vae")["extra"]
    assert stats["latent_std"].shape == (16,) and (stats["latent_std"] > 0).all()


def test_exported_model_upscales_through_the_engine(trained: Path):
    folder = export_model(trained / "vae", trained / "stage3", trained / "tcdecoder", trained / "model", card="# card")
    assert (folder / "MODEL_CARD.md").read_text() == "# card"
    for variant in ("tiny", "full"):
        up = Upscaler.load(folder, variant=variant, device="cpu")
        frames = [np.random.default_rng(i).integers(0, 255, (33, 47, 3), dtype=np.uint8) for i in range(3)]
        out = up.upscale_frames(frames, scale=2)
        assert len(out) == 3 and out[0].shape == (66, 94, 3)


def test_residual_decoder_fine_tunes_on_the_students_latents(trained: Path):
    """The small model's last step: a residual TC decoder trained on the exported student's own
    latents, swapped into the model folder with ``flashvsr train replace-decoder``."""
    model = export_model(trained / "vae", trained / "stage3", trained / "tcdecoder", trained / "ft_base", card="# base")
    overrides = {"init": str(model), "model.tc_decoder.residual": True, "decoder_loss.latents": "student",
                 "decoder_loss.student": str(model), "decoder_loss.restart_output": True, "decoder_loss.vae_weight": 0.0,
                 "model.tc_decoder.lq_skip": True, "decoder_loss.temporal_weight": 0.5, "data.soften_prob": 0.5,
                 "data.still_prob": 0.5}  # fmt: skip
    losses = run_stage(write_config(trained, "tcdecoder", steps=3, name="ft_decoder"), overrides)
    assert np.isfinite(losses["gt_mse"]) and "vae_mse" not in losses
    assert 0 < losses["temporal_mse"] and losses["loss"] > losses["gt_mse"]  # flicker is priced in
    code = cli.main(["train", "replace-decoder", str(model), "--tc-decoder", str(trained / "ft_decoder"),
                     "-o", str(trained / "ft_model")])  # fmt: skip
    assert code == 0
    up = Upscaler.load(trained / "ft_model", device="cpu")
    assert up.models.config.tc_decoder.residual and (trained / "ft_model" / "MODEL_CARD.md").read_text() == "# base"
    assert up.models.config.tc_decoder.lq_skip  # the widened decoder and its config travel together
    weights = checkpoint_weights(trained / "ft_decoder", "tc_decoder")  # the EMA weights, stored in fp16
    for name, value in up.models.tc_decoder.state_dict().items():
        torch.testing.assert_close(value.float(), weights[name].float(), rtol=1e-3, atol=1e-3)
    frames = [np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8) for i in range(5)]
    assert [f.shape for f in up.upscale_frames(frames, scale=2)] == [(64, 64, 3)] * 5
    # a model exported without its VAE (tiny variant only) takes a new decoder too
    slim = export_model(trained / "vae", trained / "stage3", trained / "tcdecoder", trained / "ft_slim", include_vae=False)
    assert folder_variants(replace_decoder(slim, trained / "ft_decoder", trained / "ft_slim_model")) == ("tiny",)


def test_decoder_stage_can_fine_tune_the_student_end_to_end(trained: Path):
    """``decoder_loss.student_lr_scale`` > 0: the student (DiT + LR projection) learns through the
    decoder's pixel and temporal losses at that fraction of the rate; replace-decoder then carries
    the new student into the model folder as well."""
    model = export_model(trained / "vae", trained / "stage3", trained / "tcdecoder", trained / "e2e_base")
    overrides = {"init": str(model), "model.tc_decoder.residual": True, "decoder_loss.latents": "student",
                 "decoder_loss.student": str(model), "decoder_loss.vae_weight": 0.0, "decoder_loss.temporal_weight": 1.0,
                 "decoder_loss.temporal_loss": "l1", "decoder_loss.student_lr_scale": 0.5, "optim.lr": 1e-3}  # fmt: skip
    losses = run_stage(write_config(trained, "tcdecoder", steps=3, name="e2e"), overrides)
    assert np.isfinite(losses["loss"]) and losses["temporal_l1"] > 0
    ckpt = load_checkpoint(trained / "e2e" / "checkpoints" / "last.pt")
    rates = [g["initial_lr"] for g in ckpt["optimizers"]["main"]["param_groups"]]
    assert rates == [1e-3, 5e-4]  # decoder, student
    before = Upscaler.load(model, device="cpu").models
    out = replace_decoder(model, trained / "e2e", trained / "e2e_model")
    after = Upscaler.load(out, device="cpu").models
    student = checkpoint_weights(trained / "e2e", "net")
    for name, value in after.dit.state_dict().items():
        torch.testing.assert_close(value.float(), student[f"dit.{name}"].float(), rtol=1e-3, atol=1e-3)
    changed = [n for n, v in after.dit.state_dict().items() if not torch.equal(v, before.dit.state_dict()[n])]
    assert changed  # the student moved, and the folder holds the moved one
    with pytest.raises(ValueError, match="student_lr_scale"):
        load_train_config(write_config(trained, "tcdecoder", name="e2e_bad"), {"decoder_loss.student_lr_scale": 0.5})


def test_decoder_fine_tune_keeps_the_weights_that_score_best(trained: Path):
    """[score]: held-out clips with plain bicubic LQ are scored on the EMA weights; the best
    are kept as best.pt. A residual decoder just zeroed gains exactly 0 dB over bicubic."""
    model = export_model(trained / "vae", trained / "stage3", trained / "tcdecoder", trained / "score_base", card="# base")
    clip = trained / "data" / "video" / "clip0.mp4"
    overrides = {"init": str(model), "model.tc_decoder.residual": True, "decoder_loss.latents": "student",
                 "decoder_loss.student": str(model), "decoder_loss.restart_output": True, "decoder_loss.vae_weight": 0.0,
                 "score.clips": [str(clip)], "score.crop": [128, 128], "score.every": 2,
                 "data.lq_on_device": True, "data.degradation.bicubic_prob": 1.0}  # fmt: skip
    run_stage(write_config(trained, "tcdecoder", steps=2, name="score_frozen"), {**overrides, "optim.lr": 0.0})
    frozen = [json.loads(x) for x in (trained / "score_frozen" / "metrics.jsonl").read_text().splitlines()]
    assert [x["score_gain_db"] for x in frozen if "score_gain_db" in x] == [0.0]
    assert 15 < frozen[-1]["score_psnr_y"] < 60
    run_stage(write_config(trained, "tcdecoder", steps=4, name="score_run"), {**overrides, "optim.lr": 1e-2})
    lines = [json.loads(x) for x in (trained / "score_run" / "metrics.jsonl").read_text().splitlines()]
    scores = {x["step"]: x["score_gain_db"] for x in lines if "score_gain_db" in x}
    assert sorted(scores) == [2, 4] and all(np.isfinite(list(scores.values())))
    best_step = max(scores, key=scores.get)
    assert lines[-1]["best_score_gain_db"] == scores[best_step]
    best = load_checkpoint(trained / "score_run" / "best.pt")
    assert best["step"] == best_step and best["models"] == {}
    assert checkpoint_weights(trained / "score_run" / "best.pt", "tc_decoder").keys() == best["ema"]["tc_decoder"].keys()


def test_learning_rate_warms_up_then_follows_a_cosine(trained: Path):
    cfg = load_train_config(write_config(trained, "stage1", name="cosine"),
                            {"run.steps": 110, "optim.warmup_steps": 10, "optim.decay": "cosine", "optim.min_lr_ratio": 0.1})  # fmt: skip
    trainer = Trainer(cfg, D.DistEnv())
    factors = {}
    for step in (0, 9, 10, 60, 110):
        trainer.step = step
        factors[step] = trainer.lr_factor()
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0) and factors[10] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(0.55) and factors[110] == pytest.approx(0.1)


def test_ema_weights_are_swapped_in_and_back(trained: Path):
    trainer, task, batch = fixed_batch_task(trained, "tcdecoder")
    decoder = task.trainable["tc_decoder"]
    live = {k: v.clone() for k, v in decoder.state_dict().items()}
    for shadow in trainer.ema["tc_decoder"].values():
        shadow.add_(1.0)
    with trainer.ema_weights():
        for k, v in decoder.named_parameters():
            torch.testing.assert_close(v, live[k] + 1.0)
    for k, v in decoder.state_dict().items():
        assert torch.equal(v, live[k])


def test_stages_take_the_vae_of_a_model_folder(trained: Path):
    """A model folder (e.g. the bundled one) can stand in for the VAE stage's checkpoint."""
    folder = export_model(trained / "vae", trained / "stage3", trained / "tcdecoder", trained / "vae_src")
    from_folder = load_frozen_vae(load_train_config(write_config(trained, "stage1", name="vae_folder"), {"vae": str(folder)}), "cpu")
    from_checkpoint = load_frozen_vae(load_train_config(write_config(trained, "stage1", name="vae_ckpt")), "cpu")
    assert from_folder.cfg.latent_std == pytest.approx(from_checkpoint.cfg.latent_std)
    clip = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    torch.testing.assert_close(from_folder.encode(clip), from_checkpoint.encode(clip), rtol=1e-2, atol=1e-2)
    losses = run_stage(write_config(trained, "stage1", steps=2, name="vae_folder"), {"vae": str(folder)})
    assert np.isfinite(losses["loss"])


def fixed_batch_task(root: Path, stage: str, overrides: dict | None = None):
    cfg = load_train_config(write_config(root, stage, name=f"fixed_{stage}"), overrides)
    trainer = Trainer(cfg, D.DistEnv())
    task = TASKS[stage](cfg, trainer)
    trainer.attach(task)
    data = replace(cfg.data, image_prob=0.0)
    batch = next(loader(ClipDataset(read_manifest(cfg.data.manifest), cfg.data.root, data, seed=3, hr_only=stage == "vae"), 1, 0))
    return trainer, task, batch


def repeat_steps(trainer, task, batch, steps: int, key: str = "loss") -> list[float]:
    losses = []
    for step in range(steps):
        torch.manual_seed(0)  # the same noise and noise levels every step
        task.rng.seed(0)
        trainer.step = step
        losses.append(float(task.train_step(batch, step)[key]))
    return losses


# Stage 3's DMD term is not an objective that falls (its target moves as the fake score
# learns; test_dmd_mechanics checks it); on a fixed batch its student regression must fall.
FIXED_BATCH_OVERRIDES = {"stage3": {"dmd.dmd_weight": 0.0, "dmd.latent_mse_weight": 1.0}}


@pytest.mark.parametrize("stage", list(STAGE_ARGS))
def test_loss_decreases_on_a_fixed_batch(trained: Path, stage: str):
    trainer, task, batch = fixed_batch_task(trained, stage, FIXED_BATCH_OVERRIDES.get(stage))
    losses = repeat_steps(trainer, task, batch, 8)
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < losses[0], losses


def test_dmd_mechanics(trained: Path):
    """DMD is zero while the fake score equals the real one; the fake score then learns the
    student's samples by flow matching."""
    trainer, task, batch = fixed_batch_task(trained, "stage3", {"dmd.fake_lr": 1e-3})
    with torch.no_grad():
        x0 = task.vae.encode(batch["hr"])
        samples = task.one_step(batch["lq"], x0, dense_attention)
    assert float(task._dmd_loss(samples, batch["lq"])) == 0.0
    fake = []
    for step in range(8):
        torch.manual_seed(0)
        trainer.step = step
        fake.append(float(task._fake_score_loss(samples, batch["lq"])))
    assert np.mean(fake[-3:]) < fake[0], fake
    assert float(task._dmd_loss(samples, batch["lq"])) > 0.0


@pytest.mark.parametrize("stage", list(STAGE_ARGS))
def test_every_stage_continues_from_its_checkpoint(trained: Path, stage: str):
    """Stopped after 2 steps and run again with 4: steps 3 and 4 follow on, every optimizer
    (Stage 3: student and fake score) and the stage's extra state come back."""
    config = write_config(trained, stage, steps=2, name=f"continue_{stage}")
    run_stage(config)
    run_stage(config, {"run.steps": 4})
    lines = [json.loads(x) for x in (trained / f"continue_{stage}" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    ckpt = load_checkpoint(trained / f"continue_{stage}" / "checkpoints" / "last.pt")
    assert ckpt["step"] == 4 and all(opt["state"] for opt in ckpt["optimizers"].values())
    if stage == "vae":
        assert "latent_mean" in ckpt["extra"]


def test_stage_resumes_from_its_checkpoint(trained: Path):
    config = write_config(trained, "stage1", steps=2, name="resume")
    run_stage(config)
    first = load_checkpoint(trained / "resume" / "checkpoints" / "last.pt")
    run_stage(config, {"run.steps": 5})
    lines = [json.loads(x) for x in (trained / "resume" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5]  # continued, not restarted
    cfg = load_train_config(config, {"run.steps": 5})
    trainer = Trainer(cfg, D.DistEnv())
    trainer.attach(TASKS["stage1"](cfg, trainer))
    trainer.out = trained / "resume_copy"
    (trainer.out / "checkpoints").mkdir(parents=True)
    torch.save(first, trainer.out / "checkpoints" / "last.pt")
    assert trainer.resume() and trainer.step == 2
    restored = D.full_state_dict(trainer.task.trainable["net"])
    assert all(torch.equal(v, first["models"]["net"][k]) for k, v in restored.items())
    assert trainer.optimizers["main"].state_dict()["state"], "optimizer moments restored"


def test_parallel_causal_training_equals_streaming_inference():
    """A clip run at once under the causal sparse mask gives the engine's streamed latents."""
    models = tiny_models()
    h, w, latents_n = 128, 256, 8
    frames = random_frames(4 * latents_n + 1, h, w, seed=4)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 16, latents_n, h // 8, w // 8, generator=g)
    att = SparseAttentionConfig(sparse_ratio=0.5, local_range=3, kv_ratio=2)
    engine = StreamingEngine(models, EngineConfig(attention=att, dtype="float32"))
    streamed = []
    state = engine.start(h, w, noise=lambda s, c, shape: noise[:, :, s : s + c], tracer=StreamTracer(on_latents=lambda c, x: streamed.append(x)))
    engine.push(state, frames)
    streamed = torch.cat(streamed, dim=2)
    assert streamed.shape[2] == latents_n
    plan = state.attention
    attention = CausalSparseAttention(plan.tokens_h, plan.tokens_w, 3, 2, att.topk_ratio_for(h, w), engine.kernel)
    with torch.no_grad():
        tokens = models.lq_proj(frames.transpose(0, 1)[None])
        v = models.dit(noise, engine.conditioning, attention, lq_tokens=tokens)
    torch.testing.assert_close(noise - v, streamed, rtol=1e-4, atol=1e-4)


def test_call_groups_follow_the_cache_rule():
    assert call_groups(5, 3) == [([0, 1, 2], [0, 1, 2]), ([3], [0, 1, 2, 3]), ([4], [1, 2, 3, 4])]
    assert call_groups(4, 1) == [([0, 1, 2], [0, 1, 2]), ([3], [1, 2, 3])]


def test_packed_sequence_equals_items_one_by_one():
    dit = tiny_models().dit
    g = torch.Generator().manual_seed(1)
    items = [
        PackedItem(torch.randn(1, 16, 2, 16, 16, generator=g), torch.randn(1, 128, 32, generator=g), torch.tensor([700.0])),
        PackedItem(torch.randn(1, 16, 1, 16, 32, generator=g), torch.randn(1, 128, 32, generator=g), torch.tensor([200.0])),
    ]
    ctx = torch.randn(1, 8, 16, generator=g)
    with torch.no_grad():
        packed = packed_velocity(dit, items, dit.text_conditioning(ctx))
        for item, out in zip(items, packed):
            alone = dit(item.latents, dit.condition(ctx, item.timestep), dense_attention, lq_tokens=item.lq_tokens)
            torch.testing.assert_close(out, alone, rtol=1e-4, atol=1e-5)


def test_lora_trains_adapters_only_and_merges_exactly():
    dit = tiny_models().dit
    add_lora(dit, rank=4)
    trainable = [n for n, p in dit.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    for n, p in dit.named_parameters():
        if "lora_b" in n:
            torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(1, 3, 32)
    block = dit.blocks[0].ffn
    with torch.no_grad():
        before = block(x)
        state = merge_lora_state({k: v.clone() for k, v in dit.state_dict().items()})
        merge_lora(dit)
        torch.testing.assert_close(dit.blocks[0].ffn(x), before, rtol=1e-5, atol=1e-5)
    assert set(state) == set(dit.state_dict()) and all(torch.allclose(state[k], v) for k, v in dit.state_dict().items())


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_with_torchrun(trained: Path, strategy: str):
    config = write_config(trained, "stage1", steps=2, name=f"dist_{strategy}")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(29500 + len(strategy)),
           "-m", "flashvsr", "train", "stage1", str(config), "--set", f'run.distributed="{strategy}"']  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = load_checkpoint(trained / f"dist_{strategy}" / "checkpoints" / "last.pt")
    assert ckpt["step"] == 2 and "net" in ckpt["models"] and ckpt["optimizers"]["main"]["state"]


def test_ema_warms_up_so_short_runs_do_not_keep_their_initialisation(trained: Path):
    cfg = load_train_config(write_config(trained, "stage1", name="ema"))
    trainer = Trainer(cfg, D.DistEnv())
    assert trainer.ema_decay() == pytest.approx(0.1)  # step 0: mostly the current weights
    trainer.step = 1000
    assert trainer.ema_decay() == pytest.approx(min(cfg.run.ema_decay, 1001 / 1010))


def test_stage_figures_script_measures_the_stage_relations(trained: Path, tmp_path: Path):
    """benchmarks/stage_figures.py on the smoke-trained stages: every figure is there and the
    one-step teacher's latent error equals Stage 1's flow error at σ = 1 (the same computation)."""
    clip = tmp_path / "clip"
    clip.mkdir()
    for i in range(25):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(clip / f"{i:05d}.png")
    script = REPO / "benchmarks" / "stage_figures.py"
    cmd = [sys.executable, str(script), str(clip), "--config", str(trained / "stage2.toml"), "--vae", str(trained / "vae"),
           "--stage1", str(trained / "stage1"), "--stage2", str(trained / "stage2"), "--stage3", str(trained / "stage3"),
           "--crop", "128", "--device", "cpu"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    mean = json.loads(done.stdout.strip().splitlines()[-1])["mean"]
    assert set(mean["flow_mse@1.0"]) == {"stage1_full", "stage1_sparse_causal", "stage2_sparse_causal"}
    assert mean["teacher_1"]["latent_mse"] == pytest.approx(mean["flow_mse@1.0"]["stage1_full"], rel=1e-4)
    assert all(np.isfinite(mean[k]["psnr_y"]) for k in ("student", "teacher_4", "teacher_25"))


def test_temporal_loss_kinds():
    """The decoder's flicker term: MSE (default) or L1 on frame-to-frame changes; nothing else."""
    from flashvsr.train.config import TEMPORAL_LOSSES, DecoderLossConfig
    from flashvsr.train.stages import CHANGE_LOSSES

    assert set(CHANGE_LOSSES) == set(TEMPORAL_LOSSES)  # every name the config accepts has a loss
    with pytest.raises(ValueError, match="temporal_loss"):
        DecoderLossConfig(temporal_loss="huber")
    still = torch.zeros(1, 3, 4, 8, 8)
    flicker = still.clone()
    flicker[:, :, 1] += 0.1  # one frame a little brighter: two changes of 0.1 the truth does not have
    for kind, expected in (("mse", 2 / 3 * 0.01), ("l1", 2 / 3 * 0.1)):
        assert CHANGE_LOSSES[kind](flicker.diff(dim=2), still.diff(dim=2)).item() == pytest.approx(expected)
