"""Geometry and preprocessing: how a crop is cut, resized, cleared and scaled, the same way everywhere.

Pairing builds the training pairs with these functions, the loader and training validation decode and
scale them with these, and eval cuts its crops from a user's frame with the same calls, so the crop a model
sees at evaluation equals the one it was trained on for the same frame and box (a test checks it). Nothing
here imports torch at import time: the two pixel-scaling functions import it when called.

Windows and crops
    :func:`square_window` is a square of side ``max(box w, h) x context`` centred on the box, moved inside
    the frame where it fits (``fit``: shrunk to the frame first, for targets); :func:`crop_window` cuts it,
    filling what lies outside the frame. :func:`object_crop` (the object: window, background removed) and
    :func:`target_crop` (the target: fitted window, natural pixels) are the two crops of a stage-2 pair.

Resize rules (OpenCV)
    - :func:`resize_crop`, a crop cut from a frame to a model size (pairs, eval): area averaging beyond a
      2x reduction, bilinear up to 2x, bicubic when growing. Every shard is built with it.
    - :func:`resize_stored`, an image already at a model size (a stored shard image, a generated square)
      to another: area when shrinking, bicubic when growing. The loader and eval's paste-back use it.
    - :func:`resize_mask`, a mask beside a crop: resampled like the image (:func:`resize_crop`'s rule) on
      0/1 and kept where it covers at least half a pixel (keeps thin parts better than nearest).
    - :func:`resize_labels`, label maps and masks read back at another size: nearest neighbour.

    The two image rules differ only between a 1x and a 2x reduction (bilinear or area); merging them would
    change either the shards' bytes or the pixels the loader hands the trainer, so both are kept, named.

Background removal
    :func:`remove_background` is ``I ⊗ M``: object pixels kept, the rest set to ``fill``.

Pixel scaling to model inputs
    :func:`object_pixels` (``B x H x W x 3`` uint8 -> ``B x 3 x H x W`` in [0, 1], the image encoder's
    input; it normalises further) and :func:`target_pixels` (-> [-1, 1], the VAE's range).

Mask binarisation: one rule
    :func:`binarize`: a pixel is inside when its value is at least half of the mask's full scale. The full
    scale is 1 for bool and float masks and for integer masks that hold only 0 and 1, and 255 (8 bits) for
    integer masks holding larger values. So ``True``, ``1``, ``1.0`` and ``255`` are inside; an 8-bit
    anti-aliased edge is inside from 128 up (``> 127``); a resampled 0/1 mask from a covered half up.
    Masks that are already binary (bool, 0/1, 0/255: every mask imprint writes) give the same result under
    any threshold in (0, full scale), which is why this one rule reproduces every earlier one on them
    (``!= 0``, ``> 127``, ``>= 128``, ``> 0.5``) and leaves the shards' bytes unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

Box = Sequence[int]
Fill = int | Sequence[int]


# --- mask binarisation -----------------------------------------------------------------------------------


def binarize(mask: np.ndarray, full_scale: float | None = None) -> np.ndarray:
    """The one rule (module docstring): inside where ``mask >= full_scale / 2``; a bool array.

    ``full_scale`` defaults to 1 for bool and float masks and integer masks within {0, 1}, else 255. A bool
    mask is returned as it is (not copied).
    """
    arr = np.asarray(mask)
    if arr.dtype == np.bool_:
        return arr
    integer = arr.dtype.kind in "iu"
    if full_scale is None:
        full_scale = 255.0 if integer and arr.size and int(arr.max()) > 1 else 1.0
    # integers compare as integers: x >= 127.5 is x >= 128, x >= 0.5 is x >= 1
    inside: np.ndarray = arr >= (math.ceil(full_scale / 2.0) if integer else full_scale / 2.0)
    return inside


# --- windows and crops -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """A square window in frame pixels; it may extend past the frame (then ``padded``)."""

    x0: int
    y0: int
    side: int
    context: float
    padded: bool

    def to_dict(self) -> dict[str, Any]:
        return {"x0": self.x0, "y0": self.y0, "side": self.side, "context": self.context, "padded": self.padded}


def square_window(bbox: Box, context: float, width: int, height: int, fit: bool = False) -> Window:
    """A square of side ``max(box w, h) * context`` centred on the box, moved inside the frame when it fits.

    With ``fit`` the side is first shrunk to the frame's shorter side (never below the box's),
    so a target is padded only when the object itself is larger than the frame is wide.
    """
    x0, y0, x1, y1 = bbox
    box_side = max(1, x1 - x0, y1 - y0)
    side = max(1, int(round(box_side * context)))
    if fit:
        side = max(box_side, min(side, width, height))
        context = side / box_side
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    wx, wy = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    if side <= width:
        wx = min(max(wx, 0), width - side)
    if side <= height:
        wy = min(max(wy, 0), height - side)
    padded = wx < 0 or wy < 0 or wx + side > width or wy + side > height
    return Window(wx, wy, side, float(context), padded)


def crop_window(image: np.ndarray, win: Window, fill: Fill | bool) -> np.ndarray:
    """The window's pixels (a view when it lies inside the frame); outside the frame filled with ``fill``."""
    h, w = image.shape[:2]
    sx0, sy0 = max(win.x0, 0), max(win.y0, 0)
    sx1, sy1 = min(win.x0 + win.side, w), min(win.y0 + win.side, h)
    if (sx0, sy0, sx1, sy1) == (win.x0, win.y0, win.x0 + win.side, win.y0 + win.side):
        return image[sy0:sy1, sx0:sx1]
    out = np.empty((win.side, win.side, *image.shape[2:]), dtype=image.dtype)
    out[...] = fill
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - win.y0:sy1 - win.y0, sx0 - win.x0:sx1 - win.x0] = image[sy0:sy1, sx0:sx1]
    return out


