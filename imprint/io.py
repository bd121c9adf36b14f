"""The one I/O core: hashing, atomic writes, manifests and shard rows, on a path or in an object store.

Every stage writes through these, so a kill never leaves a half-written file under its final name. A data
location is a path or a URI (:class:`imprint.storage.Location`: ``s3://``, ``gs://``); every function here
takes either (``Where``) and resolves it once:

- **on a filesystem** a file is written to ``<name>.tmp`` beside its target, then renamed over it
  (``os.replace``, atomic on one filesystem); a folder is built under a temporary name and moved into place
  by :func:`replace_dir`;
- **in an object store**, which has no rename, the whole file is made in memory first and sent as one
  object: a single PUT, or a multipart upload that completes when the stream closes, so the object appears
  whole or not at all. Folders (:func:`atomic_dir`, :func:`replace_dir`) are filesystem-only.

Reading Parquet from a store (:func:`open_parquet`) reads the footer and then only the column chunks asked
for, by ranged GETs: nothing downloads a whole shard to read a row group. Nothing here imports torch:
``imprint verify``, ``preview`` and anything that only reads a manifest stay light.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from imprint.errors import ImprintError
from imprint.storage import Location, StorageError, Where, location, storage_error

__all__ = [
    "MANIFEST", "TMP_SUFFIX", "Location", "ManifestError", "StorageError", "Where", "Written", "atomic_dir",
    "is_temporary_dir", "iter_shard_rows", "location", "open_parquet", "parquet_schema", "read_json",
    "read_manifest", "read_parquet", "read_shard_rows", "remove_stale_dirs", "replace_dir", "row_group_offsets",
    "sha256_bytes", "sha256_file", "shard_files", "storage_error", "tmp_path", "write_bytes_atomic",
    "write_json_atomic", "write_parquet_atomic", "write_text_atomic",
]

MANIFEST = "manifest.json"
TMP_SUFFIX = ".tmp"
_CHUNK = 1 << 20


class ManifestError(ImprintError):
    """A shard folder whose manifest is missing or unusable; the message says what to do."""


# --- hashing ---------------------------------------------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Where, chunk: int = _CHUNK) -> str:
    """The hex sha256 of a file, read in chunks (from a store: streamed, in order)."""
    h = hashlib.sha256()
    loc = Location.of(path)
    if loc.is_local:
        with open(loc.local_path(), "rb") as f:
            while block := f.read(chunk):
                h.update(block)
        return h.hexdigest()
    with loc.fs.open_input_stream(loc.fs_path) as stream:
        while block := stream.read(chunk):
            h.update(block)
    return h.hexdigest()


# --- atomic writes ---------------------------------------------------------------------------------------


def tmp_path(path: str | os.PathLike[str]) -> Path:
    """The temporary name a file is written under before it is renamed to ``path`` (filesystem only)."""
    path = Path(path)
    return path.with_name(path.name + TMP_SUFFIX)


def _replace_from_tmp(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)``, then rename it over ``path``; on failure the temporary is removed and ``path`` kept."""
    tmp = tmp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Where, data: bytes | pa.Buffer) -> None:
    """``data`` as the file ``path``, whole or not at all (a rename on a filesystem, one upload to a store)."""
    loc = Location.of(path)
    if loc.is_local:
        _replace_from_tmp(loc.local_path(), lambda tmp: tmp.write_bytes(data))
        return
    # The content is complete before the upload starts: a single PUT, or a multipart upload that the
    # store completes only at close. A failure before that leaves no object under the name.
    with loc.fs.open_output_stream(loc.fs_path) as out:
        out.write(data)


def write_text_atomic(path: Where, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Where, data: Any, indent: int | None = 1) -> None:
    """JSON (non-JSON values such as paths written as strings), atomically."""
    write_text_atomic(path, json.dumps(data, indent=indent, default=str))


@dataclass(frozen=True, slots=True)
class Written:
    """What :func:`write_parquet_atomic` wrote: the file's size and sha256."""

    size: int
    sha256: str


def write_parquet_atomic(table: pa.Table, path: Where, **kwargs: Any) -> Written:
    """``pq.write_table(table, path, **kwargs)`` atomically; returns the size and sha256 of the bytes.

    The file is made in memory and written once (the same bytes as writing it to the file directly), so
    its hash costs no second read, and a store gets it as one upload.
    """
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **kwargs)
    data = sink.getvalue()
    write_bytes_atomic(path, data)
    return Written(data.size, hashlib.sha256(memoryview(data)).hexdigest())


