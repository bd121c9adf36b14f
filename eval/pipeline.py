"""The compositing pipeline: an object, a background and a mask (any precision level) or a box in, the
composite out, with background blending (the paper's Fig. 3).

``CompositingPipeline.from_pretrained(RUN2/final)`` loads a stage-2 export (diffusers-style folders:
``unet/``, ``vae/``, ``scheduler/``, ``encoder/``, ``config.json``); ``save_pretrained`` writes one. Both are
:class:`imprint.train.export.Compositor`'s, the one reader and writer of that folder (the trainer writes
its export with it too).
Blending: at every denoising step the latent outside the (dilated) mask is replaced by the background's
latent noised to that step; the decoded region is pasted back with a feathered mask that is zero outside
the dilated region, so every pixel outside it equals the background exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from imprint.errors import UsageError
from imprint.geometry import (Window, binarize, object_crop, object_pixels, resize_labels, resize_stored, target_crop,
                              target_pixels, to_rgb)
from imprint.masks import mask_bbox
from imprint.train.export import Compositor
from imprint.train.models import VAE, ImageEncoder, ModelFolderError, NoiseScheduler, UNet
from imprint.train.sampling import decode_latents, denoise

SCHEDULERS = ("ddim", "dpm++")


class CompositeInputError(UsageError, ValueError):
    """An input the pipeline cannot use; the message names the fix."""


@dataclass(frozen=True)
class CompositeOptions:
    steps: int = 50
    guidance: float = 3.0
    seed: int = 0
    blend: bool = True
    context: float = 1.6  # the generated square = mask box side x context (fitted into the background)
    object_pad: float = 1.1  # the object crop = its box side x pad
    dilate: int = 2  # latent cells the blending region grows beyond the mask (room for shadows and edges)
    feather: int = 9  # pixels of the final blend's soft edge (inside the dilated region)
    fill: tuple[int, int, int] = (0, 0, 0)  # object background fill, as in the training pairs

    def __post_init__(self) -> None:
        if self.steps < 1 or self.guidance < 0 or self.context < 1 or self.object_pad < 1:
            raise ValueError("steps >= 1, guidance >= 0, context >= 1 and object_pad >= 1")


def object_mask_of(image: Image.Image | np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The object's mask: the given one, else the image's alpha; neither is an error."""
    if mask is not None:
        return binarize(np.asarray(mask))
    arr = np.asarray(image.convert("RGBA") if isinstance(image, Image.Image) and image.mode in ("RGBA", "LA", "PA")
                     else image)
    if isinstance(image, Image.Image) and image.mode not in ("RGBA", "LA", "PA"):
        raise CompositeInputError("the object image has no alpha and no mask was given: pass an RGBA PNG or "
                                  "an object mask (--object-mask)")
    if arr.ndim != 3 or arr.shape[2] != 4:
        raise CompositeInputError("the object image has no alpha and no mask was given: pass an RGBA PNG or "
                                  "an object mask (--object-mask)")
    return binarize(arr[..., 3])


