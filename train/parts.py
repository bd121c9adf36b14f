"""The small tested parts of the trainer: what trains in each stage, learning rates (SCT), noise and loss,
and building a stage's inputs from a loader batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from imprint.train.config import TrainConfig
from imprint.train.models import VAE, ImageEncoder, NoiseScheduler, UNet


# --- what trains ------------------------------------------------------------------------------------------

UNET_DECODER = ("up_blocks", "conv_norm_out", "conv_out")  # stage 1 trains the UNet's decoder side only
# DINOv2 parameters no forward of ours uses: the mask token serves masked-image pretraining only
# (``bool_masked_pos``). They stay frozen: under DDP a trained parameter without a gradient stops the run.
DINOV2_UNUSED = ("embeddings.mask_token",)


def set_trainable(stage: int, encoder: ImageEncoder, unet: UNet, vae: VAE,
                  null_embedding: bool = True) -> dict[str, list[nn.Parameter]]:
    """Freeze and unfreeze per the paper; returns the trainable parameters by group name.

    Stage 1: DINOv2 (all but :data:`DINOV2_UNUSED`) + adapter + the UNet's decoder (up blocks and output
    head); the UNet's input conv, time embedding, down and mid blocks and the VAE frozen. Stage 2: adapter
    (+ the null embedding, unless ``null_embedding`` is False: no guidance dropout, nothing trains it) +
    the whole UNet; DINOv2 and the VAE frozen. Every parameter returned gets a gradient at every step.
    """
    for module in (encoder, unet, vae):
        module.requires_grad_(False)
    encoder.adapter.requires_grad_(True)
    if stage == 1:
        encoder.dinov2.requires_grad_(True)
        for name in DINOV2_UNUSED:
            encoder.dinov2.get_parameter(name).requires_grad_(False)
        for name in UNET_DECODER:
            getattr(unet, name).requires_grad_(True)
        return {
            "encoder": [p for p in encoder.dinov2.parameters() if p.requires_grad],
            "adapter": list(encoder.adapter.parameters()),
            "unet": [p for name in UNET_DECODER for p in getattr(unet, name).parameters()],
        }
    unet.requires_grad_(True)
    adapter = list(encoder.adapter.parameters())
    if null_embedding:
        encoder.null_embedding.requires_grad_(True)
        adapter.append(encoder.null_embedding)
    return {"adapter": adapter, "unet": list(unet.parameters())}


def trainable_report(**modules: nn.Module) -> dict[str, bool | str]:
    """``{"encoder.dinov2": True, "unet.down_blocks": False, ...}``: requires_grad per top-level module
    ("mixed" when its parameters disagree)."""
    out: dict[str, bool | str] = {}
    for prefix, module in modules.items():
        for name, child in module.named_children():
            flags = {p.requires_grad for p in child.parameters()}
            if flags:
                out[f"{prefix}.{name}"] = flags.pop() if len(flags) == 1 else "mixed"
        own = [p for n, p in module.named_parameters(recurse=False)]
        if own:
            out[f"{prefix}.<own>"] = all(p.requires_grad for p in own)
    return out


# --- learning rates (SCT) --------------------------------------------------------------------------------


def group_lrs(cfg: TrainConfig, epoch: int) -> dict[str, float]:
    """Learning rate per parameter group in ``epoch`` (0-based).

    Stage 2 is Sequential Collaborative Training: for the first ``n`` epochs the adapter trains at
    ``sct.adapter_lr`` and the UNet at ``sct.unet_lr``; for the next ``n`` the two are swapped.
    """
    if cfg.stage == 1:
        return {"encoder": cfg.encoder_lr, "adapter": cfg.adapter_lr, "unet": cfg.unet_lr}
    first = epoch < cfg.sct.n_epochs
    a, u = cfg.sct.adapter_lr, cfg.sct.unet_lr
    return {"adapter": a if first else u, "unet": u if first else a}


def sct_schedule(cfg: TrainConfig) -> list[str]:
    """The schedule as lines, printed at start and logged."""
    if cfg.stage == 1:
        lrs = group_lrs(cfg, 0)
        return [f"stage 1: {cfg.epochs} epoch(s); lr " + ", ".join(f"{k} {v:g}" for k, v in lrs.items())]
    n = cfg.sct.n_epochs
    lines = [f"stage 2, Sequential Collaborative Training: {2 * n} epochs"]
    for label, epoch in ((f"epochs 1-{n}", 0), (f"epochs {n + 1}-{2 * n}", n)):
        lrs = group_lrs(cfg, epoch)
        lines.append(f"  {label}: adapter lr {lrs['adapter']:g}, UNet lr {lrs['unet']:g}")
    return lines


def warmup_factor(step: int, warmup_steps: int) -> float:
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def apply_lrs(optimizer: torch.optim.Optimizer, lrs: dict[str, float], factor: float = 1.0) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lrs[group["name"]] * factor


# --- noise and loss --------------------------------------------------------------------------------------


def add_noise(scheduler: NoiseScheduler, latents: torch.Tensor, generator: torch.Generator | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(noisy latents, timesteps, the target the UNet predicts: ε, or v for v-prediction)."""
    noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator,
                      device=latents.device).long()
    noisy = scheduler.add_noise(latents, noise, t)
    if scheduler.config.prediction_type == "v_prediction":
        return noisy, t, scheduler.get_velocity(latents, noise, t)
    return noisy, t, noise


