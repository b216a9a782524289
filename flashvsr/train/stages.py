"""The five training stages as tasks for :class:`~flashvsr.train.trainer.Trainer`.

- ``vae``: a small causal video autoencoder from scratch (when no Wan2.1 VAE is available).
- ``stage1``: the teacher — DiT + non-causal LR projection, full attention, flow matching on
  clips and photos (packed with a block-diagonal mask).
- ``stage2``: the same network made causal — causal LR projection, LCSA with a causal mask
  over time slices, window and cache length drawn at random each step.
- ``stage3``: one-step distillation by distribution matching: the student (from Stage 2) maps
  pure noise + LQ to latents; a frozen teacher (real score) and a trained copy of it (fake
  score) give the DMD gradient; plus pixel MSE (and LPIPS) on two decoded latents.
- ``tcdecoder``: the Tiny Conditional Decoder, against ground truth and the VAE decoder.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..attention.backends import resolve_backend
from ..config import SPARSE_REFERENCE_PIXELS, TOKEN_PIXELS, VAE_SPATIAL_FACTOR, VAE_TEMPORAL_FACTOR
from ..engine.schedule import decoded_range
from ..evaluation import video_psnr_y
from ..models.dit import dense_attention
from ..models.tc_decoder import TCDecoder
from ..models.wan_vae import WanVAE
from ..weights.loading import (
    CONFIG_FILE, MODEL_FILE, fill_from_safetensors, read_folder_config, read_safetensors,
)  # fmt: skip
from .attention import CausalSparseAttention
from .config import TrainConfig
from .nets import DiffusionNet, VAENet, merge_lora_state, split_prefixed, with_measured_stats
from .trainer import Trainer, checkpoint_weights, load_checkpoint

INFERENCE_TIMESTEP = 1000.0
SCORE_SEED = 0  # the held-out score draws the same noise and attention settings every time
LATENT_STATS_MOMENTUM = 0.99
CHANGE_LOSSES = {"mse": F.mse_loss, "l1": F.l1_loss}  # DecoderLossConfig.temporal_loss


# --------------------------------------------------------------------------------------------
# Shared pieces


def load_frozen_vae(cfg: TrainConfig, device: torch.device) -> WanVAE:
    """The VAE of ``cfg.vae``: a model folder's (with its latent statistics), or a VAE-stage
    checkpoint's with the statistics measured while training it."""
    if is_model_folder(cfg.vae):
        vae = load_component(WanVAE(read_folder_config(cfg.vae).vae), cfg.vae, "vae")
        return vae.to(device).eval().requires_grad_(False)
    ckpt = load_checkpoint(cfg.vae)
    vae = WanVAE(with_measured_stats(cfg.model.vae, ckpt.get("extra", {})))
    table = ckpt["ema"].get("vae") or ckpt["models"].get("vae")
    vae.load_state_dict(split_prefixed(table, "vae."))
    return vae.to(device).eval().requires_grad_(False)


def diffusion_net(cfg: TrainConfig, source: str, device: torch.device, trainable: bool) -> DiffusionNet:
    """A DiffusionNet, filled from a stage checkpoint's ``net`` weights (LoRA merged) if given."""
    net = DiffusionNet(cfg.model)
    if source:
        net.load_state_dict(merge_lora_state(checkpoint_weights(source, "net")))
    return net.to(device).train(trainable).requires_grad_(trainable)


def sample_sigma(batch: int, shift: float, one_step_weight: float, device) -> torch.Tensor:
    """Logit-normal noise levels, shifted towards noise, with a share at exactly σ = 1."""
    sigma = torch.sigmoid(torch.randn(batch, device=device))
    sigma = shift * sigma / (1 + (shift - 1) * sigma)
    one_step = torch.rand(batch, device=device) < one_step_weight
    return torch.where(one_step, torch.ones_like(sigma), sigma)


