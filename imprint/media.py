"""Reading frames and annotation maps defensively: every failure is a :class:`Drop` with a reason."""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image

from imprint.geometry import resize_labels
from imprint.stats import Drop

DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own decompression-bomb threshold
EXIF_ORIENTATION = 0x0112
#: EXIF orientations that turn the image by 90 degrees (its displayed width is its stored height)
SWAPS_AXES = frozenset({5, 6, 7, 8})


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
    """Width and height of an image as displayed, from its header, after checks that cost no decode.

    As displayed: with its EXIF orientation applied (a stored 4000x3000 photo tagged "rotate 90" is
    3000x4000), as OpenCV's ``imread`` and every later stage decode it. Checks: file exists and is not
    empty, the header parses, pixel count under ``max_pixels``, and the file is not truncated (JPEG/PNG end
    markers). With ``full`` the image is decoded too (catches corruption inside the data).
    """
    w, h, _, orientation = _read_image(path, max_pixels, full=full, rgb=False)
    return (h, w) if orientation in SWAPS_AXES else (w, h)


def image_orientation(path: str) -> int:
    """The image's EXIF orientation (1..8; 1 = as stored, also for images without EXIF or unreadable ones)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                return _orientation(im)
    except (OSError, SyntaxError, ValueError):
        return 1


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError):  # a broken EXIF block: the pixels are still the image
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """``array`` (HxW or HxWxC, stored pixels) as displayed under an EXIF ``orientation``: the same turn
    and mirror as PIL's ``ImageOps.exif_transpose`` and OpenCV's ``imread``."""
    turned = {
        2: lambda a: a[:, ::-1],  # mirrored left-right
        3: lambda a: a[::-1, ::-1],  # turned 180
        4: lambda a: a[::-1],  # mirrored top-bottom
        5: lambda a: np.swapaxes(a, 0, 1),  # transposed
        6: lambda a: np.rot90(a, -1),  # turned 90 clockwise
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),  # transverse
        8: lambda a: np.rot90(a, 1),  # turned 90 counter-clockwise
    }.get(orientation)
    return np.ascontiguousarray(turned(array)) if turned is not None else array


def same_aspect(a: tuple[int, int], b: tuple[int, int], tolerance: float = 0.01) -> bool:
    """Whether sizes ``a`` and ``b`` (width, height) have the same aspect ratio, within ``tolerance`` (relative):
    a scaled copy rounded to whole pixels still has, a crop or a turned copy has not."""
    (aw, ah), (bw, bh) = a, b
    if min(aw, ah, bw, bh) <= 0:
        return False
    return abs(aw * bh - ah * bw) <= tolerance * ah * bw


def mask_for_frame(mask: np.ndarray, size: tuple[int, int], frame: str, annotation: str) -> np.ndarray:
    """A mask (HxW) made for the image ``frame``, on that frame as displayed (``size`` = its displayed
    (width, height), :func:`probe_image`).

    - EXIF: a frame with an orientation tag is displayed turned; a mask with the frame's *stored* shape was
      made from the stored pixels (as PIL-based tools read them) and is turned the same way. A mask already
      in the displayed shape (a 90-degree turn tells the two apart) is used as it is.
    - Resolution: a mask with the frame's aspect ratio is scaled to it (nearest neighbour); any other shape is a
      ``size_mismatch`` drop, never a stretch.
    """
    w, h = size
    orientation = image_orientation(frame)
    if orientation != 1:
        stored = (h, w) if orientation in SWAPS_AXES else (w, h)
        if same_aspect((mask.shape[1], mask.shape[0]), stored):
            mask = orient(mask, orientation)
    if not same_aspect((mask.shape[1], mask.shape[0]), (w, h)):
        turned = f" (EXIF orientation {orientation})" if orientation != 1 else ""
        raise Drop("size_mismatch", f"{annotation} is {mask.shape[1]}x{mask.shape[0]}, its frame {frame} is "
                                    f"{w}x{h}{turned}: another aspect ratio, not a scaled copy")
    return resize_labels(mask, size)


def read_image(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a whole image to RGB uint8 (HxWx3) as displayed (EXIF orientation applied, like
    :func:`probe_image`), for steps that need its pixels (segmentation).

    The checks of :func:`probe_image` with ``full``, with the same drop reasons (``missing_file``,
    ``empty_file``, ``decompression_bomb``, ``truncated_image``, ``corrupt_image``).
    """
    _, _, rgb, orientation = _read_image(path, max_pixels, full=True, rgb=True)
    assert rgb is not None
    return orient(rgb, orientation)


def _read_image(path: str, max_pixels: int, full: bool, rgb: bool) -> tuple[int, int, np.ndarray | None, int]:
    """Stored width, height, the RGB pixels (stored orientation) if ``rgb``, and the EXIF orientation."""
    size = _check_size(path)
    pixels = None
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                w, h = im.size
                fmt = im.format
                orientation = _orientation(im)
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
    return w, h, pixels, orientation


def read_label_map(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an annotation PNG to its raw values (palette indices, 16-bit ids or 8-bit mask).

    Palette PNGs keep their indices (never converted to colour); images with an alpha channel (RGBA,
    grey + alpha "LA") give their alpha; RGB masks give their first channel.
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
        arr = arr[..., -1] if arr.shape[2] in (2, 4) else arr[..., 0]
    return arr