def object_crop(frame: np.ndarray, mask: np.ndarray, box: Box, pad: float, size: int, fill: Fill
                ) -> tuple[np.ndarray, np.ndarray, Window]:
    """The object: its window (box side x ``pad``) cut, resized to ``size``, background removed.

    Returns ``(image uint8 size x size x 3, mask bool, window)``.
    """
    win = square_window(box, pad, frame.shape[1], frame.shape[0])
    crop_mask = resize_mask(crop_window(mask, win, False), size)
    crop = resize_crop(crop_window(frame, win, fill), size)
    return remove_background(crop, crop_mask, fill), crop_mask, win


def target_crop(frame: np.ndarray, mask: np.ndarray, box: Box, context: float, size: int, fill: Fill
                ) -> tuple[np.ndarray, np.ndarray, Window]:
    """The target: the fitted window (box side x ``context``) of the frame, resized to ``size``, natural pixels.

    Returns ``(image uint8 size x size x 3, mask bool, window)``.
    """
    win = square_window(box, context, frame.shape[1], frame.shape[0], fit=True)
    target = resize_crop(crop_window(frame, win, fill), size)
    tmask = resize_mask(crop_window(mask, win, False), size)
    return target, tmask, win


# --- resize rules ----------------------------------------------------------------------------------------


def _crop_interpolation(src: int, size: int) -> int:
    """Area averaging for strong reductions (no aliasing), bilinear up to 2x down, bicubic up."""
    if src > 2 * size:
        return int(cv2.INTER_AREA)
    return int(cv2.INTER_LINEAR if src >= size else cv2.INTER_CUBIC)


