"""Decoding a shard row's images for the loader: JPEG/PNG to RGB (straight into a batch's slot when given one),
the mask PNG to bool, and the latent-resolution max-pool of a mask.

The loader's benchmark floor decodes the same bytes with these same functions (``imprint bench loader``).
"""

from __future__ import annotations

from io import BytesIO

import cv2
import numpy as np

from imprint.geometry import binarize, resize_labels, resize_stored
from imprint.masks import bits_of

__all__ = ["decode_mask", "decode_rgb", "latent_mask", "latent_mask_into"]

_WORDS: dict[int, type[np.unsignedinteger]] = {2: np.uint16, 4: np.uint32, 8: np.uint64}  # latent factor -> word


def decode_rgb(data: bytes, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """A JPEG/PNG as an ``size x size x 3`` uint8 RGB array (resized if stored at another size).

    OpenCV decodes (2-3x faster than PIL on 512px JPEGs, same libjpeg-turbo pixels); PIL
    takes whatever OpenCV cannot read. With ``out`` (a contiguous ``size x size x 3`` uint8 array, e.g. a
    slot of a batch) the pixels are written there and ``out`` is returned: the colour conversion (or the
    resize) writes straight into it, so no copy is added.
    """
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if arr is None:
        from PIL import Image

        with Image.open(BytesIO(data)) as img:
            rgb = np.asarray(img.convert("RGB"))
        return np.ascontiguousarray(resize_stored(rgb, size, out))
    if out is not None and arr.shape[:2] == (size, size):
        converted: np.ndarray = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB, dst=out)
        if converted.ctypes.data != out.ctypes.data:  # OpenCV allocated its own (``out`` did not fit): copy
            np.copyto(out, converted)
        return out
    return np.ascontiguousarray(resize_stored(cv2.cvtColor(arr, cv2.COLOR_BGR2RGB), size, out))


def decode_mask(data: bytes, size: int) -> np.ndarray:
    """A 1-bit or 8-bit grayscale PNG mask as an ``size x size`` bool array (:func:`imprint.geometry.binarize`;
    nearest resize if stored at another size)."""
    from PIL import Image

    with Image.open(BytesIO(data)) as img:
        mask = bits_of(img) if img.mode == "1" else binarize(np.asarray(img.convert("L")))
    return resize_labels(mask, size)


def latent_mask(mask: np.ndarray, factor: int) -> np.ndarray:
    """Max-pool of an ``HxW`` bool mask over ``factor x factor`` cells (a cell is on if any pixel is)."""
    h, w = mask.shape
    rows = mask.reshape(h // factor, factor, w).any(axis=1)  # two 1-axis reductions: ~6x faster than one
    cells = rows.reshape(h // factor, w // factor, factor).any(axis=2)
    return np.asarray(cells)


def latent_mask_into(mask: np.ndarray, box: tuple[int, int, int, int] | None, factor: int, out: np.ndarray) -> None:
    """:func:`latent_mask` of a mask that is empty outside ``box``, written into ``out`` (bool, all False on
    entry): only the cells the box touches are pooled (factors 2, 4 and 8 a word per cell row: ~2x faster)."""
    if box is None:
        return
    x0, y0, x1, y1 = box
    cy0, cx0, cy1, cx1 = y0 // factor, x0 // factor, -(-y1 // factor), -(-x1 // factor)
    window = mask[cy0 * factor:cy1 * factor, cx0 * factor:cx1 * factor]
    word = _WORDS.get(factor)
    if word is None or window.strides[1] != 1:
        out[cy0:cy1, cx0:cx1] = latent_mask(window, factor)
        return
    # a cell's row of ``factor`` bools is one integer word: OR the ``factor`` words of each cell, then != 0
    words = window.view(word).reshape(cy1 - cy0, factor, cx1 - cx0)
    np.not_equal(np.bitwise_or.reduce(words, axis=1), 0, out=out[cy0:cy1, cx0:cx1])
