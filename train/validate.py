"""Validation during training: fixed, seeded examples rendered to an image grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from imprint.geometry import object_pixels, target_pixels
from imprint.io import Where, read_shard_rows
from imprint.shards.loader import decode_mask, decode_rgb
from imprint.train.parts import encode_latents
from imprint.train.sampling import decode_latents, denoise


def load_examples(shard_dir: Where, n: int, object_size: int, resolution: int) -> dict[str, Any]:
    """The first ``n`` rows of the shards in manifest order (fixed across runs), as model inputs (fine masks)."""
    rows = read_shard_rows(shard_dir, n, columns=["pair_id", "object", "target", "mask"])
    if not rows:
        raise ValueError(f"{shard_dir} has no rows to validate on")
    objects = np.stack([decode_rgb(row["object"]["bytes"], object_size) for row in rows])
    targets = np.stack([decode_rgb(row["target"]["bytes"], resolution) for row in rows])
    masks = np.stack([decode_mask(row["mask"]["bytes"], resolution) for row in rows])
    return {"object": object_pixels(torch.from_numpy(objects)), "target": target_pixels(torch.from_numpy(targets)),
            "mask": torch.from_numpy(masks[:, None].astype(np.float32)), "pair_id": [row["pair_id"] for row in rows]}


@torch.no_grad()
def render_validation(stage: int, examples: dict[str, Any], encoder: Any, unet: torch.nn.Module,
                      vae: torch.nn.Module, scheduler: Any, steps: int, seed: int, guidance: float = 3.0
                      ) -> np.ndarray:
    """A grid, one row per example: object | background + mask (stage 2) or target view (stage 1) | output.

    ``encoder`` is the bare :class:`~imprint.train.models.ImageEncoder` (not a DDP wrapper)."""
    device = next(unet.parameters()).device
    obj = examples["object"].to(device)
    tgt = examples["target"].to(device)
    mask = examples["mask"].to(device)
    generator = torch.Generator(device=device).manual_seed(seed)  # never the training RNG
    cond = encoder(obj)
    latent_shape = encode_latents(vae, tgt).shape
    extra = None
    if stage == 2:
        masked = encode_latents(vae, tgt * (1 - mask))
        # the latent mask as in training and inference: a cell is inside if any of its pixels is (max-pool)
        mask_latent = F.max_pool2d(mask, tgt.shape[-1] // latent_shape[-1])
        extra = torch.cat([mask_latent, masked], 1)
    uncond = encoder.null(obj.shape[0]) if stage == 2 else None
    latents = denoise(unet, scheduler, cond, uncond, tuple(latent_shape), steps, guidance, generator, extra)
    out = decode_latents(vae, latents)
    middle = (tgt + 1) / 2
    if stage == 2:
        middle = middle * (1 - mask) + mask * torch.tensor([1.0, 0.0, 1.0], device=device).view(1, 3, 1, 1) * 0.6 \
            + middle * mask * 0.4
    size = tgt.shape[-1]
    obj_big = F.interpolate(obj, size=(size, size), mode="bilinear", align_corners=False)
    rows = torch.cat([obj_big, middle, out], dim=3)  # B x 3 x H x 3W
    grid = torch.cat(list(rows), dim=1)  # 3 x BH x 3W
    image: np.ndarray = (grid.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    return image


def save_grid(grid: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path