def mix(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s = sigma.view(-1, *([1] * (x0.ndim - 1)))
    return (1 - s) * x0 + s * noise


def sparse_attention(cfg: TrainConfig, latents: torch.Tensor, device, rng: random.Random) -> CausalSparseAttention:
    """Causal LCSA for a clip, window and cache length drawn at random (Stage 2/3)."""
    h, w = latents.shape[-2] * 8, latents.shape[-1] * 8
    topk_ratio = cfg.sparse.sparse_ratio * SPARSE_REFERENCE_PIXELS / (h * w)
    return CausalSparseAttention(
        h // TOKEN_PIXELS,
        w // TOKEN_PIXELS,
        rng.choice(cfg.sparse.local_ranges),
        rng.choice(cfg.sparse.kv_slices),
        topk_ratio,
        resolve_backend(cfg.sparse.kernel, device, training=True),
    )


def one_step_sample(net: nn.Module, noise: torch.Tensor, lq: torch.Tensor, attention) -> torch.Tensor:
    """The one-step student's latents, as at inference: pure noise in, x₀ = noise − v out (causal)."""
    ones = torch.full((noise.shape[0],), INFERENCE_TIMESTEP, device=noise.device)
    return noise - net(noise, lq, ones, attention, True).float()


def lq_condition_frames(lq: torch.Tensor, hr_frames: int) -> torch.Tensor:
    """The TC decoder's condition: LQ frames aligned with the HR frames, front-padded to a
    multiple of 4 with copies of frame 0 (as the engine's first call does)."""
    lq = lq[:, :, :hr_frames]
    short = (-hr_frames) % 4
    return torch.cat([lq[:, :, :1].expand(-1, -1, short, -1, -1), lq], dim=2)


class LPIPSLoss:
    """LPIPS when the user supplies a perceptual network's weights (none ship here)."""

    def __init__(self, weights: str, device):
        self.net = None
        if weights:
            import lpips  # optional dependency, only with weights given

            self.net = lpips.LPIPS(net="vgg", pretrained=False, pnet_rand=True, verbose=False)
            self.net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=False)
            self.net = self.net.to(device).eval().requires_grad_(False)

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.net is None:
            return a.new_zeros(())
        flat = lambda v: v.transpose(1, 2).flatten(0, 1).float()  # noqa: E731
        return self.net(flat(a), flat(b)).mean()


def _detached(losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in losses.items()}


class BaseTask:
    def __init__(self, cfg: TrainConfig, trainer: Trainer):
        self.cfg = cfg
        self.trainer = trainer
        self.device = trainer.env.device
        self.rng = random.Random(cfg.run.seed * 7919 + trainer.env.rank)
        self.trainable: dict[str, nn.Module] = {}

    def optimizer_groups(self) -> dict[str, list[str]]:
        return {"main": list(self.trainable)}

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def score(self, batch: dict) -> dict[str, float]:
        raise NotImplementedError(f"stage {self.cfg.stage} has no held-out score: leave [score] clips empty")


# --------------------------------------------------------------------------------------------
# Stages


class VAETask(BaseTask):
    def __init__(self, cfg, trainer):
        super().__init__(cfg, trainer)
        net = VAENet(WanVAE(cfg.model.vae))
        if cfg.init:
            net.load_state_dict(checkpoint_weights(cfg.init, "vae"))
        self.trainable = {"vae": net.to(self.device)}
        z = cfg.model.vae.z_dim
        self.stats = {"mean": torch.zeros(z, device=self.device), "sq": torch.ones(z, device=self.device)}

    def train_step(self, batch, step):
        video = batch["hr"]
        loss_cfg = self.cfg.vae_loss
        with self.trainer.autocast():
            recon, mu, log_var = self.trainable["vae"](video)
        recon, mu, log_var = recon.float(), mu.float(), log_var.float()
        l1 = (recon - video).abs().mean()
        mse = F.mse_loss(recon, video)
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).mean()
        loss = loss_cfg.l1_weight * l1 + loss_cfg.mse_weight * mse + loss_cfg.kl_weight * kl
        self.trainer.optimize("main", loss)
        self._track(mu.detach())
        return _detached({"loss": loss, "l1": l1, "mse": mse, "kl": kl})

    @torch.no_grad()
    def _track(self, mu: torch.Tensor) -> None:
        m = mu.transpose(0, 1).flatten(1)
        self.stats["mean"].lerp_(m.mean(1), 1 - LATENT_STATS_MOMENTUM)
        self.stats["sq"].lerp_(m.pow(2).mean(1), 1 - LATENT_STATS_MOMENTUM)

    def extra_state(self):
        std = (self.stats["sq"] - self.stats["mean"].pow(2)).clamp(min=1e-6).sqrt()
        return {"latent_mean": self.stats["mean"].cpu(), "latent_std": std.cpu(), "latent_sq": self.stats["sq"].cpu()}

    def load_extra_state(self, state):
        if "latent_mean" in state:
            self.stats = {"mean": state["latent_mean"].to(self.device), "sq": state["latent_sq"].to(self.device)}

    def validate(self, batch):
        net = self.trainable["vae"]
        vae = net.module.vae if hasattr(net, "module") else net.vae
        recon = vae.decode(vae.encode_moments(batch["hr"])[0], normalized=False)
        return {"input": batch["hr"], "reconstruction": recon}


