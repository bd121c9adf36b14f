"""``imprint verify DATA/shards[/stageN]``: check pair shards against their manifest, byte for byte.

Per shard folder: ``manifest.json`` present and usable; every listed part exists with the
manifest's byte size, sha256 and row count (and per-source counts); no unlisted
``part-*.parquet``; each part's Arrow schema equals ``SHARD_SCHEMA`` (names, types,
nullability, the ``imprint.schema`` and ``huggingface`` metadata); every ``object`` /
``target`` / ``mask`` image is non-null and decodes with PIL, ``object`` and ``target`` are
RGB, masks are single-channel (1-bit or 8-bit) at the target's size, ``bbox`` is the mask's own
tight box (non-empty, inside the target: the loader cuts the mask levels to it); ``stage`` matches
the manifest and ``pair_id`` is unique. A folder holding ``stage1/`` and ``stage2/`` checks both.
Parts are checked in parallel threads (hashing and PIL decoding release the GIL).

The folder may be a path or a URI (``s3://``, ``gs://``): a part in a store is fetched once, hashed and
read from memory. Only the manifest's parts and finished parts (with a marker in ``_parts/``) count: a
``part-*.parquet`` without a marker (being written, or left by a killed writer) is ignored and mentioned.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

import pyarrow as pa

from imprint.io import MANIFEST, ManifestError, read_manifest, sha256_bytes, sha256_file
from imprint.masks import mask_bbox, mask_of
from imprint.parts import PART_GLOB, finished_parts
from imprint.shards.schema import IMAGE_COLUMNS, SHARD_SCHEMA
from imprint.storage import Location, Where, location, storage_error

__all__ = ["main", "schema_problems", "shard_dirs", "verify_shards"]

_ROW_COLUMNS = ["pair_id", "stage", "source", "object", "target", "mask", "bbox"]
_METADATA_KEYS = (b"imprint.schema", b"huggingface")


@dataclass
class _Tally:
    """What a check saw (for the OK line)."""

    shards: int = 0
    unfinished: int = 0  # part files without a marker, ignored
    rows: int = 0
    images: int = 0
    sources: Counter = field(default_factory=Counter)
    pair_ids: list[str] = field(default_factory=list)

    def add(self, other: _Tally) -> None:
        self.shards += other.shards
        self.unfinished += other.unfinished
        self.rows += other.rows
        self.images += other.images
        self.sources.update(other.sources)
        self.pair_ids += other.pair_ids


def shard_dirs(path: Where) -> list[Location]:
    """The shard folders under ``path``: itself if it has a manifest (or no ``stage*`` folder), else its stages."""
    path = Location.of(path)
    if (path / MANIFEST).is_file():
        return [path]
    stages = [d for d in path.dirs() if d.name.startswith("stage")]
    return stages or [path]


def schema_problems(schema: pa.Schema) -> list[str]:
    """How ``schema`` differs from ``SHARD_SCHEMA`` (fields, types, nullability, imprint metadata)."""
    problems = []
    want = {f.name: f for f in SHARD_SCHEMA}
    have = {f.name: f for f in schema}
    missing = [n for n in want if n not in have]
    extra = [n for n in have if n not in want]
    if missing:
        problems.append(f"schema lacks column(s) {', '.join(missing)}")
    if extra:
        problems.append(f"schema has unexpected column(s) {', '.join(extra)}")
    if not missing and not extra and schema.names != SHARD_SCHEMA.names:
        problems.append(f"schema columns are in the order {schema.names}, expected {SHARD_SCHEMA.names}")
    for name, f in want.items():
        if name not in have:
            continue
        if not have[name].type.equals(f.type):
            problems.append(f"column {name!r} is {have[name].type}, expected {f.type}")
        elif have[name].nullable != f.nullable:
            problems.append(f"column {name!r} is {'' if have[name].nullable else 'not '}nullable, "
                            f"expected {'' if f.nullable else 'not '}nullable")
    meta = schema.metadata or {}
    for key in _METADATA_KEYS:
        expected = SHARD_SCHEMA.metadata[key]
        value = meta.get(key)
        if value is None:
            problems.append(f"schema metadata lacks {key.decode()!r}")
        elif key == b"huggingface":
            try:
                same = json.loads(value) == json.loads(expected)
            except ValueError:
                same = False
            if not same:
                problems.append("schema metadata 'huggingface' differs from SHARD_SCHEMA's (datasets features)")
        elif value != expected:
            problems.append(f"schema metadata {key.decode()!r} is {value.decode(errors='replace')!r}, "
                            f"expected {expected.decode()!r}")
    return problems


def _image_problems(row: dict) -> tuple[list[str], int]:
    """Problems of one row's images and box, and how many images decoded."""
    from PIL import Image

    problems, sizes, decoded = [], {}, 0
    tight: tuple[int, int, int, int] | None = None  # the mask's own box
    for col in IMAGE_COLUMNS:
        data = (row[col] or {}).get("bytes")
        if data is None:
            problems.append(f"{col} is null")
            continue
        try:
            with Image.open(BytesIO(data)) as img:
                img.load()
                mode, size = img.mode, img.size
                if col == "mask" and mode in ("1", "L"):
                    tight = mask_bbox(mask_of(img))
        except Exception as exc:  # noqa: BLE001 - any decoder error is the finding
            problems.append(f"{col} does not decode ({type(exc).__name__}: {exc})")
            continue
        decoded += 1
        sizes[col] = size
        if col == "mask" and mode not in ("1", "L"):
            problems.append(f"mask is {mode}, expected single-channel (1-bit or 8-bit grayscale)")
        elif col != "mask" and mode != "RGB":
            problems.append(f"{col} is {mode}, expected RGB")
    if "target" in sizes:
        w, h = sizes["target"]
        if "mask" in sizes and sizes["mask"] != sizes["target"]:
            problems.append(f"mask is {sizes['mask'][0]}x{sizes['mask'][1]}, the target {w}x{h}")
        box = row["bbox"]
        if box is None or len(box) != 4 or not (0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h):
            problems.append(f"bbox {box} is not a box inside the {w}x{h} target")
        elif "mask" in sizes and sizes["mask"] == sizes["target"] and tuple(box) != tight:
            problems.append(f"bbox {list(box)} is not the mask's box {list(tight) if tight else None} "
                            "(the loader cuts the mask levels to bbox: rebuild the pairs)")
    return problems, decoded


