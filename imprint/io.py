"""The one I/O core: hashing, atomic writes, manifests and shard rows.

Every stage writes through these, so a kill never leaves a half-written file under its final name:
a file is written to ``<name>.tmp`` beside its target, then renamed over it (``os.replace``, atomic
on one filesystem); a folder is built under a temporary name and moved into place by :func:`replace_dir`. Nothing here imports torch: ``imprint verify``, ``preview`` and anything that
only reads a manifest stay light.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from imprint.errors import ImprintError

MANIFEST = "manifest.json"
TMP_SUFFIX = ".tmp"
_CHUNK = 1 << 20


class ManifestError(ImprintError):
    """A shard folder whose manifest is missing or unusable; the message says what to do."""


# --- hashing ---------------------------------------------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = _CHUNK) -> str:
    """The hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# --- atomic writes ---------------------------------------------------------------------------------------


def tmp_path(path: str | os.PathLike[str]) -> Path:
    """The temporary name a file is written under before it is renamed to ``path``."""
    path = Path(path)
    return path.with_name(path.name + TMP_SUFFIX)


def _replace_from_tmp(path: str | os.PathLike[str], write: Callable[[Path], object]) -> None:
    """``write(tmp)``, then rename it over ``path``; on failure the temporary is removed and ``path`` kept."""
    tmp = tmp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    _replace_from_tmp(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], data: Any, indent: int | None = 1) -> None:
    """JSON (non-JSON values such as paths written as strings), atomically."""
    write_text_atomic(path, json.dumps(data, indent=indent, default=str))


def write_parquet_atomic(table: pa.Table, path: str | os.PathLike[str], **kwargs: Any) -> None:
    """``pq.write_table(table, path, **kwargs)`` atomically."""
    _replace_from_tmp(path, lambda tmp: pq.write_table(table, tmp, **kwargs))


def replace_dir(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Put the finished folder ``src`` at ``dst`` (a rename), replacing any folder there.

    A folder cannot be renamed over a non-empty one, so an old ``dst`` is first renamed aside
    (``<dst>.old``) and removed after: at every moment ``dst`` is either the old folder, absent for the
    instant between the two renames, or the new one; never a half-written mix.
    """
    src, dst = Path(src), Path(dst)
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
    path = Path(path)
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
    for stale in Path(parent).glob("*"):
        if stale.is_dir() and is_temporary_dir(stale):
            shutil.rmtree(stale, ignore_errors=True)


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# --- shard folders ---------------------------------------------------------------------------------------


def read_manifest(shard_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``manifest.json`` of a shard folder (``DATA/shards/stageN``), checked for use.

    Raises :class:`ManifestError` when it is missing, is not JSON, has another schema version or
    lacks the shard list (``file`` and ``rows`` of each shard).
    """
    from imprint.shards.schema import SHARDS_SCHEMA_VERSION

    shard_dir = Path(shard_dir)
    path = shard_dir / MANIFEST
    if not path.is_file():
        hint = ""
        stages = sorted(p.name for p in shard_dir.glob("stage*") if (p / MANIFEST).is_file())
        if stages:
            hint = f" (it holds {', '.join(stages)}: pass one of them)"
        raise ManifestError(f"{shard_dir} has no {MANIFEST}; build it with `imprint pairs`{hint}")
    try:
        manifest = read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} is not readable JSON ({exc}); rebuild it with `imprint pairs`") from exc
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


def shard_files(shard_dir: str | os.PathLike[str]) -> list[tuple[Path, int]]:
    """``(path, rows)`` of every shard the manifest lists, in manifest order."""
    shard_dir = Path(shard_dir)
    return [(shard_dir / s["file"], int(s["rows"])) for s in read_manifest(shard_dir)["shards"]]


def row_group_offsets(metadata: pq.FileMetaData) -> np.ndarray:
    """The first row of every row group, plus the file's row count at the end (length ``groups + 1``)."""
    counts = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
    offsets: np.ndarray = np.cumsum([0, *counts], dtype=np.int64)
    return offsets


def iter_shard_rows(shard_dir: str | os.PathLike[str], columns: Sequence[str] | None = None,
                    limit: int | None = None) -> Iterator[dict[str, Any]]:
    """The rows of a shard folder in manifest order (only ``columns`` when given), at most ``limit`` of them.

    Reads one row group at a time, so the first rows of a large folder cost one row group, not a shard.
    """
    left = limit
    for path, _rows in shard_files(shard_dir):
        with pq.ParquetFile(path) as pf:
            for g in range(pf.metadata.num_row_groups):
                if left is not None and left <= 0:
                    return
                rows = pf.read_row_group(g, columns=list(columns) if columns is not None else None).to_pylist()
                if left is not None:
                    rows = rows[:left]
                    left -= len(rows)
                yield from rows


def read_shard_rows(shard_dir: str | os.PathLike[str], n: int | None = None,
                    columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The first ``n`` rows (all when None) of a shard folder, in manifest order."""
    return list(iter_shard_rows(shard_dir, columns, n))
