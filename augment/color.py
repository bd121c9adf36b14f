"""Colour / lighting augmentation P of stage 2, applied through one 3D LUT.

:func:`sample_color` draws a :class:`ColorParams`; :func:`build_lut` turns it into
a ``PIL.ImageFilter.Color3DLUT``; :func:`apply_color` filters an image with it.

The table is computed vectorised in numpy (float32) over the ``size**3`` grid
(about 0.15-0.3 ms for 17^3) instead of with ``pillow_lut.rgb_color_enhance``, whose
hue path calls a Python function per grid point (15-26 ms; its numpy path, used only
when hue is 0, has no tint and no hue). The maths is that of
``pillow_lut.rgb_color_enhance`` (pillow-lut 1.1, ``generators.py``), step for step
and in its order, on RGB in [0, 1]:

1. contrast ``c``:   ``x = (x - 0.5) * (1 + c) + 0.5``
2. saturation ``s``: ``x += (x - L) * s`` with ``L = 0.2126 R + 0.7152 G + 0.0722 B``
3. exposure ``e``:   ``x = 1 - max(0, 1 - x) ** (2 ** e)``
4. brightness ``b``: ``x += b`` -- an *additive offset*, exactly pillow_lut's ``brightness``
5. warmth ``w`` (and tint ``t``, ours): in YUV, with ``k = sin(Y * 3.14159)``,
   ``(Y, U, V) += k * w * (0.1765, -0.1255, 0.0902)`` for ``w >= 0`` and
   ``k * w * (-0.0588, -0.1569, 0.1255)`` for ``w < 0`` (pillow_lut);
   tint adds ``k * t * (0, 0.0902, 0.1255)``: the warm direction turned by 90 degrees
   in the UV plane with the same length, i.e. the green (``t < 0``) to magenta
   (``t > 0``) axis that is the complement of the blue-to-amber warmth axis.
6. hue ``h``:        HSV hue rotated by ``h`` turns (``(H + h) % 1``); negative ``h`` is
   allowed here and equals pillow_lut's ``h % 1``
7. gamma ``g``:      ``x = max(0, x) ** g``

Each step is skipped when its value is neutral (0, or 1 for gamma), like pillow_lut,
so the identity params give the identity table exactly. Values outside [0, 1] are
kept in the table; Pillow clips when it applies the LUT.

A ``.cube`` look, when drawn, is composed *before* the parametric steps into the same
single table: ``table = enhance(cube(grid))``, which is what
``pillow_lut.rgb_color_enhance(cube_lut, ...)`` does to a cube of the same size. A cube
of another size is first resampled trilinearly to the grid. One table means one
filter pass and no 8-bit rounding between the look and the adjustments.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from .affine import _as_range, _finite, _params_from_dict

__all__ = [
    "ColorConfig",
    "ColorParams",
    "apply_color",
    "build_lut",
    "color_table",
    "list_cubes",
    "load_cube_table",
    "sample_color",
]

_WARM_POS = (0.1765, -0.1255, 0.0902)  # pillow_lut, warmth > 0 (Y, U, V per unit)
_WARM_NEG = (-0.0588, -0.1569, 0.1255)  # pillow_lut, warmth < 0 (multiplied by warmth < 0)
_TINT = (0.0, 0.0902, 0.1255)  # ours: _WARM_POS's (U, V) turned +90 degrees -> magenta for tint > 0


@dataclass(frozen=True)
class ColorConfig:
    """Ranges P is drawn from, and how the LUT is built.

    Every range is drawn uniformly over ``[low, high)`` except ``gamma``, which is drawn
    log-uniformly (so ``(0.8, 1.25)`` is symmetric around 1). ``hue`` is in turns
    (1 = 360 degrees). ``lut_size`` is the grid size of the 3D LUT (2..65).
    ``cube_dir`` holds ``.cube`` looks; with probability ``cube_p`` one of them is
    composed into the LUT (params record its file name, resolved against ``cube_dir``).
    """

    brightness: tuple[float, float] = (-0.2, 0.2)
    exposure: tuple[float, float] = (-0.3, 0.3)
    contrast: tuple[float, float] = (-0.25, 0.25)
    saturation: tuple[float, float] = (-0.3, 0.3)
    hue: tuple[float, float] = (-0.04, 0.04)
    warmth: tuple[float, float] = (-0.25, 0.25)
    tint: tuple[float, float] = (-0.15, 0.15)
    gamma: tuple[float, float] = (0.8, 1.25)
    lut_size: int = 17
    cube_dir: str | None = None
    cube_p: float = 0.3

    def __post_init__(self) -> None:
        # bounds: pillow_lut's valid ranges (hue: half a turn either way; tint: like warmth)
        bounds = {
            "brightness": (-1.0, 1.0),
            "exposure": (-5.0, 5.0),
            "contrast": (-1.0, 5.0),
            "saturation": (-1.0, 5.0),
            "hue": (-0.5, 0.5),
            "warmth": (-1.0, 1.0),
            "tint": (-1.0, 1.0),
        }
        for name, (lo, hi) in bounds.items():
            object.__setattr__(self, name, _as_range(name, getattr(self, name), lo, hi))
        object.__setattr__(self, "gamma", _as_range("gamma", self.gamma, 0.0, 10.0, open_lo=True))
        if isinstance(self.lut_size, bool) or not isinstance(self.lut_size, (int, np.integer)):
            raise ValueError(f"lut_size must be an int, got {self.lut_size!r}")
        if not 2 <= self.lut_size <= 65:
            raise ValueError(f"lut_size must be in 2..65, got {self.lut_size!r}")
        object.__setattr__(self, "lut_size", int(self.lut_size))
        if self.cube_dir is not None:
            object.__setattr__(self, "cube_dir", str(self.cube_dir))
        if not 0.0 <= float(self.cube_p) <= 1.0:
            raise ValueError(f"cube_p must be in [0, 1], got {self.cube_p!r}")
        object.__setattr__(self, "cube_p", float(self.cube_p))


@dataclass(frozen=True)
class ColorParams:
    """One drawn P (see the module docstring for each value's formula); ``cube`` is a ``.cube`` file name or None.

    Stored as Python floats / str, so :meth:`to_dict` is JSON-able and the round trip is exact.
    """

    brightness: float
    exposure: float
    contrast: float
    saturation: float
    hue: float
    warmth: float
    tint: float
    gamma: float
    cube: str | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name != "cube":
                object.__setattr__(self, f.name, _finite(f.name, getattr(self, f.name)))
        if self.gamma <= 0.0:
            raise ValueError(f"gamma must be > 0, got {self.gamma!r}")
        if self.cube is not None and (
            not isinstance(self.cube, str) or not self.cube or os.path.basename(self.cube) != self.cube
        ):
            raise ValueError(f"cube must be a bare file name (no folders) or None, got {self.cube!r}")

    def to_dict(self) -> dict[str, float | str | None]:
        """Plain JSON-able dict of every field."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColorParams:
        """Inverse of :meth:`to_dict` (exactly these keys)."""
        return _params_from_dict(cls, data)


def list_cubes(folder: str | os.PathLike[str]) -> list[str]:
    """Sorted file names (not paths) of the ``.cube`` files directly in ``folder``."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"cube folder not found: {root}")
    return sorted(p.name for p in root.iterdir() if p.suffix.lower() == ".cube" and p.is_file())


def sample_color(
    rng: np.random.Generator,
    cfg: ColorConfig | None = None,
    cubes: Sequence[str] = (),
) -> ColorParams:
    """Draw one P from ``cfg``.

    ``cubes``: candidate ``.cube`` files (names or paths; the file name is recorded).
    When empty and ``cfg.cube_dir`` is set, the cubes of that folder are used. The
    eight values are always drawn first, then the cube coin (always), then the cube
    index (only when the coin hits and there are cubes).
    """
    cfg = cfg or ColorConfig()
    brightness = float(rng.uniform(*cfg.brightness))
    exposure = float(rng.uniform(*cfg.exposure))
    contrast = float(rng.uniform(*cfg.contrast))
    saturation = float(rng.uniform(*cfg.saturation))
    hue = float(rng.uniform(*cfg.hue))
    warmth = float(rng.uniform(*cfg.warmth))
    tint = float(rng.uniform(*cfg.tint))
    glo, ghi = cfg.gamma
    gamma = float(math.exp(rng.uniform(math.log(glo), math.log(ghi)))) if glo < ghi else glo
    cube = None
    if rng.random() < cfg.cube_p:
        names = [os.path.basename(c) for c in cubes] or (list_cubes(cfg.cube_dir) if cfg.cube_dir else [])
        if names:
            cube = names[int(rng.integers(len(names)))]
    return ColorParams(brightness, exposure, contrast, saturation, hue, warmth, tint, gamma, cube)


@lru_cache(maxsize=8)
def _grid(size: int) -> np.ndarray:
    """Read-only identity table ``(size, size, size, 3)``: ``[b, g, r]`` holds ``(r, g, b)`` (Color3DLUT order)."""
    axis = np.arange(size, dtype=np.float64) / (size - 1)
    b, g, r = np.meshgrid(axis, axis, axis, indexing="ij")
    out = np.stack((r, g, b), axis=-1)
    out.flags.writeable = False
    return out


def _hue_rotate(x: np.ndarray, hue: float) -> np.ndarray:
    """pillow_lut's ``_rgb_to_hsv`` -> ``(h + hue) % 1`` -> ``_hsv_to_rgb`` on a ``(3, N)`` array, branch for branch.

    (``where`` chains rather than ``select`` / fancy indexing: ~4x faster on 17^3 points.)
    """
    r, g, b = x
    max_v = np.maximum(np.maximum(r, g), b)
    min_v = np.minimum(np.minimum(r, g), b)
    d = max_v - min_v
    flat = d == 0  # max == min: hue 0
    dd = np.where(flat, 1.0, d)
    zero = max_v == 0
    s = np.where(zero, 0.0, d / np.where(zero, 1.0, max_v))
    # branch precedence as in pillow_lut: flat, then max == r, then max == g, else b
    h = (r - g) / dd + 4.0
    h = np.where(max_v == g, (b - r) / dd + 2.0, h)
    h = np.where(max_v == r, (g - b) / dd + (g < b).astype(x.dtype) * 6.0, h)
    h = np.where(flat, 0.0, h)
    h = h / 6.0 + hue  # in [-0.5, 1.5): x - floor(x) is bit-identical to Python's x % 1 there
    h = h - np.floor(h)
    i = np.floor(h * 6.0)  # h >= 0, so floor == int(); i == 6 (h rounded to 1.0) falls to the last case
    f = h * 6.0 - i
    v = max_v
    p = v * (1.0 - s)
    q = v * (1.0 - f * s)
    t = v * (1.0 - (1.0 - f) * s)
    m0, m1, m2, m3, m4 = (i == k for k in range(5))
    # sectors 0..5 (else): r = v q p p t v; g = t v v q p p; b = p p t v v q
    r2 = np.where(m1, q, np.where(m2 | m3, p, np.where(m4, t, v)))
    g2 = np.where(m0, t, np.where(m1 | m2, v, np.where(m3, q, p)))
    b2 = np.where(m0 | m1, p, np.where(m2, t, np.where(m3 | m4, v, q)))
    return np.stack((r2, g2, b2))


def _enhance(rgb: np.ndarray, params: ColorParams) -> np.ndarray:
    """Apply the parametric steps 1-7 (module docstring) to an ``(..., 3)`` array of RGB points; float32 out.

    float32 like pillow_lut's own numpy path (its hue path is float64 Python): the
    table ends up float32 and Pillow quantises it to 16 bits anyway; float32 sin /
    pow are several times faster than float64 ones.
    """
    shape = rgb.shape
    x: np.ndarray = np.array(rgb.reshape(-1, 3).T, dtype=np.float32, order="C")  # (3, N), own C-ordered copy
    if params.contrast:
        x = (x - 0.5) * (1.0 + params.contrast) + 0.5
    if params.saturation:
        avg = x[0] * 0.2126 + x[1] * 0.7152 + x[2] * 0.0722
        x += (x - avg) * params.saturation
    if params.exposure:
        x = 1.0 - np.maximum(1.0 - x, 0.0) ** (2.0**params.exposure)
    if params.brightness:
        x += params.brightness
    if params.warmth or params.tint:
        r, g, b = x
        y = 0.299 * r + 0.587 * g + 0.114 * b
        u = (1.0 / 1.772) * (b - y)
        v = (1.0 / 1.402) * (r - y)
        k = np.sin(y * 3.14159)
        w = params.warmth
        if w:
            dy, du, dv = _WARM_NEG if w < 0 else _WARM_POS
            y += k * (w * dy)
            u += k * (w * du)
            v += k * (w * dv)
        if params.tint:
            u += k * (params.tint * _TINT[1])
            v += k * (params.tint * _TINT[2])
        x = np.stack((1.402 * v + y, y - (0.299 * 1.402 / 0.587) * v - (0.114 * 1.772 / 0.587) * u, 1.772 * u + y))
    if params.hue:
        x = _hue_rotate(x, params.hue)
    if params.gamma != 1.0:
        x = np.maximum(x, 0.0) ** params.gamma
    return x.T.reshape(shape)


def _sample_trilinear(table: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Trilinear lookup of ``(..., 3)`` RGB points (clipped to [0, 1]) in a ``[b, g, r]``-indexed table."""
    size = table.shape[0]
    x = np.clip(points, 0.0, 1.0) * (size - 1)
    i0 = np.minimum(np.floor(x).astype(np.intp), size - 2)
    f = x - i0
    ir, ig, ib = i0[..., 0], i0[..., 1], i0[..., 2]
    fr, fg, fb = f[..., 0:1], f[..., 1:2], f[..., 2:3]
    out = np.zeros(points.shape, dtype=np.float64)
    for db, wb in ((0, 1.0 - fb), (1, fb)):
        for dg, wg in ((0, 1.0 - fg), (1, fg)):
            for dr, wr in ((0, 1.0 - fr), (1, fr)):
                out += table[ib + db, ig + dg, ir + dr] * (wb * wg * wr)
    return out


@lru_cache(maxsize=64)
def load_cube_table(path: str) -> np.ndarray:
    """A ``.cube`` file (via ``pillow_lut.load_cube_file``) as a read-only float64 ``(n, n, n, 3)`` ``[b, g, r]`` table.

    Cached by path (64 entries): a file rewritten in place is not re-read in this process.
    """
    from pillow_lut import load_cube_file

    lut = load_cube_file(str(path))
    if lut.channels != 3:
        raise ValueError(f"{path}: only 3-channel cubes are supported, got {lut.channels}")
    n1, n2, n3 = lut.size
    table = np.asarray(lut.table, dtype=np.float64).reshape(n3, n2, n1, 3)
    table.flags.writeable = False
    return table


@lru_cache(maxsize=64)
def _cube_on_grid(path: str, size: int) -> np.ndarray:
    """The cube evaluated at the ``size**3`` grid points (itself when sizes match, else trilinear), read-only."""
    table = load_cube_table(path)
    if table.shape[:3] == (size, size, size):
        return table
    if len(set(table.shape[:3])) != 1:
        raise ValueError(f"{path}: only cubic LUTs are supported, got size {table.shape[:3]}")
    out = _sample_trilinear(table, _grid(size))
    out.flags.writeable = False
    return out


def color_table(params: ColorParams, size: int = 17, cube_table: np.ndarray | None = None) -> np.ndarray:
    """The LUT of ``params`` as a float32 ``(size, size, size, 3)`` array indexed ``[b, g, r]`` (Color3DLUT layout).

    ``cube_table``: a ``[b, g, r]``-indexed cube table composed first (any size); it is
    required exactly when ``params.cube`` is set.
    """
    if not 2 <= int(size) <= 65:
        raise ValueError(f"size must be in 2..65, got {size!r}")
    if (params.cube is None) != (cube_table is None):
        raise ValueError("cube_table must be given exactly when params.cube is set")
    if cube_table is None:
        points = _grid(size)
    else:
        cube_table = np.asarray(cube_table, dtype=np.float64)
        n = cube_table.shape[0]
        if cube_table.shape != (n, n, n, 3):
            raise ValueError(f"cube_table must be (n, n, n, 3), got {cube_table.shape}")
        points = cube_table if n == size else _sample_trilinear(cube_table, _grid(size))
    return _enhance(points, params).astype(np.float32)


def build_lut(
    params: ColorParams,
    size: int = 17,
    cube_table: np.ndarray | ImageFilter.Color3DLUT | None = None,
) -> ImageFilter.Color3DLUT:
    """``PIL.ImageFilter.Color3DLUT`` of ``params`` (see :func:`color_table`; a Color3DLUT is accepted as the cube)."""
    if isinstance(cube_table, ImageFilter.Color3DLUT):
        n1, n2, n3 = cube_table.size
        cube_table = np.asarray(cube_table.table, dtype=np.float64).reshape(n3, n2, n1, cube_table.channels)
    table = color_table(params, size, cube_table)
    return ImageFilter.Color3DLUT(size, table.reshape(-1), channels=3, _copy_table=False)


def _cube_path(params: ColorParams, cfg: ColorConfig) -> str:
    if cfg.cube_dir is None:
        raise ValueError(f"params use cube {params.cube!r} but cfg.cube_dir is None")
    path = Path(cfg.cube_dir) / params.cube  # type: ignore[operator]
    if not path.is_file():
        raise FileNotFoundError(f"cube file not found: {path}")
    return str(path)


def apply_color(image: np.ndarray, params: ColorParams, cfg: ColorConfig | None = None) -> np.ndarray:
    """Apply P to an ``HxWx3`` uint8 image (``Image.filter`` with the LUT of ``cfg.lut_size``); returns HxWx3 uint8.

    A cube named in ``params`` is read from ``cfg.cube_dir`` (cached per path).
    """
    cfg = cfg or ColorConfig()
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8, got shape {image.shape} dtype {image.dtype}")
    cube = _cube_on_grid(_cube_path(params, cfg), cfg.lut_size) if params.cube is not None else None
    lut = build_lut(params, cfg.lut_size, cube)
    out = Image.fromarray(np.ascontiguousarray(image)).filter(lut)
    return np.asarray(out)