def _part_bytes(path: Location) -> tuple[Any, int, str]:
    """What to open the part from, its size and its sha256: a local file in place; an object fetched once
    (one download, hashed and read from memory)."""
    if path.is_local:
        return path.local_path(), path.size(), sha256_file(path)
    data = path.read_bytes()
    return pa.BufferReader(data), len(data), sha256_bytes(data)


def _check_part(shard_dir: Location, entry: dict, stage: int | None) -> tuple[list[str], _Tally]:
    """All checks of one listed part; problems are prefixed with the part's path."""
    import pyarrow.parquet as pq

    path = shard_dir / entry["file"]
    tally = _Tally()
    problems: list[str] = []

    def problem(text: str) -> None:
        problems.append(f"{path}: {text}")

    try:
        source, size, digest = _part_bytes(path)
    except FileNotFoundError:
        problem("listed in manifest.json but missing")
        return problems, tally
    except OSError as exc:
        problem(str(storage_error(path, "read", exc)))
        return problems, tally
    tally.shards = 1
    if "bytes" in entry and size != entry["bytes"]:
        problem(f"is {size} bytes, the manifest says {entry['bytes']}")
    if "sha256" in entry and digest != entry["sha256"]:
        problem(f"sha256 differs from the manifest's ({entry['sha256'][:12]}...)")
    try:
        pf = pq.ParquetFile(source)
    except Exception as exc:  # noqa: BLE001
        problem(f"is not a readable Parquet file ({exc})")
        return problems, tally
    with pf:
        rows = pf.metadata.num_rows
        if rows != entry["rows"]:
            problem(f"has {rows} rows, the manifest says {entry['rows']}")
        schema = pf.schema_arrow
        for text in schema_problems(schema):
            problem(text)
        if any(n not in schema.names for n in _ROW_COLUMNS) or any(
                not schema.field(n).type.equals(SHARD_SCHEMA.field(n).type) for n in IMAGE_COLUMNS):
            problem("rows not checked (their columns do not match the schema)")
            return problems, tally
        index = 0
        try:
            for batch in pf.iter_batches(batch_size=64, columns=_ROW_COLUMNS):
                for row in batch.to_pylist():
                    tally.rows += 1
                    tally.sources[row["source"]] += 1
                    tally.pair_ids.append(row["pair_id"])
                    found, decoded = _image_problems(row)
                    tally.images += decoded
                    if stage is not None and row["stage"] != stage:
                        found.append(f"stage is {row['stage']}, the manifest's is {stage}")
                    for text in found:
                        problem(f"row {index} ({row['pair_id']}): {text}")
                    index += 1
        except Exception as exc:  # noqa: BLE001 - a damaged file is the finding
            problem(f"rows unreadable after row {index} ({type(exc).__name__}: {exc})")
            return problems, tally
    listed = entry.get("sources")
    if isinstance(listed, dict) and dict(tally.sources) != {k: v for k, v in listed.items() if v}:
        problem(f"source counts {dict(sorted(tally.sources.items()))} differ from the manifest's {listed}")
    return problems, tally


