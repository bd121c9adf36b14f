"""Reading frames and annotation maps defensively: every failure is a :class:`Drop` with a reason."""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image

from imprint.stats import Drop

DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own decompression-bomb threshold


def _check_size(path: str) -> int:
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise Drop("missing_file", f"{path} does not exist") from None
    if size == 0:
        raise Drop("empty_file", f"{path} is 0 bytes")
    return size


def _check_pixels(path: str, w: int, h: int, max_pixels: int) -> None:
    if w * h > max_pixels:
        raise Drop("decompression_bomb",
                   f"{path} is {w}x{h} = {w * h} pixels, over max_image_pixels={max_pixels}")


def _check_tail(path: str, fmt: str | None, tail: bytes) -> None:
    """Catch truncated files cheaply: a JPEG ends with EOI (FF D9), a PNG with an IEND chunk."""
    tail = tail.rstrip(b"\0")
    if fmt == "JPEG" and not tail.endswith(b"\xff\xd9"):
        raise Drop("truncated_image", f"{path} has no JPEG end-of-image marker (truncated download?)")
    if fmt == "PNG" and b"IEND" not in tail[-12:]:
        raise Drop("truncated_image", f"{path} has no PNG IEND chunk (truncated file?)")


def probe_image(path: str, max_pixels: int = DEFAULT_MAX_PIXELS, full: bool = False) -> tuple[int, int]:
    """Width and height of an image from its header, after checks that cost no decode.

    Checks: file exists and is not empty, the header parses, pixel count under
    ``max_pixels``, and the file is not truncated (JPEG/PNG end markers). With
    ``full`` the image is decoded too (catches corruption inside the data).
    """
    w, h, _ = _read_image(path, max_pixels, full=full, rgb=False)
    return w, h


def read_image(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a whole image to RGB uint8 (HxWx3), for steps that need its pixels (segmentation).

    The checks of :func:`probe_image` with ``full``, with the same drop reasons (``missing_file``,
    ``empty_file``, ``decompression_bomb``, ``truncated_image``, ``corrupt_image``).
    """
    _, _, rgb = _read_image(path, max_pixels, full=True, rgb=True)
    assert rgb is not None
    return rgb


def _read_image(path: str, max_pixels: int, full: bool, rgb: bool) -> tuple[int, int, np.ndarray | None]:
    size = _check_size(path)
    pixels = None
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                w, h = im.size
                fmt = im.format
                _check_pixels(path, w, h, max_pixels)
                if full or rgb:
                    im.load()
                if rgb:
                    pixels = np.asarray(im.convert("RGB"))
            f.seek(max(0, size - 64))
            tail = f.read()
    except Drop:
        raise
    except Image.DecompressionBombError as exc:
        raise Drop("decompression_bomb", f"{path}: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        if "truncated" in str(exc):
            raise Drop("truncated_image", f"{path}: {exc}") from None
        raise Drop("corrupt_image", f"{path} cannot be decoded: {exc}") from None
    _check_tail(path, fmt, tail)
    return w, h, pixels


def read_label_map(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an annotation PNG to its raw values (palette indices, 16-bit ids or 8-bit mask).

    Palette PNGs keep their indices (never converted to colour); RGB(A) masks
    give their first channel.
    """
    _check_size(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                _check_pixels(path, im.size[0], im.size[1], max_pixels)
                arr = np.asarray(im)
    except Drop as drop:
        raise Drop("corrupt_annotation" if drop.reason != "decompression_bomb" else drop.reason,
                   drop.detail) from None
    except Image.DecompressionBombError as exc:
        raise Drop("decompression_bomb", f"{path}: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise Drop("corrupt_annotation", f"{path} cannot be decoded: {exc}") from None
    if arr.ndim == 3:
        arr = arr[..., -1] if arr.shape[2] == 4 else arr[..., 0]
    return arr
