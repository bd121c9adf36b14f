"""``imprint ingest``: a source's groups -> ``DATA/records/<source>/part-NNNNN.parquet`` + ``report.json``.

The part is the unit of distribution, retry and resume. Part ``i`` holds the
groups ``i*groups_per_part ...`` of the sorted group list, so its name is a
function of its inputs. It is written under a temporary name and renamed, then its
marker ``part-NNNNN.json`` (counts, failures, the inputs' fingerprint) is written
last: a rerun skips every part whose marker matches and redoes the rest, so a
killed job finishes without duplicating a row.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from imprint import __version__
from imprint.archive import extract_archive, is_archive, archive_stem
from imprint.config import config_dict, fingerprint
from imprint.errors import ImprintError
from imprint.executor import Executor
from imprint.io import write_json_atomic
from imprint.parts import JobConflict, is_done, marker_path, prepare_out_dir, read_marker, run_parts
from imprint.ingest.base import Group, process_group
from imprint.ingest.config import IngestConfig
from imprint.ingest.sources import get_source
from imprint.records import RECORDS_SCHEMA, records_to_table
from imprint.stats import Stats

ROW_GROUP_SIZE = 256


class IngestError(ImprintError, RuntimeError):
    """The job could not run or finished with failed parts."""


@dataclass(frozen=True)
class PartTask:
    source: str
    index: int
    groups: tuple[Group, ...]
    cfg: IngestConfig
    out_dir: str

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}"

    def fingerprint(self) -> str:
        groups = [(g.group_id, [(f.name, f.image, f.annotation, f.expected) for f in g.frames]) for g in self.groups]
        return fingerprint(self.source, config_dict(self.cfg), groups)


def run_part(task: PartTask) -> dict[str, Any]:
    """Process one part's groups and write its Parquet file and marker. Returns the marker."""
    t0 = time.perf_counter()
    source = get_source(task.source)
    stats = Stats()
    records = []
    for group in task.groups:
        records.extend(process_group(source, group, task.cfg, stats))
    out = Path(task.out_dir)
    final = out / f"{task.name}.parquet"
    tmp = out / f"{task.name}.parquet.tmp"
    pq.write_table(records_to_table(records), tmp, row_group_size=ROW_GROUP_SIZE, compression="zstd")
    os.replace(tmp, final)
    marker = {"part": task.name, "fingerprint": task.fingerprint(), "rows": len(records),
              "groups": [g.group_id for g in task.groups],
              "frames": sum(len(g.frames) for g in task.groups),
              "stats": stats.to_dict(), "seconds": round(time.perf_counter() - t0, 4)}
    write_json_atomic(marker_path(out, task.name), marker)
    return marker


def _is_done(task: PartTask) -> bool:
    return is_done(Path(task.out_dir), task.name, task.fingerprint())


def prepare_root(root: Path, raw_dir: Path) -> tuple[Path, dict | None]:
    """A folder as is, or an official archive unpacked safely under ``raw_dir``."""
    root = Path(root)
    if root.is_dir():
        return root, None
    if is_archive(root):
        report = extract_archive(root, raw_dir / archive_stem(root))
        return Path(report.target), report.to_dict()
    if not root.exists():
        raise IngestError(f"--root {root} does not exist")
    raise IngestError(f"--root {root} is neither a folder nor an archive (.zip, .tar, .tar.gz)")


def make_tasks(source: str, groups: list[Group], cfg: IngestConfig, out_dir: Path) -> list[PartTask]:
    n = cfg.groups_per_part
    return [PartTask(source, i // n, tuple(groups[i:i + n]), cfg, str(out_dir)) for i in range(0, len(groups), n)]


def run_ingest(source_name: str, root: Path, out: Path, cfg: IngestConfig, executor: Executor, *,
               limit: int | None = None, overwrite: bool = False, log=None) -> dict[str, Any]:
    """Ingest one source into ``out/records/<source>/``; returns the report (also written as report.json)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    source = get_source(source_name)
    out = Path(out)
    root_dir, archive = prepare_root(Path(root), out / "raw" / source_name)
    if archive and archive["refused"]:
        log(f"[ingest {source_name}] refused {len(archive['refused'])} archive member(s); see report.json")
    groups = sorted(source.discover(root_dir, cfg), key=lambda g: g.group_id)
    if limit is not None:
        groups = groups[:limit]
    out_dir = out / "records" / source_name
    try:
        prepare_out_dir(out_dir, {"source": source_name, "config_fingerprint": fingerprint(config_dict(cfg))},
                        overwrite)
    except JobConflict as exc:
        raise IngestError(str(exc)) from None
    tasks = make_tasks(source_name, groups, cfg, out_dir)
    todo = [t for t in tasks if not _is_done(t)]
    log(f"[ingest {source_name}] {len(groups)} groups in {len(tasks)} parts; "
        f"{len(tasks) - len(todo)} already done, {len(todo)} to run on the {executor.name} executor")
    ran = run_parts(executor, run_part, todo, f"ingest {source_name}", "frames", lambda m: m["frames"], log)
    failed = ran.failed
    report = build_report(source_name, root, root_dir, out_dir, tasks, cfg, executor.name, failed, archive,
                          time.perf_counter() - t0)
    report["retried_parts"] = ran.retried_list("part")
    write_json_atomic(out_dir / "report.json", report)
    log(f"[ingest {source_name}] seen {report['seen']}, kept {report['kept']}, dropped {report['dropped']}; "
        f"report: {out_dir / 'report.json'}")
    if failed:
        raise IngestError(f"{len(failed)} part(s) failed: {', '.join(sorted(failed))}; their errors are in "
                          f"{out_dir / 'report.json'}; run the same command again to retry them")
    return report


def build_report(source: str, root: Path, root_dir: Path, out_dir: Path, tasks: list[PartTask],
                 cfg: IngestConfig, executor: str, failed: dict[str, str], archive: dict | None,
                 seconds: float) -> dict[str, Any]:
    stats = Stats()
    parts = []
    frames = 0
    for task in tasks:
        m = read_marker(out_dir, task.name)
        if task.name in failed or m is None:
            continue
        stats.merge(Stats.from_dict(m["stats"]))
        frames += m["frames"]
        parts.append({"part": m["part"], "rows": m["rows"], "groups": len(m["groups"])})
    return {
        "source": source, "root": str(root), "resolved_root": str(root_dir), "version": __version__,
        "schema": RECORDS_SCHEMA.metadata[b"imprint.schema"].decode(),
        "executor": executor, "groups": sum(len(t.groups) for t in tasks), "frames": frames,
        **stats.to_dict(),
        "failed_parts": [{"part": k, "error": v} for k, v in sorted(failed.items())],
        "parts": parts, "archive": archive, "seconds": round(seconds, 3), "config": config_dict(cfg),
    }