def box_mask(box: Sequence[int], size: tuple[int, int]) -> np.ndarray:
    """A filled box ``[x0, y0, x1, y1)`` as a mask of ``size`` (width, height); level 0."""
    w, h = size
    x0, y0, x1, y1 = (int(v) for v in box)
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise CompositeInputError(f"box {list(box)} is not inside the {w}x{h} background: give "
                                  f"0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h}")
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _check_mask(mask: np.ndarray, background: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.shape != background.shape[:2]:
        raise CompositeInputError(f"the mask is {mask.shape[1]}x{mask.shape[0]} but the background is "
                                  f"{background.shape[1]}x{background.shape[0]}: give a mask of the background's size")
    mask = binarize(mask)
    if not mask.any():
        raise CompositeInputError("the mask is empty: draw where the object goes (any of the four precision "
                                  "levels, or --box x0,y0,x1,y1)")
    return mask


@dataclass(frozen=True)
class ModelInputs:
    """What the models get for a batch (:meth:`CompositingPipeline.prepare`), and where it goes back."""

    objects: torch.Tensor  # B x 3 x S_obj x S_obj in [0, 1], the image encoder's input
    targets: torch.Tensor  # B x 3 x R x R in [-1, 1], the background square the model regenerates, for the VAE
    masks: torch.Tensor  # B x 1 x R x R float 0/1, the placement mask in that square
    windows: list[Window]  # each square's window in its background
    backgrounds: list[np.ndarray]  # the backgrounds as H x W x 3 uint8


class CompositingPipeline(Compositor):
    """Stage-2 model + VAE + scheduler + image encoder, ready to composite."""

    def __init__(self, unet: UNet, vae: VAE, scheduler: NoiseScheduler, encoder: ImageEncoder,
                 config: dict[str, Any]) -> None:
        super().__init__(unet, vae, scheduler, encoder, config)
        self.resolution = int(config["resolution"])
        self.object_size = int(config["object_size"])
        self.factor = 2 ** (len(vae.config.block_out_channels) - 1)
        for module in (unet, vae, encoder):
            module.eval().requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @classmethod
    def from_pretrained(cls, folder: str | Path, scheduler: Any = "ddim", device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None) -> "CompositingPipeline":
        """Load a stage-2 export with the ``scheduler`` named (``ddim`` or ``dpm++``), on ``device`` in ``dtype``."""
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        if scheduler not in SCHEDULERS:
            raise CompositeInputError(f"scheduler must be one of {', '.join(SCHEDULERS)}")
        sched_cls = DDIMScheduler if scheduler == "ddim" else DPMSolverMultistepScheduler
        try:
            pipe = super().from_pretrained(folder, sched_cls)
        except ModelFolderError as exc:
            raise CompositeInputError(str(exc)) from None
        return pipe.to(device or ("cuda" if torch.cuda.is_available() else "cpu"), dtype)

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> "CompositingPipeline":
        for module in (self.unet, self.encoder):
            module.to(device=device, dtype=dtype)
        self.vae.to(device=device)  # the VAE stays in float32 (fp16 VAEs overflow)
        return self

    # --- preparation ---------------------------------------------------------------------------------

    def _object(self, image: Image.Image | np.ndarray, mask: np.ndarray | None, opts: CompositeOptions
                ) -> np.ndarray:
        """The object as stage 2 was trained on it: :func:`imprint.geometry.object_crop` of its mask's box."""
        rgb = to_rgb(image)
        omask = object_mask_of(image, mask)
        if omask.shape != rgb.shape[:2]:
            raise CompositeInputError(f"the object mask is {omask.shape[1]}x{omask.shape[0]} but the object image is "
                                      f"{rgb.shape[1]}x{rgb.shape[0]}")
        box = mask_bbox(omask)
        if box is None:
            raise CompositeInputError("the object's mask (or alpha) is empty: nothing to composite")
        return object_crop(rgb, omask, box, opts.object_pad, self.object_size, opts.fill)[0]

    def _region(self, background: np.ndarray, mask: np.ndarray, opts: CompositeOptions
                ) -> tuple[Window, np.ndarray, np.ndarray]:
        """The square generated around the mask, as stage-2 targets were cut: :func:`imprint.geometry.target_crop`."""
        box = mask_bbox(mask)
        assert box is not None  # _check_mask refuses an empty mask
        crop, cmask, win = target_crop(background, mask, box, opts.context, self.resolution, opts.fill)
        return win, crop, cmask

    @torch.no_grad()
    def prepare(self, objects: Sequence[Any], backgrounds: Sequence[Any], masks: Sequence[np.ndarray],
                object_masks: Sequence[np.ndarray | None] | None = None, options: CompositeOptions | None = None
                ) -> ModelInputs:
        """The model inputs of a batch, cut and scaled exactly as stage 2's training pairs and loader did.

        Objects: :func:`imprint.geometry.object_crop` of each object's mask (or alpha) box, then
        :func:`imprint.geometry.object_pixels`; backgrounds: :func:`imprint.geometry.target_crop` of each
        placement mask's box, then :func:`imprint.geometry.target_pixels`.
        """
        opts = options or CompositeOptions()
        n = len(objects)
        if not (len(backgrounds) == len(masks) == n):
            raise CompositeInputError("give one background and one mask per object")
        bgs = [to_rgb(b) for b in backgrounds]
        checked = [_check_mask(m, bg) for m, bg in zip(masks, bgs)]
        objs = np.stack([self._object(o, m, opts) for o, m in zip(objects, list(object_masks or [None] * n))])
        regions = [self._region(bg, m, opts) for bg, m in zip(bgs, checked)]
        device, dtype = self.device, next(self.unet.parameters()).dtype
        return ModelInputs(
            objects=object_pixels(torch.from_numpy(objs).to(device), dtype),
            targets=target_pixels(torch.from_numpy(np.stack([r[1] for r in regions])).to(device)),
            masks=torch.from_numpy(np.stack([r[2] for r in regions])[:, None].astype(np.float32)).to(device),
            windows=[r[0] for r in regions], backgrounds=bgs)

    # --- compositing ---------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(self, objects: Sequence, backgrounds: Sequence, masks: Sequence[np.ndarray],
                 object_masks: Sequence[np.ndarray | None] | None = None,
                 options: CompositeOptions | None = None, return_regions: bool = False):
        """Composite each object into its background where its mask says; returns uint8 RGB images of the
        backgrounds' sizes (and, with ``return_regions``, the boolean edited region of each: every pixel
        outside it is the background's). One batch, one seed: the same inputs and seed give the same pixels
        (CPU)."""
        opts = options or CompositeOptions()
        x = self.prepare(objects, backgrounds, masks, object_masks, opts)
        n, device, dtype = len(objects), self.device, x.objects.dtype
        obj_t, crops, cmask = x.objects, x.targets, x.masks
        scale = self.vae.config.scaling_factor
        bg_lat = self.vae.encode(crops).latent_dist.mode() * scale
        masked_lat = self.vae.encode(crops * (1 - cmask)).latent_dist.mode() * scale
        mask_lat = F.max_pool2d(cmask, self.factor)
        region_lat = F.max_pool2d(mask_lat, 2 * opts.dilate + 1, stride=1, padding=opts.dilate) if opts.dilate else mask_lat
        generator = torch.Generator(device=device).manual_seed(opts.seed)
        cond = self.encoder(obj_t)
        uncond = self.encoder.null(n).to(cond.dtype)
        extra = torch.cat([mask_lat, masked_lat], 1).to(dtype)
        blend_noise = torch.randn(bg_lat.shape, generator=generator, device=device, dtype=bg_lat.dtype)
        def blend(latents: torch.Tensor, _t: int, i: int) -> torch.Tensor:
            timesteps = self.scheduler.timesteps  # set by denoise() before the first step
            known = bg_lat if i + 1 >= len(timesteps) else \
                self.scheduler.add_noise(bg_lat, blend_noise, timesteps[i + 1:i + 2].repeat(n))
            return region_lat.to(latents.dtype) * latents + (1 - region_lat.to(latents.dtype)) * known.to(latents.dtype)

        latents = denoise(self.unet, self.scheduler, cond, uncond, tuple(bg_lat.shape), opts.steps, opts.guidance,
                          generator, extra, after_step=blend if opts.blend else None)
        images = decode_latents(self.vae, latents)  # B x 3 x R x R in [0, 1]
        gen = (images.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
        region_px = binarize(F.interpolate(region_lat, scale_factor=self.factor, mode="nearest")[:, 0].cpu().numpy())
        if not opts.blend:  # no blending: the whole generated square replaces the background
            region_px[:] = True
        pasted = [self._paste(bg, win, g, r, opts) for bg, win, g, r in zip(x.backgrounds, x.windows, gen, region_px)]
        images_out = [p[0] for p in pasted]
        return (images_out, [p[1] for p in pasted]) if return_regions else images_out

    def _paste(self, background: np.ndarray, win, generated: np.ndarray, region: np.ndarray,
               opts: CompositeOptions) -> tuple[np.ndarray, np.ndarray]:
        """Paste the generated square back with a feathered mask that is zero outside the dilated region."""
        h, w = background.shape[:2]
        side = win.side
        gen = resize_stored(generated, side)
        reg = resize_labels(region, side).astype(np.float32)
        if opts.feather > 0:
            k = 2 * (opts.feather // 2) + 1
            reg = np.minimum(cv2.GaussianBlur(cv2.erode(reg, np.ones((k // 2 + 1,) * 2, np.uint8)), (k, k), 0), reg)
        out = background.copy()
        x0, y0 = max(win.x0, 0), max(win.y0, 0)
        x1, y1 = min(win.x0 + side, w), min(win.y0 + side, h)
        g = gen[y0 - win.y0:y1 - win.y0, x0 - win.x0:x1 - win.x0].astype(np.float32)
        a = reg[y0 - win.y0:y1 - win.y0, x0 - win.x0:x1 - win.x0][..., None]
        b = background[y0:y1, x0:x1].astype(np.float32)
        blended = np.clip(np.round(b * (1 - a) + g * a), 0, 255).astype(np.uint8)
        inside = a[..., 0] > 0
        patch = out[y0:y1, x0:x1]
        patch[inside] = blended[inside]  # outside the region: the background's own pixels, untouched
        edited = np.zeros((h, w), bool)
        edited[y0:y1, x0:x1] = inside
        return out, edited