class FlowTask(BaseTask):
    """Stage 1 (teacher: full attention, non-causal LR projection) and Stage 2 (causal LCSA)."""

    def __init__(self, cfg, trainer, image_batches=None):
        super().__init__(cfg, trainer)
        self.causal = cfg.stage == "stage2" or cfg.flow.lq_proj_causal
        self.vae = load_frozen_vae(cfg, self.device)
        net = diffusion_net(cfg, cfg.init, self.device, trainable=True)
        if cfg.flow.init_dit:
            self._start_from_wan(net)
        self.trainable = {"net": net}
        self.image_batches = image_batches

    def _start_from_wan(self, net: DiffusionNet) -> None:
        from ..weights.loading import fill_from_safetensors
        from .lora import add_lora

        fill_from_safetensors(net.dit, Path(self.cfg.flow.init_dit), torch.float32, device="cpu")
        net.dit.to(self.device)
        if self.cfg.flow.lora_rank > 0:
            add_lora(net.dit, self.cfg.flow.lora_rank)

    def attention(self, latents):
        if self.cfg.stage == "stage1":
            return dense_attention
        return sparse_attention(self.cfg, latents, self.device, self.rng)

    def train_step(self, batch, step):
        with torch.no_grad():
            x0 = self.vae.encode(batch["hr"])
        noise = torch.randn_like(x0)
        f = self.cfg.flow
        sigma = sample_sigma(x0.shape[0], f.timestep_shift, f.one_step_weight, self.device)
        net = self.trainable["net"]
        with self.trainer.autocast():
            if self.image_batches is not None and f.pack_images > 0:
                loss = self._packed_loss(net, x0, noise, sigma, batch["lq"])
            else:
                v = net(mix(x0, noise, sigma), batch["lq"], sigma * INFERENCE_TIMESTEP, self.attention(x0), self.causal)
                loss = F.mse_loss(v.float(), noise - x0)
        self.trainer.optimize("main", loss)
        return _detached({"loss": loss})

    def _packed_loss(self, net, x0, noise, sigma, lq):
        """Each clip packed with photos in one sequence; loss averaged over all latents."""
        photos = next(self.image_batches)
        with torch.no_grad():
            p0 = self.vae.encode(photos["hr"].to(self.device))
        p_noise = torch.randn_like(p0)
        p_sigma = sample_sigma(p0.shape[0], self.cfg.flow.timestep_shift, self.cfg.flow.one_step_weight, self.device)
        per_clip = max(1, p0.shape[0] // x0.shape[0])
        total, count = 0.0, 0
        for b in range(x0.shape[0]):
            items = [(mix(x0[b : b + 1], noise[b : b + 1], sigma[b : b + 1]), lq[b : b + 1], sigma[b : b + 1] * INFERENCE_TIMESTEP)]
            targets = [noise[b : b + 1] - x0[b : b + 1]]
            for i in range(b * per_clip, min(p0.shape[0], (b + 1) * per_clip)):
                s = p_sigma[i : i + 1]
                items.append((mix(p0[i : i + 1], p_noise[i : i + 1], s), photos["lq"][i : i + 1].to(self.device), s * INFERENCE_TIMESTEP))
                targets.append(p_noise[i : i + 1] - p0[i : i + 1])
            for v, t in zip(net(items, causal=self.causal), targets):
                total = total + F.mse_loss(v.float(), t, reduction="sum")
                count += t.numel()
        return total / count

    @torch.no_grad()
    def validate(self, batch):
        x0 = self.vae.encode(batch["hr"])
        noise = torch.randn_like(x0)
        ones = torch.full((x0.shape[0],), INFERENCE_TIMESTEP, device=self.device)
        v = self.trainable["net"](noise, batch["lq"], ones, self.attention(x0), self.causal)
        out = self.vae.decode(noise - v.float())
        return {"lq": batch["lq"][:, :, : out.shape[2]], "one_step": out, "hr": batch["hr"]}


class DMDTask(BaseTask):
    """Stage 3: distribution matching distillation of the one-step causal student."""

    def __init__(self, cfg, trainer):
        super().__init__(cfg, trainer)
        d = cfg.dmd
        self.vae = load_frozen_vae(cfg, self.device)
        self.real = diffusion_net(cfg, d.teacher, self.device, trainable=False)
        self.trainable = {
            "net": diffusion_net(cfg, d.student or cfg.init, self.device, trainable=True),
            "fake": diffusion_net(cfg, d.teacher, self.device, trainable=True),
        }
        self.learning_rates = {"fake": d.fake_lr}
        self.lpips = LPIPSLoss(d.lpips_weights, self.device)

    def optimizer_groups(self):
        return {"student": ["net"], "fake": ["fake"]}

    def one_step(self, lq, x0, attention):
        return one_step_sample(self.trainable["net"], torch.randn_like(x0), lq, attention)

    def train_step(self, batch, step):
        d = self.cfg.dmd
        lq, hr = batch["lq"], batch["hr"]
        with torch.no_grad():
            x0 = self.vae.encode(hr)
        attention = sparse_attention(self.cfg, x0, self.device, self.rng)
        with self.trainer.autocast():
            student = self.one_step(lq, x0, attention)
            dmd = self._dmd_loss(student, lq)
            pixel_mse, perceptual = self._pixel_losses(student, hr)
            latent_mse = F.mse_loss(student, x0)
        loss = d.dmd_weight * dmd + d.pixel_mse_weight * pixel_mse + d.lpips_weight * perceptual
        loss = loss + d.latent_mse_weight * latent_mse
        self.trainer.optimize("student", loss)
        fake_loss = sum(self._fake_score_loss(student.detach(), lq) for _ in range(d.fake_updates_per_step))
        return _detached({"loss": loss, "dmd": dmd, "pixel_mse": pixel_mse, "lpips": perceptual,
                          "latent_mse": latent_mse, "fake_flow": fake_loss / d.fake_updates_per_step})  # fmt: skip

    def _noisy(self, x0):
        lo, hi = self.cfg.dmd.sigma_range
        sigma = lo + (hi - lo) * torch.rand(x0.shape[0], device=self.device)
        noise = torch.randn_like(x0)
        return mix(x0, noise, sigma), noise, sigma

    def _dmd_loss(self, student, lq):
        """Move the student's samples along (fake score − real score), normalised (DMD)."""
        with torch.no_grad():
            xt, _, sigma = self._noisy(student.detach())
            t = sigma * INFERENCE_TIMESTEP
            s = sigma.view(-1, 1, 1, 1, 1)
            real_x0 = xt - s * self.real(xt, lq, t, dense_attention, False).float()
            fake_x0 = xt - s * self.trainable["fake"](xt, lq, t, dense_attention, False).float()
            weight = 1 / (student.detach() - real_x0).abs().mean(dim=(1, 2, 3, 4), keepdim=True).clamp(min=1e-6)
            target = student.detach() - (fake_x0 - real_x0) * weight
        return 0.5 * F.mse_loss(student, target)

    def _fake_score_loss(self, samples, lq):
        with self.trainer.autocast():
            xt, noise, sigma = self._noisy(samples)
            v = self.trainable["fake"](xt, lq, sigma * INFERENCE_TIMESTEP, dense_attention, False)
            loss = F.mse_loss(v.float(), noise - samples)
        self.trainer.optimize("fake", loss)
        return loss.detach()

    def _pixel_losses(self, latents, hr):
        """Decode ``pixel_latents`` consecutive latents at a random place; the decoder's
        memory of the earlier ones is built without gradient."""
        n = min(self.cfg.dmd.pixel_latents, latents.shape[2])
        j = self.rng.randrange(0, latents.shape[2] - n + 1)
        cache = self.vae.start_decode()
        if j:
            with torch.no_grad():
                _, cache = self.vae.decode_step(cache, latents[:, :, :j].detach())
        frames, _ = self.vae.decode_step(cache, latents[:, :, j : j + n])
        a, b = decoded_range(j, j + n)
        target = hr[:, :, a:b]
        return F.mse_loss(frames.float(), target), self.lpips(frames, target)

    @torch.no_grad()
    def validate(self, batch):
        x0 = self.vae.encode(batch["hr"])
        out = self.vae.decode(self.one_step(batch["lq"], x0, sparse_attention(self.cfg, x0, self.device, self.rng)))
        return {"lq": batch["lq"][:, :, : out.shape[2]], "one_step": out, "hr": batch["hr"]}


def is_model_folder(source: str | Path) -> bool:
    return (Path(source) / CONFIG_FILE).is_file()


def load_component(module: nn.Module, source: str | Path, name: str) -> nn.Module:
    """Fill ``module`` with component ``name`` of a model folder (only its tensors are read,
    keys and shapes checked) or of a stage checkpoint."""
    if is_model_folder(source):
        return fill_from_safetensors(module, Path(source) / MODEL_FILE, torch.float32, prefix=f"{name}.")
    module.load_state_dict(checkpoint_weights(source, name))
    return module


def component_state(source: str | Path, name: str) -> dict[str, torch.Tensor]:
    """Component ``name``'s tensors (float32) from a model folder or a stage checkpoint."""
    if is_model_folder(source):
        return read_safetensors(Path(source) / MODEL_FILE, torch.float32, prefix=f"{name}.")
    return checkpoint_weights(source, name)


def student_net(cfg: TrainConfig, source: str, device) -> DiffusionNet:
    """The one-step student (frozen), from a model folder or a Stage-3 checkpoint."""
    net = DiffusionNet(cfg.model)
    if is_model_folder(source):
        load_component(net.dit, source, "dit")
        load_component(net.lq_proj, source, "lq_proj")
    else:
        net.load_state_dict(merge_lora_state(checkpoint_weights(source, "net")))
    return net.to(device).eval().requires_grad_(False)


class TCDecoderTask(BaseTask):
    def __init__(self, cfg, trainer):
        super().__init__(cfg, trainer)
        c = cfg.decoder_loss
        self.vae = load_frozen_vae(cfg, self.device) if cfg.vae else None
        self.student = student_net(cfg, c.student, self.device) if c.latents == "student" else None
        decoder = TCDecoder(cfg.model.tc_decoder)
        if cfg.init:  # a narrower decoder (no LQ skip, no head memory, a narrower head) can start this one
            decoder.load_state_dict(decoder.grow_state(component_state(cfg.init, "tc_decoder")))
        if c.restart_output:
            decoder.zero_last_layer()
        self.trainable = {"tc_decoder": decoder.to(self.device)}
        if c.student_lr_scale:  # end to end: the student learns through the decoder's losses too
            self.trainable["net"] = self.student.train().requires_grad_(True)
        self.lr_scales = {"net": c.student_lr_scale}
        self.lpips = LPIPSLoss(c.lpips_weights, self.device)

    def latents(self, batch, generator: torch.Generator | None = None, rng: random.Random | None = None,
                grad: bool = False) -> torch.Tensor:  # fmt: skip
        """The decoder's input latents; ``grad``: keep the student's graph (when it is trained)."""
        if self.student is None:
            with torch.no_grad():
                return self.vae.encode(batch["hr"])
        hr = batch["hr"]
        latent_frames = (hr.shape[2] - 1) // VAE_TEMPORAL_FACTOR + 1  # 4T−3 HR frames ← T latents
        f = VAE_SPATIAL_FACTOR
        shape = (hr.shape[0], self.cfg.model.dit.in_channels, latent_frames, hr.shape[-2] // f, hr.shape[-1] // f)
        noise = torch.randn(shape, device=self.device, generator=generator)
        attention = sparse_attention(self.cfg, noise, self.device, rng or self.rng)
        student = self.trainable.get("net", self.student)  # the wrapped module when it is trained
        with torch.set_grad_enabled(grad), self.trainer.autocast():
            return one_step_sample(student, noise, batch["lq"], attention)

    @torch.no_grad()
    def perturbed(self, latents: torch.Tensor) -> torch.Tensor:
        c = self.cfg.decoder_loss
        if c.latent_noise <= 0:
            return latents
        sigma = c.latent_noise * torch.rand(latents.shape[0], 1, 1, 1, 1, device=self.device)
        return latents + sigma * torch.randn_like(latents)

    def train_step(self, batch, step):
        c = self.cfg.decoder_loss
        hr = batch["hr"]
        latents = self.latents(batch, grad="net" in self.trainable)
        with self.trainer.autocast():
            frames = self.trainable["tc_decoder"](self.perturbed(latents), lq_condition_frames(batch["lq"], hr.shape[2]))
        frames = frames.float()
        gt_mse = F.mse_loss(frames, hr)
        loss = c.gt_weight * gt_mse + c.lpips_weight * self.lpips(frames, hr)
        losses = {"gt_mse": gt_mse}
        if c.temporal_weight:
            name = f"temporal_{c.temporal_loss}"
            losses[name] = CHANGE_LOSSES[c.temporal_loss](frames.diff(dim=2), hr.diff(dim=2))
            loss = loss + c.temporal_weight * losses[name]
        if c.vae_weight:  # the VAE decoder's output on the same latents is a second target
            with torch.no_grad():
                vae_frames = self.vae.decode(latents)
            losses["vae_mse"] = F.mse_loss(frames, vae_frames)
            loss = loss + c.vae_weight * losses["vae_mse"] + c.lpips_weight * self.lpips(frames, vae_frames)
        self.trainer.optimize("main", loss)
        return _detached({"loss": loss, **losses})

    @torch.no_grad()
    def validate(self, batch):
        latents = self.latents(batch)
        frames = self.trainable["tc_decoder"](latents, lq_condition_frames(batch["lq"], batch["hr"].shape[2]))
        panels = {"lq": batch["lq"][:, :, : frames.shape[2]], "tc_decoder": frames}
        if self.vae is not None:
            panels["vae"] = self.vae.decode(latents)
        return {**panels, "hr": batch["hr"]}

    @torch.no_grad()
    def score(self, batch):
        """Mean PSNR-Y of the decoded clips, and its gain over their bicubic LQ frames."""
        generator = torch.Generator(device=self.device).manual_seed(SCORE_SEED)
        hr = batch["hr"]
        latents = self.latents(batch, generator, random.Random(SCORE_SEED))
        frames = self.trainable["tc_decoder"](latents, lq_condition_frames(batch["lq"], hr.shape[2]))
        lq = batch["lq"][:, :, : hr.shape[2]]
        clips = range(hr.shape[0])
        out_db = sum(video_psnr_y(frames[i : i + 1], hr[i : i + 1]) for i in clips) / len(clips)
        lq_db = sum(video_psnr_y(lq[i : i + 1], hr[i : i + 1]) for i in clips) / len(clips)
        return {"score_psnr_y": out_db, "score_gain_db": out_db - lq_db}


TASKS = {"vae": VAETask, "stage1": FlowTask, "stage2": FlowTask, "stage3": DMDTask, "tcdecoder": TCDecoderTask}
