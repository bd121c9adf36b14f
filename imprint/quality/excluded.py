"""The ``excluded/`` table: one row per item a quality filter removed, with its keys, reason and score.

Beside a stage's shards (``DATA/shards/stageN/excluded/``, a path or a URI), in the shards' part naming and
written the same way (whole or not at all; before the part's marker), so a rerun rewrites a part's rows and
never duplicates them:

- ``excluded/part-NNNNN.parquet``: the pairs removed while shard ``part-NNNNN`` was built (one file per
  shard, possibly empty);
- ``excluded/records-<source>-part-NNNNN.parquet``: the records removed when the pairs were planned from
  records part ``<source>/part-NNNNN`` (only where some were).

A pairs file is read only once its shard's marker exists (:func:`imprint.parts.finished_parts`): one left by
a killed writer is not. Open it with pyarrow (``imprint.quality.excluded.read_excluded``) or look at it with ``imprint preview DATA/shards
--excluded``. Columns: ``docs/schema.md``.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from imprint.io import read_parquet, write_parquet_atomic
from imprint.parts import finished_parts
from imprint.storage import Location, Where

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


def excluded_dir(out_dir: Where) -> Location:
    return Location.of(out_dir) / EXCLUDED_DIR


def pairs_part_path(out_dir: Where, part: str) -> Location:
    """Where the pairs removed while building shard ``part`` go."""
    return excluded_dir(out_dir) / f"{part}.parquet"


def records_part_path(out_dir: Where, source: str, records_part: Where) -> Location:
    """Where the records removed from ``records_part`` (a records Parquet file) of ``source`` go."""
    return excluded_dir(out_dir) / f"records-{source}-{Location.of(records_part).stem}.parquet"


def records_key(part: Where) -> str:
    """How a row names the records part it comes from: ``<source>/part-NNNNN.parquet``, relative to the records
    folder, so ``excluded/`` holds the same bytes wherever DATA lives (a path or a URI). The stage's
    ``report.json`` says which records folder (``records``); :func:`records_location` joins them."""
    loc = Location.of(part)
    return f"{loc.parent.name}/{loc.name}"


def records_location(records_dir: Where | None, key: str) -> Location:
    """The records part a row's ``records`` names, under ``records_dir`` (the stage report's ``records``)."""
    return Location.of(key) if records_dir is None else Location.of(records_dir) / key


def write_excluded(rows: list[dict[str, Any]], path: Where) -> int:
    """Write ``rows`` (dicts with the schema's columns; missing optional ones are null) atomically; their count."""
    Location.of(path).parent.mkdir()
    table = pa.Table.from_pylist(rows, schema=EXCLUDED_SCHEMA)
    write_parquet_atomic(table, path, compression={n: ("none" if n in ("object", "target") else "zstd")
                                                   for n in EXCLUDED_SCHEMA.names})
    return int(table.num_rows)


def excluded_files(out_dir: Where) -> list[Location]:
    """The excluded files of a stage folder: every ``records-*`` file (the plan's, written before any shard),
    then the pairs file of each finished shard (one with a marker), by name."""
    files = excluded_dir(out_dir).glob("*.parquet")
    finished = {p.name for p in finished_parts(out_dir)}
    return [p for p in files if p.name.startswith("records-")] + [p for p in files if p.name in finished]


def read_excluded(out_dir: Where, columns: list[str] | None = None) -> pa.Table:
    """Every excluded row of one stage folder (``DATA/shards/stageN``), records first, then pairs by part."""
    tables = [read_parquet(p, columns) for p in excluded_files(out_dir)]
    if not tables:
        schema = EXCLUDED_SCHEMA if columns is None else pa.schema([EXCLUDED_SCHEMA.field(c) for c in columns])
        return schema.empty_table()
    return pa.concat_tables(tables)
