"""Geometric augmentation T of stage 2: one affine warp (plus an optional flip) of object and mask.

Sampling and applying are separate so that every drawn value can be stored in
the training row: :func:`sample_affine` draws an :class:`AffineParams` from a
``np.random.Generator``; :func:`apply_affine` replays it. The warp itself is
albumentations' ``A.Affine`` with every range collapsed to the drawn value, so
applying is deterministic (no hidden random state is consulted), and
``AffineParams.from_dict(p.to_dict())`` reproduces the same bytes.

Conventions (those of albumentations 2.x, which does the warp):

* the flip, when drawn, is applied first (mirror about the vertical centre line),
  then the affine warp about the image centre;
* ``angle`` and ``shear_x`` / ``shear_y`` are degrees; ``scale`` is isotropic;
* ``tx`` / ``ty`` are fractions of the width / height; albumentations truncates the
  shift to whole pixels (``int(tx * width)``);
* the output has the input's size; the image is resampled bilinearly with the
  fill colour outside, the mask with nearest neighbour and 0 outside.

albumentations is imported lazily (first apply), with ``NO_ALBUMENTATIONS_UPDATE``
defaulted to 1 so that importing it never goes to the network.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from imprint.geometry import binarize

__all__ = [
    "AffineConfig",
    "AffineParams",
    "apply_affine",
    "is_degenerate",
    "sample_affine",
]


def _as_range(name: str, value: Any, lo: float, hi: float, *, open_lo: bool = False) -> tuple[float, float]:
    """Validate a ``(low, high)`` pair inside ``[lo, hi]`` (``(lo, hi]`` with open_lo) and return it as floats."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair of numbers, got {value!r}") from None
    if not (math.isfinite(a) and math.isfinite(b)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if a > b:
        raise ValueError(f"{name} must have low <= high, got {value!r}")
    below = a <= lo if open_lo else a < lo
    if below or b > hi:
        bracket = "(" if open_lo else "["
        raise ValueError(f"{name} must lie in {bracket}{lo}, {hi}], got {value!r}")
    return a, b


def _finite(name: str, value: Any) -> float:
    """``value`` as a Python float, refusing bools, NaN and infinities."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return out


def _params_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build a params dataclass from exactly its field names (the constructor validates the values)."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}.from_dict needs a dict, got {type(data).__name__}")
    names = [f.name for f in fields(cls)]
    missing = sorted(set(names) - set(data))
    unknown = sorted(set(data) - set(names))
    if missing or unknown:
        raise ValueError(f"{cls.__name__}.from_dict: missing keys {missing}, unknown keys {unknown}")
    return cls(**{n: data[n] for n in names})


@dataclass(frozen=True)
class AffineConfig:
    """Ranges T is drawn from (each uniform over ``[low, high)``).

    ``rotate`` and ``shear`` in degrees (the same range for x and y shear, drawn
    independently), ``scale`` as a factor, ``translate`` as a fraction of the image
    size (x of the width, y of the height, drawn independently), ``flip_p`` the
    probability of a horizontal flip, ``fill`` the RGB colour outside the warped image.
    """

    rotate: tuple[float, float] = (-20.0, 20.0)
    scale: tuple[float, float] = (0.8, 1.2)
    shear: tuple[float, float] = (-8.0, 8.0)
    translate: tuple[float, float] = (-0.08, 0.08)
    flip_p: float = 0.5
    fill: tuple[int, int, int] = (255, 255, 255)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rotate", _as_range("rotate", self.rotate, -180.0, 180.0))
        object.__setattr__(self, "scale", _as_range("scale", self.scale, 0.0, 10.0, open_lo=True))
        object.__setattr__(self, "shear", _as_range("shear", self.shear, -60.0, 60.0))
        object.__setattr__(self, "translate", _as_range("translate", self.translate, -1.0, 1.0))
        if not 0.0 <= float(self.flip_p) <= 1.0:
            raise ValueError(f"flip_p must be in [0, 1], got {self.flip_p!r}")
        object.__setattr__(self, "flip_p", float(self.flip_p))
        object.__setattr__(self, "fill", _as_fill(self.fill))


def _as_fill(fill: Any) -> tuple[int, int, int]:
    """Validate an RGB fill colour (three ints in 0..255)."""
    try:
        out = tuple(int(c) for c in fill)
    except (TypeError, ValueError):
        raise ValueError(f"fill must be three ints in 0..255, got {fill!r}") from None
    if len(out) != 3 or any(not 0 <= c <= 255 for c in out) or any(float(c) != o for c, o in zip(fill, out)):
        raise ValueError(f"fill must be three ints in 0..255, got {fill!r}")
    return out


@dataclass(frozen=True)
class AffineParams:
    """One drawn T: ``angle`` (deg), ``scale``, ``shear_x`` / ``shear_y`` (deg), ``tx`` / ``ty``, ``flip``.

    ``tx`` / ``ty`` are fractions of the width / height.

    Values are stored as Python floats / bool, so :meth:`to_dict` is JSON-able and
    ``from_dict(to_dict())`` (also through JSON) is an exact round trip.
    """

    angle: float
    scale: float
    shear_x: float
    shear_y: float
    tx: float
    ty: float
    flip: bool

    def __post_init__(self) -> None:
        for name in ("angle", "scale", "shear_x", "shear_y", "tx", "ty"):
            object.__setattr__(self, name, _finite(name, getattr(self, name)))
        if self.scale <= 0.0:
            raise ValueError(f"scale must be > 0, got {self.scale!r}")
        for name in ("shear_x", "shear_y"):
            if not -90.0 < getattr(self, name) < 90.0:
                raise ValueError(f"{name} must be in (-90, 90) degrees, got {getattr(self, name)!r}")
        if not isinstance(self.flip, (bool, np.bool_)):
            raise ValueError(f"flip must be a bool, got {self.flip!r}")
        object.__setattr__(self, "flip", bool(self.flip))

    def to_dict(self) -> dict[str, float | bool]:
        """Plain JSON-able dict of every field."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AffineParams:
        """Inverse of :meth:`to_dict` (exactly these keys)."""
        return _params_from_dict(cls, data)


def sample_affine(rng: np.random.Generator, cfg: AffineConfig | None = None) -> AffineParams:
    """Draw one T from ``cfg`` (always 7 draws in a fixed order, so streams stay aligned)."""
    cfg = cfg or AffineConfig()
    angle = float(rng.uniform(*cfg.rotate))
    scale = float(rng.uniform(*cfg.scale))
    shear_x = float(rng.uniform(*cfg.shear))
    shear_y = float(rng.uniform(*cfg.shear))
    tx = float(rng.uniform(*cfg.translate))
    ty = float(rng.uniform(*cfg.translate))
    flip = bool(rng.random() < cfg.flip_p)
    return AffineParams(angle=angle, scale=scale, shear_x=shear_x, shear_y=shear_y, tx=tx, ty=ty, flip=flip)


def _albumentations():
    """Import albumentations without its update check."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A

    return A


def apply_affine(
    image: np.ndarray,
    mask: np.ndarray,
    params: AffineParams,
    fill: tuple[int, int, int] = (255, 255, 255),
) -> tuple[np.ndarray, np.ndarray]:
    """Apply T to an ``HxWx3`` uint8 image and its ``HxW`` mask; returns ``(image uint8, mask bool)`` of the same size.

    Deterministic: the same params (and fill) always give the same bytes.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8, got shape {image.shape} dtype {image.dtype}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image {image.shape[:2]}")
    fill = _as_fill(fill)
    _albumentations()
    import albumentations.augmentations.geometric.functional as fgeometric
    import cv2

    img = np.ascontiguousarray(image)
    msk = np.ascontiguousarray(binarize(mask)).view(np.uint8)  # 0/1, C-contiguous
    if params.flip:
        img, msk = fgeometric.hflip(img), fgeometric.hflip(msk)
    # albumentations' own functional path of A.Affine with every range collapsed to the drawn value
    # (same matrix, same warp: tests check the bytes against the A.Affine transform); building an
    # A.Affine per sample costs ~4 ms of argument validation, the warp itself well under 1 ms.
    h, w = img.shape[:2]
    matrix = fgeometric.create_affine_transformation_matrix(
        {"x": int(params.tx * w), "y": int(params.ty * h)},
        {"x": -params.shear_x, "y": -params.shear_y},
        {"x": params.scale, "y": params.scale},
        params.angle,
        fgeometric.center((h, w)),
    )
    out_img = fgeometric.warp_affine(img, matrix, interpolation=cv2.INTER_LINEAR, fill=fill,
                                     border_mode=cv2.BORDER_CONSTANT, output_shape=(h, w))
    out_msk = fgeometric.warp_affine(msk, matrix, interpolation=cv2.INTER_NEAREST, fill=0,
                                     border_mode=cv2.BORDER_CONSTANT, output_shape=(h, w))
    return np.ascontiguousarray(out_img), binarize(out_msk, full_scale=1)


def is_degenerate(mask_after: np.ndarray, mask_before: np.ndarray, min_keep: float = 0.25) -> bool:
    """True when T lost the object: it vanished, or less than ``min_keep`` of its area is left.

    (For example when the shift pushed it out of the frame.)

    An empty ``mask_before`` counts as degenerate (there is nothing to augment).
    """
    if not 0.0 <= min_keep <= 1.0:
        raise ValueError(f"min_keep must be in [0, 1], got {min_keep!r}")
    before = int(np.count_nonzero(mask_before))
    after = int(np.count_nonzero(mask_after))
    return before == 0 or after == 0 or after < min_keep * before