def replace_dir(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Put the finished folder ``src`` at ``dst`` (a rename), replacing any folder there.

    A folder cannot be renamed over a non-empty one, so an old ``dst`` is first renamed aside
    (``<dst>.old``) and removed after: at every moment ``dst`` is either the old folder, absent for the
    instant between the two renames, or the new one; never a half-written mix.
    """
    src, dst = _local(src, "a folder replaced whole"), _local(dst, "a folder replaced whole")
    old = dst.with_name(dst.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A folder that appears whole or not at all: fill the temporary folder this yields.

    It lies beside ``path`` (``<name>.tmp-<pid>-<thread>``, so concurrent writers never share one) and
    is moved over ``path`` (:func:`replace_dir`) when the block ends; on an error it is
    removed and ``path`` is left as it was. :func:`remove_stale_dirs` clears those a kill left.
    """
    path = _local(path, "a folder written whole")
    tmp = path.with_name(f"{path.name}{TMP_SUFFIX}-{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, path)


def is_temporary_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder :func:`atomic_dir` is writing (or :func:`replace_dir` is replacing):
    readers of a folder of such folders skip them."""
    name = Path(path).name
    return f"{TMP_SUFFIX}-" in name or name.endswith(".old")


def remove_stale_dirs(parent: str | os.PathLike[str]) -> None:
    """Remove the temporary folders :func:`atomic_dir` (and :func:`replace_dir`'s ``.old``) left in ``parent``
    when a writer was killed.

    Call it before a job starts writing there, never while writers run.
    """
    for stale in _local(parent, "a folder of folders written whole").glob("*"):
        if stale.is_dir() and is_temporary_dir(stale):
            shutil.rmtree(stale, ignore_errors=True)


def _local(path: Where, what: str) -> Path:
    return Location.of(path).local_path(what)


def read_json(path: Where) -> Any:
    """A JSON file (``FileNotFoundError`` when there is none; ``ValueError`` when it is not JSON)."""
    return json.loads(Location.of(path).read_bytes().decode("utf-8"))


# --- shard folders ---------------------------------------------------------------------------------------


def read_manifest(shard_dir: Where) -> dict[str, Any]:
    """The parsed ``manifest.json`` of a shard folder (``DATA/shards/stageN``, a path or a URI), checked for use.

    Raises :class:`ManifestError` when it is missing, is not JSON, has another schema version or
    lacks the shard list (``file`` and ``rows`` of each shard).
    """
    from imprint.shards.schema import SHARDS_SCHEMA_VERSION

    shard_dir = Location.of(shard_dir)
    path = shard_dir / MANIFEST
    try:
        manifest = read_json(path)
    except FileNotFoundError:
        hint = ""
        stages = [d.name for d in shard_dir.dirs() if d.name.startswith("stage") and (d / MANIFEST).is_file()]
        if stages:
            hint = f" (it holds {', '.join(stages)}: pass one of them)"
        raise ManifestError(f"{shard_dir} has no {MANIFEST}; build it with `imprint pairs`{hint}") from None
    except IsADirectoryError:
        raise ManifestError(f"{path} is a folder; rebuild the shards with `imprint pairs`") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} is not readable JSON ({exc}); rebuild it with `imprint pairs`") from exc
    except OSError as exc:
        raise ManifestError(str(storage_error(path, "read", exc))) from None
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path} must hold a JSON object; rebuild it with `imprint pairs`")
    version = manifest.get("schema")
    if version != SHARDS_SCHEMA_VERSION:
        raise ManifestError(f"{path} has schema {version!r}, this imprint reads {SHARDS_SCHEMA_VERSION!r}; "
                            "rebuild the shards with this version's `imprint pairs`")
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not all(
            isinstance(s, dict) and isinstance(s.get("file"), str) and isinstance(s.get("rows"), int)
            and not isinstance(s.get("rows"), bool) and s["rows"] >= 0 for s in shards):
        raise ManifestError(f"{path}: 'shards' must be a list of {{file, rows, ...}} entries")
    return manifest


def shard_files(shard_dir: Where) -> list[tuple[Location, int]]:
    """``(location, rows)`` of every shard the manifest lists, in manifest order."""
    shard_dir = Location.of(shard_dir)
    return [(shard_dir / s["file"], int(s["rows"])) for s in read_manifest(shard_dir)["shards"]]


# --- Parquet, on a path or in a store ----------------------------------------------------------------------


def open_parquet(path: Where) -> pq.ParquetFile:
    """A ``ParquetFile`` (use it as a context manager). From a store, reading a row group's columns fetches
    only their byte ranges (the footer first), never the whole object."""
    loc = Location.of(path)
    if loc.is_local:
        return pq.ParquetFile(loc.local_path())
    return pq.ParquetFile(loc.fs_path, filesystem=loc.fs)


def read_parquet(path: Where, columns: Sequence[str] | None = None) -> pa.Table:
    """One Parquet file as a table (only ``columns`` when given)."""
    loc = Location.of(path)
    cols = list(columns) if columns is not None else None
    if loc.is_local:
        return pq.read_table(loc.local_path(), columns=cols)
    with open_parquet(loc) as pf:
        return pf.read(columns=cols)


def parquet_schema(path: Where) -> pa.Schema:
    """The Arrow schema of a Parquet file (its footer only)."""
    loc = Location.of(path)
    if loc.is_local:
        return pq.read_schema(loc.local_path())
    with open_parquet(loc) as pf:
        return pf.schema_arrow


def row_group_offsets(metadata: pq.FileMetaData) -> np.ndarray:
    """The first row of every row group, plus the file's row count at the end (length ``groups + 1``)."""
    counts = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
    offsets: np.ndarray = np.cumsum([0, *counts], dtype=np.int64)
    return offsets


def iter_shard_rows(shard_dir: Where, columns: Sequence[str] | None = None,
                    limit: int | None = None) -> Iterator[dict[str, Any]]:
    """The rows of a shard folder in manifest order (only ``columns`` when given), at most ``limit`` of them.

    Reads one row group at a time, so the first rows of a large folder cost one row group, not a shard.
    """
    left = limit
    for path, _rows in shard_files(shard_dir):
        with open_parquet(path) as pf:
            for g in range(pf.metadata.num_row_groups):
                if left is not None and left <= 0:
                    return
                rows = pf.read_row_group(g, columns=list(columns) if columns is not None else None).to_pylist()
                if left is not None:
                    rows = rows[:left]
                    left -= len(rows)
                yield from rows


def read_shard_rows(shard_dir: Where, n: int | None = None,
                    columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The first ``n`` rows (all when None) of a shard folder, in manifest order."""
    return list(iter_shard_rows(shard_dir, columns, n))
