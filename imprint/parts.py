"""Resumable parts: the unit of distribution, retry and resume of every job.

A job's output folder holds ``part-NNNNN.parquet`` files, each written under a
temporary name and renamed, then its marker ``_parts/part-NNNNN.json`` (its counts
and the fingerprint of its inputs) written last. A part is done when both exist
and the marker's fingerprint matches the task's: a rerun redoes only the rest.
``_job.json`` pins the config the folder was built with, so parts made with
different settings are never mixed.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imprint.errors import ImprintError
from imprint.io import write_json_atomic

MARKER_DIR = "_parts"


class JobConflict(ImprintError, RuntimeError):
    """The output folder was built with another config; the message says what to do."""


def part_path(out_dir: Path, name: str) -> Path:
    return Path(out_dir) / f"{name}.parquet"


def marker_path(out_dir: Path, name: str) -> Path:
    """The part's marker, in ``_parts/`` so that readers of ``*.parquet`` never see it."""
    return Path(out_dir) / MARKER_DIR / f"{name}.json"


def read_marker(out_dir: Path, name: str) -> dict[str, Any] | None:
    try:
        marker: dict[str, Any] = json.loads(marker_path(out_dir, name).read_text())
        return marker
    except (OSError, json.JSONDecodeError):
        return None


def is_done(out_dir: Path, name: str, fingerprint: str) -> bool:
    marker = read_marker(out_dir, name)
    return marker is not None and marker.get("fingerprint") == fingerprint and part_path(out_dir, name).is_file()


def prepare_out_dir(out_dir: Path, job: dict[str, Any], overwrite: bool) -> None:
    """Create ``out_dir`` for ``job``, refusing one built for another job unless ``overwrite``."""
    out_dir = Path(out_dir)
    job_file = out_dir / "_job.json"
    if job_file.is_file() and not overwrite:
        if json.loads(job_file.read_text()) != job:
            raise JobConflict(f"{out_dir} holds output made with another config or source; "
                              f"pass --overwrite to rebuild it, or choose another --out")
    if overwrite and out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / MARKER_DIR).mkdir(parents=True, exist_ok=True)
    write_json_atomic(job_file, job)
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
