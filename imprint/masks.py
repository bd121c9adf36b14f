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

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_mask_png(mask: np.ndarray, level: int = 1) -> bytes:
    """Encode a 2-D boolean (or 0/nonzero) array as a 1-bit grayscale PNG (1 = white = object)."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    h, w = mask.shape
    packed = np.packbits(mask.astype(bool, copy=False), axis=1)
    rows = np.empty((h, packed.shape[1] + 1), dtype=np.uint8)
    rows[:, 0] = 0  # filter type None for every scanline
    rows[:, 1:] = packed
    header = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)  # bit depth 1, grayscale
    return b"".join(
        (
            _PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows.tobytes(), level)),
            _chunk(b"IEND", b""),
        )
    )


def decode_mask_png(data: bytes) -> np.ndarray:
    """Decode a mask PNG (any bit depth) to a boolean array (nonzero = object)."""
    with Image.open(io.BytesIO(data)) as im:
        arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr[..., 0]
    return arr.astype(bool)


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``[x0, y0, x1, y1)`` of the nonzero pixels, or None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