def _verify_dir(shard_dir: Location, workers: int) -> tuple[list[str], _Tally]:
    """All checks of one shard folder."""
    tally = _Tally()
    try:
        manifest = read_manifest(shard_dir)
    except ManifestError as exc:
        return [str(exc)], tally
    problems: list[str] = []
    entries = manifest["shards"]
    names = [e["file"] for e in entries]
    for name, count in Counter(names).items():
        if count > 1:
            problems.append(f"{shard_dir / MANIFEST}: lists {name} {count} times")
    finished = finished_parts(shard_dir)
    for path in finished:
        if path.name not in names:
            problems.append(f"{path}: not listed in manifest.json")
    done = {p.name for p in finished}
    tally.unfinished = sum(p.name not in names and p.name not in done for p in shard_dir.glob(PART_GLOB))
    listed_rows = sum(e["rows"] for e in entries)
    if manifest.get("rows") != listed_rows:
        problems.append(f"{shard_dir / MANIFEST}: rows is {manifest.get('rows')}, its shards sum to {listed_rows}")
    stage = manifest.get("stage")
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = list(pool.map(lambda e: _check_part(shard_dir, e, stage), entries))
    for found, part in results:
        problems += found
        tally.add(part)
    sources = manifest.get("sources")
    if isinstance(sources, dict) and not problems and dict(tally.sources) != {k: v for k, v in sources.items() if v}:
        problems.append(f"{shard_dir / MANIFEST}: sources {sources} differ from the rows' "
                        f"{dict(sorted(tally.sources.items()))}")
    dupes = [pid for pid, c in Counter(tally.pair_ids).items() if c > 1]
    if dupes:
        problems.append(f"{shard_dir}: {len(dupes)} pair_id(s) appear more than once, e.g. {dupes[0]}")
    return problems, tally


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def verify_shards(shard_dir: Where, workers: int | None = None) -> tuple[list[str], list[str]]:
    """``(problems, summaries)`` of the shards in ``shard_dir`` (a stage folder, or one holding ``stage*/``): every
    problem found (none = fine) and one line per shard folder (shards, rows by source, images checked)."""
    problems: list[str] = []
    summaries = []
    for d in shard_dirs(shard_dir):
        found, tally = _verify_dir(d, workers or _default_workers())
        problems += found
        sources = ", ".join(f"{s} {n}" for s, n in sorted(tally.sources.items()))
        ignored = f", {tally.unfinished} unfinished part(s) without a marker ignored" if tally.unfinished else ""
        summaries.append(f"{d}: {tally.shards} shards, {tally.rows} rows ({sources}), {tally.images} images{ignored}")
    return problems, summaries


DESCRIPTION = ("Check pair shards against their manifest: hashes, sizes, row counts, schema, and that every image "
               "decodes. PATH is DATA/shards/stageN, or DATA/shards to check every stage.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=location,
                        help="a shard folder (with manifest.json) or a folder of stage*/: a path or s3:// / gs:// URI")
    parser.add_argument("--workers", type=int, default=None, help="parts checked in parallel (default: <= 8 CPUs)")


def run(args: argparse.Namespace) -> int:
    """``imprint verify PATH``: print each problem (exit 1) or a one-line OK summary (exit 0)."""
    problems, summaries = verify_shards(args.path, args.workers)
    for text in problems:
        print(text)
    if problems:
        print(f"imprint verify: {len(problems)} problem(s) in {args.path}", file=sys.stderr)
        return 1
    print(f"imprint verify: OK: {'; '.join(summaries)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from imprint.cli import run_command

    return run_command("verify", argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