def resize_crop(image: np.ndarray, size: int) -> np.ndarray:
    """A square crop resized to ``size x size`` (rule in the module docstring); contiguous."""
    if image.shape[0] == size and image.shape[1] == size:
        return np.ascontiguousarray(image)
    out: np.ndarray = cv2.resize(image, (size, size), interpolation=_crop_interpolation(image.shape[0], size))
    return out


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A square bool mask resampled like its crop, kept where it covers at least half a pixel."""
    if mask.shape[0] == size and mask.shape[1] == size:
        return np.ascontiguousarray(mask)
    # 0/1 in uint8: the resampled value rounds to 1 where the covered fraction is >= 1/2
    soft = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=_crop_interpolation(mask.shape[0], size))
    return binarize(soft, full_scale=1)


def resize_stored(image: np.ndarray, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """``image`` resized to ``size x size``: area when shrinking, bicubic when growing (unchanged when equal).

    With ``out`` (a contiguous ``size x size`` array of the image's dtype and channels) the pixels are written
    there (copied when the size is already right) and ``out`` is returned.
    """
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        if out is None:
            return image
        np.copyto(out, image)
        return out
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_CUBIC
    resized: np.ndarray = cv2.resize(image, (size, size), dst=out, interpolation=interp)
    if out is None:
        return resized
    if resized.ctypes.data != out.ctypes.data:  # OpenCV allocated its own (``out`` did not fit): copy
        np.copyto(out, resized)
    return out


def resize_labels(labels: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label map or mask to ``size`` (a side, or ``(width, height)``).

    Bool masks stay bool; unchanged (not copied) when already that size.
    """
    width, height = (size, size) if isinstance(size, int) else size
    if labels.shape[:2] == (height, width):
        return labels
    if labels.dtype == np.bool_:
        out_bits: np.ndarray = cv2.resize(labels.view(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
        return out_bits.astype(bool)
    out: np.ndarray = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
    return out


# --- images and background removal -----------------------------------------------------------------------


def to_rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    """An image as a contiguous ``H x W x 3`` uint8 array: a PIL image (any mode) or a uint8 array
    ``H x W`` (grey), ``H x W x 1``, ``H x W x 3`` or ``H x W x 4`` (alpha dropped)."""
    if not isinstance(image, np.ndarray):
        from PIL import Image as PILImage

        if not isinstance(image, PILImage.Image):
            raise TypeError(f"expected a PIL image or a numpy array, got {type(image).__name__}")
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    arr = image
    if arr.dtype != np.uint8:
        raise TypeError(f"image arrays must be uint8 (0-255), got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {tuple(arr.shape)}")
    return np.ascontiguousarray(arr)


def _fill_rgb(fill: Fill) -> tuple[int, int, int]:
    values = [int(fill)] * 3 if isinstance(fill, (int, np.integer)) else [int(v) for v in fill]
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise ValueError(f"fill must be a grey level or an RGB triple within 0-255, got {fill}")
    return values[0], values[1], values[2]


@lru_cache(maxsize=16)
def _fill_image(shape: tuple[int, ...], fill: tuple[int, int, int]) -> np.ndarray:
    out = np.empty(shape, np.uint8)
    out[...] = fill
    out.flags.writeable = False
    return out


def remove_background(image: np.ndarray, mask: np.ndarray, fill: Fill = 0) -> np.ndarray:
    """``I ⊗ M``: a new ``H x W x 3`` uint8 image with the object pixels (:func:`binarize`) kept, the rest
    set to ``fill`` (a grey level or an RGB triple)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be H x W x 3 uint8, got shape {image.shape} dtype {image.dtype}")
    if mask.shape[:2] != image.shape[:2]:
        raise ValueError(f"the image is {image.shape[1]}x{image.shape[0]} but the mask is "
                         f"{mask.shape[1]}x{mask.shape[0]} (W x H)")
    colour = _fill_rgb(fill)
    image = np.ascontiguousarray(image)
    m = binarize(mask).astype(np.uint8)
    out: np.ndarray
    if not any(colour):
        out = cv2.bitwise_and(image, image, mask=m)
    else:
        out = cv2.copyTo(image, m, _fill_image(image.shape, colour).copy())
    return out


# --- pixel scaling to model inputs -----------------------------------------------------------------------


def _channels_first(images: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    import torch

    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected B x H x W x 3 uint8 images, got {tuple(images.shape)} {images.dtype}")
    # a new contiguous tensor (never the caller's), so the scaling below may work in place
    return images.permute(0, 3, 1, 2).to(dtype or torch.float32, memory_format=torch.contiguous_format)


def object_pixels(images: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``B x H x W x 3`` uint8 -> ``B x 3 x H x W`` in [0, 1] (float32 unless ``dtype``), on their device."""
    return _channels_first(images, dtype).div_(255.0)


def target_pixels(images: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``B x H x W x 3`` uint8 -> ``B x 3 x H x W`` in [-1, 1] (float32 unless ``dtype``), on their device."""
    return _channels_first(images, dtype).div_(127.5).sub_(1.0)
