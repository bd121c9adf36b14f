"""The ``excluded/`` table: one row per item a quality filter removed, with its keys, reason and score.

Beside a stage's shards (``DATA/shards/stageN/excluded/``), in the shards' part naming and written the same
way (temporary name, then rename; before the part's marker), so a rerun rewrites a part's rows and never
duplicates them:

- ``excluded/part-NNNNN.parquet``: the pairs removed while shard ``part-NNNNN`` was built (one file per
  shard, possibly empty);
- ``excluded/records-<source>-part-NNNNN.parquet``: the records removed when the pairs were planned from
  records part ``<source>/part-NNNNN`` (only where some were).

Open it with pyarrow (``imprint.quality.excluded.read_excluded``) or look at it with ``imprint preview DATA/shards
--excluded``. Columns: ``docs/schema.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from imprint.io import write_parquet_atomic

EXCLUDED_DIR = "excluded"
EXCLUDED_SCHEMA_VERSION = "excluded/1"

_IMAGE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
_BOX = pa.list_(pa.field("element", pa.int32()), 4)

EXCLUDED_SCHEMA = pa.schema([
    pa.field("kind", pa.string(), nullable=False),  # record | pair
    pa.field("stage", pa.int8(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("group_id", pa.string(), nullable=False),
    pa.field("instance_id", pa.string(), nullable=False),
    pa.field("pair_id", pa.string(), nullable=True),  # pairs only
    pa.field("src_frame", pa.int32(), nullable=False),  # a record's frame_index, a pair's object frame
    pa.field("tgt_frame", pa.int32(), nullable=True),  # pairs only: the target's frame_index
    pa.field("reason", pa.string(), nullable=False),  # blurry, fragmented_mask, near_duplicate, ...
    pa.field("score", pa.string(), nullable=False),  # the score that decided: sharpness, identity, ...
    pa.field("value", pa.float64(), nullable=False),  # its value
    pa.field("threshold", pa.float64(), nullable=False),  # the threshold it failed
    pa.field("detail", pa.string(), nullable=True),
    pa.field("records", pa.string(), nullable=False),  # the records part the rows below come from
    pa.field("src_row", pa.int32(), nullable=False),
    pa.field("tgt_row", pa.int32(), nullable=True),
    pa.field("image_uri", pa.string(), nullable=False),
    pa.field("tgt_image_uri", pa.string(), nullable=True),
    pa.field("bbox", _BOX, nullable=False),
    pa.field("tgt_bbox", _BOX, nullable=True),
    pa.field("object", _IMAGE, nullable=True),  # pairs: the un-augmented object crop (JPEG)
    pa.field("target", _IMAGE, nullable=True),  # pairs: the target frame's object crop (JPEG)
], metadata={b"imprint.schema": EXCLUDED_SCHEMA_VERSION.encode()})


def excluded_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / EXCLUDED_DIR


def pairs_part_path(out_dir: str | Path, part: str) -> Path:
    """Where the pairs removed while building shard ``part`` go."""
    return excluded_dir(out_dir) / f"{part}.parquet"


def records_part_path(out_dir: str | Path, source: str, records_part: str | Path) -> Path:
    """Where the records removed from ``records_part`` (a records Parquet file) of ``source`` go."""
    return excluded_dir(out_dir) / f"records-{source}-{Path(records_part).stem}.parquet"


def write_excluded(rows: list[dict[str, Any]], path: str | Path) -> int:
    """Write ``rows`` (dicts with the schema's columns; missing optional ones are null) atomically; their count."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=EXCLUDED_SCHEMA)
    write_parquet_atomic(table, path, compression={n: ("none" if n in ("object", "target") else "zstd")
                                                   for n in EXCLUDED_SCHEMA.names})
    return int(table.num_rows)


def excluded_files(out_dir: str | Path) -> list[Path]:
    return sorted(excluded_dir(out_dir).glob("*.parquet"))


def read_excluded(out_dir: str | Path, columns: list[str] | None = None) -> pa.Table:
    """Every excluded row of one stage folder (``DATA/shards/stageN``), records first, then pairs by part."""
    files = excluded_files(out_dir)
    files = [p for p in files if p.name.startswith("records-")] + [p for p in files if p.name.startswith("part-")]
    tables = [pq.read_table(p, columns=columns) for p in files]
    if not tables:
        schema = EXCLUDED_SCHEMA if columns is None else pa.schema([EXCLUDED_SCHEMA.field(c) for c in columns])
        return schema.empty_table()
    return pa.concat_tables(tables)