def diffusion_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error; with ``weight`` (B x 1 x h x w) the weighted mean ``Σ w·e² / Σ w`` over pixels
    (stage 2: ``M ⊙ ‖ε − G(·)‖²``, weight 1 inside the mask and ``outside_weight`` outside)."""
    se = (pred.float() - target.float()) ** 2
    if weight is None:
        return se.mean()
    w = weight.float().expand_as(se)
    return (se * w).sum() / w.sum().clamp_min(1e-8)


def loss_weight(mask_latent: torch.Tensor, outside_weight: float) -> torch.Tensor:
    return mask_latent + outside_weight * (1.0 - mask_latent)


# --- a stage's inputs --------------------------------------------------------------------------------------


@dataclass
class StepInputs:
    unet_input: torch.Tensor
    timesteps: torch.Tensor
    target: torch.Tensor
    weight: torch.Tensor | None


@torch.no_grad()
def encode_latents(vae: VAE, images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> scaled latents: a draw from the VAE's posterior (``latent_dist.sample()``, not
    its mean, as diffusers' trainers do; it takes noise from the global torch RNG)."""
    latents: torch.Tensor = vae.encode(images.to(vae.dtype)).latent_dist.sample() * vae.config.scaling_factor
    return latents


def stage_inputs(cfg: TrainConfig, batch: dict[str, torch.Tensor], vae: VAE, scheduler: NoiseScheduler,
                 generator: torch.Generator | None = None) -> StepInputs:
    """Stage 1: the noisy latent of view 2. Stage 2: [noisy latent, mask, masked-background latent]."""
    latents = encode_latents(vae, batch["target"])
    noisy, t, target = add_noise(scheduler, latents, generator)
    if cfg.stage == 1:
        return StepInputs(noisy, t, target, None)
    mask = batch["mask"]
    masked = encode_latents(vae, batch["target"] * (1.0 - mask))
    mask_latent = F.interpolate(batch["mask_latent"], size=latents.shape[-2:], mode="nearest")
    unet_input = torch.cat([noisy, mask_latent.to(noisy.dtype), masked], dim=1)
    return StepInputs(unet_input, t, target, loss_weight(mask_latent, cfg.outside_weight))


def condition(encoder: nn.Module, objects: torch.Tensor, drop_prob: float,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Object tokens; each sample's replaced by the learned null embedding with ``drop_prob`` (CFG).

    ``encoder`` is an :class:`~imprint.train.models.ImageEncoder` or its DDP wrapper: the dropout is part of
    its ``forward``, so nothing here reaches past the wrapper."""
    tokens: torch.Tensor = encoder(objects, drop_prob=drop_prob, generator=generator)
    return tokens
