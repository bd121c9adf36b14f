"""Denoising: the loop that turns noise into an image, shared by training validation and inference."""

from __future__ import annotations

from collections.abc import Callable

import torch

from imprint.train.models import VAE, NoiseScheduler, UNet


@torch.no_grad()
def denoise(unet: UNet, scheduler: NoiseScheduler, cond: torch.Tensor, uncond: torch.Tensor | None,
            shape: tuple[int, ...], steps: int, guidance: float, generator: torch.Generator,
            extra: torch.Tensor | None = None,
            after_step: Callable[[torch.Tensor, int, int], torch.Tensor] | None = None) -> torch.Tensor:
    """Sample latents of ``shape``.

    ``extra`` (stage 2: mask and masked-background latent) is concatenated to the noisy latent at every
    step; ``uncond`` (the null embedding) with ``guidance > 1`` gives classifier-free guidance;
    ``after_step(latents, t, i)`` may replace the latents after each step (background blending).
    """
    device, dtype = cond.device, cond.dtype
    scheduler.set_timesteps(steps, device=device)
    latents = torch.randn(shape, generator=generator, device=device, dtype=dtype) * scheduler.init_noise_sigma
    for i, t in enumerate(scheduler.timesteps):
        x: torch.Tensor = scheduler.scale_model_input(latents, t)
        if extra is not None:
            x = torch.cat([x, extra.to(dtype)], dim=1)
        if uncond is not None and guidance != 1.0:
            out = unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
            out_uncond, out_cond = out.chunk(2)
            out = out_uncond + guidance * (out_cond - out_uncond)
        else:
            out = unet(x, t, encoder_hidden_states=cond).sample
        latents = scheduler.step(out, t, latents, generator=generator).prev_sample
        if after_step is not None:
            latents = after_step(latents, int(t), i)
    return latents


@torch.no_grad()
def decode_latents(vae: VAE, latents: torch.Tensor) -> torch.Tensor:
    """Latents -> images in [0, 1]."""
    images: torch.Tensor = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
    return (images.float().clamp(-1, 1) + 1) / 2
