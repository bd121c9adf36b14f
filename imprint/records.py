"""The object-record schema: the hand-off from ingest to pairing.

One row per (frame, object instance). Written by :mod:`imprint.ingest` as
``DATA/records/<source>/part-NNNNN.parquet``; documented in ``docs/schema.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

RECORDS_SCHEMA_VERSION = "records/4"

RECORDS_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("group_id", pa.string(), nullable=False),
        pa.field("instance_id", pa.string(), nullable=False),
        pa.field("frame_index", pa.int32(), nullable=False),
        pa.field("frame_name", pa.string(), nullable=False),
        pa.field("frame_number", pa.int64(), nullable=False),
        pa.field("image_uri", pa.string(), nullable=False),
        pa.field("annotation_uri", pa.string(), nullable=True),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("mask", pa.binary(), nullable=False),
        pa.field("bbox", pa.list_(pa.field("element", pa.int32()), 4), nullable=False),
        pa.field("area_frac", pa.float32(), nullable=False),
        pa.field("category", pa.string(), nullable=True),
        pa.field("licence", pa.string(), nullable=False),
        pa.field("attribution", pa.string(), nullable=True),
        # quality scores (imprint.quality.scores), computed once here and read by the filters of `imprint pairs`
        pa.field("sharpness", pa.float32(), nullable=False),
        pa.field("mask_components", pa.int32(), nullable=False),
        pa.field("mask_largest_share", pa.float32(), nullable=False),
        pa.field("mask_solidity", pa.float32(), nullable=False),
        pa.field("mask_fill", pa.float32(), nullable=False),
        pa.field("appearance_hash", pa.binary(32), nullable=False),
    ],
    metadata={
        b"imprint.schema": RECORDS_SCHEMA_VERSION.encode(),
        b"mask": b"1-bit PNG of the full frame, 1 = object",
        b"bbox": b"[x0, y0, x1, y1) in pixels",
        b"frame_number": b"the frame's number in its source's own unit (a video frame at the source's frame rate, "
                         b"a view of a capture, a photo of a group); frame_index is its position",
        b"licence": b"the item's licence (the source's, or the item's own where it has one)",
        b"attribution": b"who to credit for the item, and where it comes from",
        b"sharpness": b"1 - blur effect of the object's edges, box at <= 128 px (0 blurry .. 1 sharp)",
        b"appearance_hash": b"256-bit difference hash of the object's box (near-duplicate detection)",
    },
)


@dataclass(slots=True)
class ObjectRecord:
    """One object instance in one frame (a row of ``RECORDS_SCHEMA``)."""

    source: str
    group_id: str
    instance_id: str
    frame_index: int
    frame_name: str
    frame_number: int
    image_uri: str
    annotation_uri: str | None
    width: int
    height: int
    mask: bytes
    bbox: tuple[int, int, int, int]
    area_frac: float
    category: str | None = None
    licence: str = ""
    attribution: str | None = None
    sharpness: float = 0.0
    mask_components: int = 0
    mask_largest_share: float = 0.0
    mask_solidity: float = 0.0
    mask_fill: float = 0.0
    appearance_hash: bytes = bytes(32)


def records_to_table(records: list[ObjectRecord]) -> pa.Table:
    """Columnar table in schema order (an empty list gives an empty table with the schema)."""
    columns = {name: [getattr(r, name) for r in records] for name in RECORDS_SCHEMA.names}
    columns["bbox"] = [list(b) for b in columns["bbox"]]
    return pa.Table.from_pydict(columns, schema=RECORDS_SCHEMA)


_DIGITS = re.compile(r"\d+")


def frame_number_of(name: str) -> int | None:
    """The number a frame's name carries (its last digit run: ``"00005"`` -> 5, ``"3_1"`` -> 1), or None."""
    runs = _DIGITS.findall(name)
    return int(runs[-1]) if runs else None


def frame_sort_key(name: str) -> tuple[int, int, str]:
    """Sort frames by the number in their name (last digit run), never by directory order.

    ``"00005" < "00010"``, ``"img_9" < "img_10"``; names without digits sort after, by name.
    """
    runs = _DIGITS.findall(name)
    if not runs:
        return (1, 0, name)
    return (0, int(runs[-1]), name)
