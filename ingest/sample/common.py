"""What every layout writer of the sample shares: seeded randomness, sizes, and writing files safely."""

from __future__ import annotations

import shutil
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import overload

import cv2
import numpy as np
from PIL import Image

Size = tuple[int, int]  # (width, height)

_JPEG_QUALITY = 90
_MARKER = ".imprint-sample"
MARGIN = 3  # pixels kept free between every object and the frame border
MIN_BOX = 16  # smallest box side of an annotated object, pixels
_MIN_SIDE = 64  # smallest accepted frame side


# --------------------------------------------------------------------------- randomness


def rng_for(seed: int, *keys: int | str) -> np.random.Generator:
    """An independent generator for ``seed`` and a path of keys (source name, item index...)."""
    if seed < 0:
        raise ValueError("seed must be >= 0")
    words = [int(seed)] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng(words)


def hex_id(rng: np.random.Generator, n_chars: int) -> str:
    return bytes(rng.integers(0, 256, size=(n_chars + 1) // 2, dtype=np.uint8)).hex()[:n_chars]


@overload
def lerp(a: float, b: float, t: float) -> float: ...


@overload
def lerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray: ...


def lerp(a: np.ndarray | float, b: np.ndarray | float, t: float) -> np.ndarray | float:
    return a + (b - a) * t


def smoothstep(t: float) -> float:
    return t * t * (3.0 - 2.0 * t)


def frac(t: int, n: int) -> float:
    return t / (n - 1) if n > 1 else 0.0


# --------------------------------------------------------------------------- arguments


def check_args(seed: int, size: Sequence[int]) -> Size:
    """Validate a seed and a (width, height); return the size as ints."""
    if int(seed) < 0:
        raise ValueError("seed must be >= 0")
    w, h = int(size[0]), int(size[1])
    if min(w, h) < _MIN_SIDE:
        raise ValueError(f"size {w}x{h} is too small: each side must be at least {_MIN_SIDE} pixels")
    return w, h


def scaled_size(size: Size, k: float) -> Size:
    return max(_MIN_SIDE, round(size[0] * k / 2) * 2), max(_MIN_SIDE, round(size[1] * k / 2) * 2)


# --------------------------------------------------------------------------- file writing


def prepare_root(out: Path) -> Path:
    """Empty ``out`` for a fresh write; refuse a non-empty folder the sample generator did not write."""
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / _MARKER).is_file()):
            raise FileExistsError(f"{out} exists and was not written by imprint.ingest.sample; not overwriting it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / _MARKER).write_text("synthetic sample written by imprint.ingest.sample; safe to delete\n")
    return out


def save_jpeg(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format="JPEG", quality=_JPEG_QUALITY)


def save_png(path: Path, arr: np.ndarray, palette: list[int] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr)
    if palette is not None:
        im.putpalette(palette)
    im.save(path, format="PNG")


def save_tiff(path: Path, rgb: np.ndarray) -> None:
    """An RGB TIFF (8- or 16-bit) through OpenCV, which takes BGR."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f"could not write {path}")
