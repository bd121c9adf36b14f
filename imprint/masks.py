"""Binary masks: lossless 1-bit PNG encoding, decoding and boxes.

The encoder writes the PNG by hand (packbits + zlib): it is ~5x faster than
PIL's or OpenCV's PNG encoders on 1-bit data, and encoding the full-frame mask of
every record is the hot path of ingest. Decoding goes through PIL, so every
mask we write is checked against a standard decoder in the tests.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from imprint.geometry import binarize

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def pack_mask(mask: np.ndarray) -> np.ndarray:
    """Pack a 2-D boolean (or 0/nonzero) mask to 1 bit per pixel, rows padded to whole bytes."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    return np.packbits(mask.astype(bool, copy=False), axis=1)


def encode_packed_png(packed: np.ndarray, width: int, level: int = 1) -> bytes:
    """Encode a packed mask (from :func:`pack_mask`) as a 1-bit grayscale PNG (1 = white = object)."""
    h = packed.shape[0]
    rows = np.empty((h, packed.shape[1] + 1), dtype=np.uint8)
    rows[:, 0] = 0  # filter type None for every scanline
    rows[:, 1:] = packed
    # Z_RLE: masks are runs of equal bytes; as small as the default strategy, and faster.
    deflate = zlib.compressobj(level, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    idat = deflate.compress(rows.tobytes()) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, h, 1, 0, 0, 0, 0)  # bit depth 1, grayscale
    return b"".join((_PNG_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", idat), _chunk(b"IEND", b"")))


def encode_mask_png(mask: np.ndarray, level: int = 1) -> bytes:
    """Encode a 2-D boolean (or 0/nonzero) array as a 1-bit grayscale PNG (1 = white = object)."""
    return encode_packed_png(pack_mask(mask), mask.shape[1], level)


def packed_bbox(packed: np.ndarray) -> tuple[int, int, int, int] | None:
    """:func:`mask_bbox` of a packed mask, read off the packed bytes (8x less to scan)."""
    rows = np.flatnonzero(packed.any(axis=1))
    if rows.size == 0:
        return None
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    band = packed[y0:y1]
    cols = np.flatnonzero(band.any(axis=0))
    c0, c1 = int(cols[0]), int(cols[-1])
    left = int(np.bitwise_or.reduce(band[:, c0]))  # MSB first: leading zeros are empty pixels
    right = int(np.bitwise_or.reduce(band[:, c1]))
    x0 = c0 * 8 + 8 - left.bit_length()
    x1 = c1 * 8 + 8 - ((right & -right).bit_length() - 1)
    return x0, y0, x1, y1


def bits_of(image: Image.Image) -> np.ndarray:
    """A mode-"1" PIL image as canonical bools (PIL hands them out as bools stored as 0/255 bytes; on those
    bytes ``!= 0`` is :func:`imprint.geometry.binarize`'s rule, without its scan for the full scale)."""
    bits: np.ndarray = np.asarray(image).view(np.uint8) != 0
    return bits


def mask_of(image: Image.Image) -> np.ndarray:
    """An opened mask image as a boolean array: mode "1" by :func:`bits_of`, any other mode by
    :func:`imprint.geometry.binarize` of its first channel."""
    if image.mode == "1":
        return bits_of(image)
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[..., 0]
    return binarize(arr)


def decode_mask_png(data: bytes) -> np.ndarray:
    """Decode a mask PNG (any bit depth) to a boolean array (:func:`mask_of`)."""
    with Image.open(io.BytesIO(data)) as im:
        return mask_of(im)


def png_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG's header (its first chunk, IHDR, by the PNG specification); None for
    anything else."""
    if len(data) < 24 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``[x0, y0, x1, y1)`` of the nonzero pixels, or None for an empty mask.

    A C-contiguous bool mask whose width is a multiple of 8 is scanned 8 pixels to a word (a bool is one byte,
    0 or 1): a row is nonempty where any of its words is, a column where the OR of the nonempty rows' words
    has its byte set (~5x faster than the two boolean reductions on a 512 px mask, the same box).
    """
    if mask.ndim == 2 and mask.dtype == np.bool_ and mask.shape[1] % 8 == 0 and mask.flags.c_contiguous:
        words = mask.view(np.uint64)
        rows = np.flatnonzero(words.any(axis=1))
        if rows.size == 0:
            return None
        band = words[rows[0]:rows[-1] + 1]
        cols = np.flatnonzero(np.bitwise_or.reduce(band, axis=0).view(np.uint8))
    else:
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
