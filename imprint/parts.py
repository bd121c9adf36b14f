"""Resumable parts: the unit of distribution, retry and resume of every job.

A job's output folder (a path or a URI: :class:`imprint.storage.Location`) holds ``part-NNNNN.parquet``
files, each written whole (a rename on a filesystem, one upload to an object store), then its marker
``_parts/part-NNNNN.json`` (its counts and the fingerprint of its inputs) written last. A part is done when
both exist and the marker's fingerprint matches the task's: a rerun redoes only the rest. Readers of a
job's output take only parts that have a marker (:func:`finished_parts`), so a part being written, or left
by a killed writer, is never read. ``_job.json`` pins the config the folder was built with, so parts made
with different settings are never mixed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from imprint.errors import ImprintError
from imprint.io import read_json, write_json_atomic
from imprint.storage import Location, Where, storage_error

MARKER_DIR = "_parts"
JOB_FILE = "_job.json"
PART_GLOB = "part-*.parquet"
_READ_THREADS = 16  # markers read at once from an object store (one GET each)


class JobConflict(ImprintError, RuntimeError):
    """The output folder was built with another config; the message says what to do."""


class Task(Protocol):
    """What the part helpers need of a task: its part's name and the fingerprint of its inputs."""

    @property
    def name(self) -> str: ...

    def fingerprint(self) -> str: ...


T = TypeVar("T", bound=Task)


def part_path(out_dir: Where, name: str) -> Location:
    return Location.of(out_dir) / f"{name}.parquet"


def marker_path(out_dir: Where, name: str) -> Location:
    """The part's marker, in ``_parts/`` so that readers of ``*.parquet`` never see it."""
    return Location.of(out_dir) / MARKER_DIR / f"{name}.json"


def read_marker(out_dir: Where, name: str) -> dict[str, Any] | None:
    try:
        marker = read_json(marker_path(out_dir, name))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def read_markers(out_dir: Where, names: Iterable[str]) -> dict[str, dict[str, Any] | None]:
    """:func:`read_marker` of each name (from an object store, many at once)."""
    out_dir = Location.of(out_dir)
    names = list(names)
    if out_dir.is_local or len(names) < 2:
        return {n: read_marker(out_dir, n) for n in names}
    with ThreadPoolExecutor(min(_READ_THREADS, len(names))) as pool:
        return dict(zip(names, pool.map(lambda n: read_marker(out_dir, n), names)))


def is_done(out_dir: Where, name: str, fingerprint: str) -> bool:
    marker = read_marker(out_dir, name)
    return marker is not None and marker.get("fingerprint") == fingerprint and part_path(out_dir, name).is_file()


def _listed(out_dir: Location) -> tuple[set[str], set[str]]:
    """Names of the part files and of the markers in ``out_dir`` (two listings)."""
    parts = {p.name[:-len(".parquet")] for p in out_dir.glob(PART_GLOB)}
    markers = {p.name[:-len(".json")] for p in (out_dir / MARKER_DIR).glob("part-*.json")}
    return parts, markers


def unfinished(out_dir: Where, tasks: Sequence[T]) -> list[T]:
    """The tasks whose part is not done (see :func:`is_done`): two listings and one read per marker, not
    one lookup per task, so a rerun over thousands of parts in a store plans in seconds."""
    out_dir = Location.of(out_dir)
    parts, markers = _listed(out_dir)
    candidates = [t.name for t in tasks if t.name in parts and t.name in markers]
    found = read_markers(out_dir, candidates)
    return [t for t in tasks if (found.get(t.name) or {}).get("fingerprint") != t.fingerprint()]


def finished_parts(out_dir: Where) -> list[Location]:
    """The part files of a job's folder that have a marker, by name: what readers read. A part without
    one is being written, or was left by a killed writer, and is ignored."""
    out_dir = Location.of(out_dir)
    parts, markers = _listed(out_dir)
    return [part_path(out_dir, name) for name in sorted(parts & markers)]


def prepare_out_dir(out_dir: Where, job: dict[str, Any], overwrite: bool) -> None:
    """Create ``out_dir`` for ``job``, refusing one built for another job unless ``overwrite``.

    This is the job's first write, on the driver: a store that cannot be reached or written fails here,
    with what to check, before any task runs.
    """
    out_dir = Location.of(out_dir)
    job_file = out_dir / JOB_FILE
    try:
        old = read_json(job_file)
    except FileNotFoundError:
        old = None
    except ValueError:
        old = {}
    except OSError as exc:
        raise storage_error(job_file, "read", exc) from None
    if old is not None and not overwrite and old != job:
        raise JobConflict(f"{out_dir} holds output made with another config or source; "
                          f"pass --overwrite to rebuild it, or choose another --out")
    try:
        if overwrite:
            out_dir.rmtree()
        (out_dir / MARKER_DIR).mkdir()
        write_json_atomic(job_file, job)
    except OSError as exc:
        raise storage_error(out_dir, "write to", exc) from None
    if out_dir.is_local:  # temporaries of a killed writer (a store has none: an upload is whole or absent)
        for stale in [*out_dir.glob("*.tmp"), *(out_dir / MARKER_DIR).glob("*.tmp")]:
            stale.unlink()


@dataclass(slots=True)
class PartsRun:
    """What :func:`run_parts` saw: the parts that failed as a whole, and those run again after a lost worker."""

    failed: dict[str, str] = field(default_factory=dict)  # part name -> our traceback, or the lost worker's error
    retried: dict[str, int] = field(default_factory=dict)  # part name -> times run again (worker or node lost)

    def retried_list(self, key: str = "part") -> list[dict[str, Any]]:
        """``retried`` for a report: ``[{key: name, "retries": n}, ...]`` by name."""
        return [{key: name, "retries": n} for name, n in sorted(self.retried.items())]


def run_parts(executor: Any, fn: Any, todo: list[Any], label: str, unit: str, count: Any, log: Any) -> PartsRun:
    """Run the unfinished parts ``todo`` (tasks with a ``name``) on ``executor`` with one progress line per part.

    Each task writes its part and marker where the job's output lives and returns the marker (a small dict
    with its ``rows``): only markers come back to this process, never a part's rows. ``count(marker)`` is
    how many ``unit`` (frames, pairs) a finished part made, for the rate.
    """
    t0 = time.perf_counter()
    result = PartsRun()
    done = 0
    for n, outcome in enumerate(executor.run(fn, todo), 1):
        task = todo[outcome.index]
        if outcome.retries:
            result.retried[task.name] = outcome.retries
        if outcome.ok:
            done += count(outcome.result)
            rate = done / max(time.perf_counter() - t0, 1e-9)
            log(f"[{label}] {task.name} done ({n}/{len(todo)}): {outcome.result['rows']} rows, {rate:.1f} {unit}/s")
        else:
            result.failed[task.name] = outcome.error or ""
            log(f"[{label}] {task.name} FAILED ({n}/{len(todo)}):\n{outcome.error}")
    if result.retried:
        log(f"[{label}] {len(result.retried)} part(s) ran again after their worker or node was lost: "
            f"{', '.join(sorted(result.retried))}")
    return result
