"""``imprint ingest``: a source's groups -> ``DATA/records/<source>/part-NNNNN.parquet`` + ``report.json``.

The part is the unit of distribution, retry and resume. Part ``i`` holds the
groups ``i*groups_per_part ...`` of the sorted group list, so its name is a
function of its inputs. It is written under a temporary name and renamed, then its
marker ``part-NNNNN.json`` (counts, failures, the inputs' fingerprint) is written
last: a rerun skips every part whose marker matches and redoes the rest, so a
killed job finishes without duplicating a row.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from imprint import __version__
from imprint.archive import extract_archive, is_archive, archive_stem
from imprint.config import config_dict, fingerprint
from imprint.executor import Executor
from imprint.ingest.base import Group, process_group
from imprint.ingest.config import IngestConfig
from imprint.ingest.sources import get_source
from imprint.records import RECORDS_SCHEMA, records_to_table
from imprint.stats import Stats

ROW_GROUP_SIZE = 256
MARKER_DIR = "_parts"


class IngestError(RuntimeError):
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


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False, default=str))
    os.replace(tmp, path)


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
    write_json_atomic(marker_path(task), marker)
    return marker


def marker_path(task: PartTask) -> Path:
    """The part's marker, in ``_parts/`` so that readers of ``*.parquet`` never see it."""
    return Path(task.out_dir) / MARKER_DIR / f"{task.name}.json"


def _is_done(task: PartTask) -> bool:
    marker = marker_path(task)
    if not marker.is_file() or not (Path(task.out_dir) / f"{task.name}.parquet").is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("fingerprint") == task.fingerprint()
    except (OSError, json.JSONDecodeError):
        return False


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


def _check_job(out_dir: Path, source: str, cfg: IngestConfig, overwrite: bool) -> None:
    """Refuse to mix parts made with another config into one records folder."""
    job_file = out_dir / "_job.json"
    job = {"source": source, "config_fingerprint": fingerprint(config_dict(cfg))}
    if job_file.is_file() and not overwrite:
        saved = json.loads(job_file.read_text())
        if saved != job:
            raise IngestError(f"{out_dir} holds records made with another config or source; "
                              f"pass --overwrite to rebuild it, or choose another --out")
    if overwrite and out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / MARKER_DIR).mkdir(parents=True, exist_ok=True)
    write_json_atomic(job_file, job)
    for stale in [*out_dir.glob("*.tmp"), *(out_dir / MARKER_DIR).glob("*.tmp")]:
        stale.unlink()


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
    _check_job(out_dir, source_name, cfg, overwrite)
    tasks = make_tasks(source_name, groups, cfg, out_dir)
    todo = [t for t in tasks if not _is_done(t)]
    log(f"[ingest {source_name}] {len(groups)} groups in {len(tasks)} parts; "
        f"{len(tasks) - len(todo)} already done, {len(todo)} to run on the {executor.name} executor")
    failed: dict[str, str] = {}
    frames_done = 0
    for n, outcome in enumerate(executor.run(run_part, todo), 1):
        task = todo[outcome.index]
        if outcome.ok:
            frames_done += outcome.result["frames"]
            rate = frames_done / max(time.perf_counter() - t0, 1e-9)
            log(f"[ingest {source_name}] {task.name} done ({n}/{len(todo)}): "
                f"{outcome.result['rows']} records, {rate:.1f} frames/s")
        else:
            failed[task.name] = outcome.error or ""
            log(f"[ingest {source_name}] {task.name} FAILED ({n}/{len(todo)}):\n{outcome.error}")
    report = build_report(source_name, root, root_dir, out_dir, tasks, cfg, executor.name, failed, archive,
                          time.perf_counter() - t0)
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
        marker = marker_path(task)
        if task.name in failed or not marker.is_file():
            continue
        m = json.loads(marker.read_text())
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
