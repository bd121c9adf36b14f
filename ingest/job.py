"""``imprint ingest``: a source's groups -> ``DATA/records/<source>/part-NNNNN.parquet`` + ``report.json``.

The part is the unit of distribution, retry and resume. Part ``i`` holds the
groups ``i*groups_per_part ...`` of the sorted group list, so its name is a
function of its inputs. It is written under a temporary name and renamed, then its
marker ``part-NNNNN.json`` (counts, failures, the inputs' fingerprint) is written
last: a rerun skips every part whose marker matches and redoes the rest, so a
killed job finishes without duplicating a row.

A job is planned first (:func:`plan_ingest`: the archive unpacked, the layout checked,
the groups listed; no executor needed), then run (:func:`run_plan`). For a
materialised source, the failed items of its ledger are counted in the same report.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from imprint import __version__
from imprint.archive import archive_stem, extract_archive, is_archive
from imprint.config import config_dict, fingerprint
from imprint.errors import ImprintError
from imprint.executor import Executor
from imprint.ingest.base import Group, Source, process_group
from imprint.ingest.config import IngestConfig
from imprint.ingest.ledger import ledger_drops
from imprint.ingest.sources import SourceDef, get_source
from imprint.io import write_json_atomic, write_parquet_atomic
from imprint.parts import (JobConflict, marker_path, part_path, prepare_out_dir, read_markers, run_parts,
                           unfinished)
from imprint.records import RECORDS_SCHEMA_VERSION, records_to_table
from imprint.stats import Stats
from imprint.storage import Location, Where

log = logging.getLogger(__name__)

ROW_GROUP_SIZE = 256


class IngestError(ImprintError, RuntimeError):
    """The job could not run or finished with failed parts."""


@dataclass(frozen=True)
class PartTask:
    source: str
    reader: Source
    index: int
    groups: tuple[Group, ...]
    cfg: IngestConfig
    out_dir: str  # DATA/records/<source>: a path or a URI, written to by the task itself

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}"

    def fingerprint(self) -> str:
        groups = [(g.group_id, [(f.name, f.number, f.image, f.annotation, f.expected) for f in g.frames], g.licence,
                   g.attribution) for g in self.groups]
        return fingerprint(self.source, RECORDS_SCHEMA_VERSION, config_dict(self.cfg), groups)


def run_part(task: PartTask) -> dict[str, Any]:
    """Process one part's groups and write its Parquet file and marker. Returns the marker."""
    t0 = time.perf_counter()
    stats = Stats()
    records = []
    for group in task.groups:
        records.extend(process_group(task.reader, task.source, group, task.cfg, stats))
    out = Location(task.out_dir)
    write_parquet_atomic(records_to_table(records), part_path(out, task.name), row_group_size=ROW_GROUP_SIZE,
                         compression="zstd")
    marker = {"part": task.name, "fingerprint": task.fingerprint(), "rows": len(records),
              "groups": [g.group_id for g in task.groups],
              "frames": sum(len(g.frames) for g in task.groups),
              "stats": stats.to_dict(), "seconds": round(time.perf_counter() - t0, 4)}
    write_json_atomic(marker_path(out, task.name), marker)
    return marker


def local_data(data: Where, source: str, why: str) -> Path:
    """The DATA folder that holds ``raw/``, which must be a filesystem: an :class:`IngestError` saying what to
    do when ``data`` is object storage (``why``: what ``source`` keeps under ``raw/``)."""
    loc = Location.of(data)
    if not loc.is_local:
        raise IngestError(f"{source}: {why} under DATA/raw/, which must be a local or shared folder, but --out "
                          f"{loc} is object storage: pass --local-data DIR (a filesystem folder for raw/)")
    return loc.local_path()


def prepare_root(root: Path, data: Where, source: str) -> tuple[Path, dict[str, Any] | None]:
    """A folder as is, or an official archive unpacked safely under ``DATA/raw/<source>``."""
    root = Path(root)
    if root.is_dir():
        return root, None
    if is_archive(root):
        raw_dir = local_data(data, source, f"the archive {root} is unpacked") / "raw" / source
        report = extract_archive(root, raw_dir / archive_stem(root))
        return Path(report.target), report.to_dict()
    if not root.exists():
        raise IngestError(f"--root {root} does not exist")
    raise IngestError(f"--root {root} is neither a folder nor an archive (.zip, .tar, .tar.gz)")


@dataclass(frozen=True)
class IngestPlan:
    """What one ingest job will read: the source, its resolved root and groups, and the settings it runs with."""

    source: SourceDef
    root: Path
    root_dir: Path
    archive: dict[str, Any] | None
    groups: list[Group]
    cfg: IngestConfig
    reader: Source
    read: dict[str, Any] = field(default_factory=dict)  # what the reader read (folders, split lists, variants)


def source_config(source: SourceDef, cfg: IngestConfig) -> IngestConfig:
    """``cfg`` with the settings ``source`` always needs (single images: an instance seen once is kept)."""
    return replace(cfg, **source.ingest) if source.ingest else cfg


def plan_ingest(source: str | SourceDef, root: Path, out: Where, cfg: IngestConfig, *,
                limit: int | None = None) -> IngestPlan:
    """Unpack ``root`` if it is an archive (under ``out/raw/``: ``out`` is the DATA folder, or the
    filesystem folder that holds raw/ when DATA is object storage), check its layout and list its groups
    (sorted, the first ``limit``).

    Cheap next to the job: nothing is decoded. A wrong layout raises :class:`LayoutError` here.
    Every group carries its licence and attribution (its own, else the source's).
    """
    defn = get_source(source) if isinstance(source, str) else source
    cfg = source_config(defn, cfg)
    reader = defn.reader()
    root_dir, archive = prepare_root(Path(root), out, defn.name)
    if archive and archive["refused"]:
        log.warning("[ingest %s] refused %d archive member(s); see report.json", defn.name, len(archive["refused"]))
    groups = sorted(reader.discover(root_dir, cfg), key=lambda g: g.group_id)
    if limit is not None and defn.limit_groups:
        groups = groups[:limit]
    groups = [replace(g, licence=g.licence or defn.licence, attribution=g.attribution or defn.attribution)
              for g in groups]
    return IngestPlan(defn, Path(root), root_dir, archive, groups, cfg, reader, reader.read_notes())


def make_tasks(plan: IngestPlan, out_dir: Location) -> list[PartTask]:
    n = plan.cfg.groups_per_part
    return [PartTask(plan.source.name, plan.reader, i // n, tuple(plan.groups[i:i + n]), plan.cfg, str(out_dir))
            for i in range(0, len(plan.groups), n)]


def run_ingest(source: str | SourceDef, root: Path, out: Where, cfg: IngestConfig, executor: Executor, *,
               limit: int | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Ingest one source into ``out/records/<source>/`` (a path or a URI); returns the report (also written as
    report.json)."""
    return run_plan(plan_ingest(source, root, out, cfg, limit=limit), out, executor, overwrite=overwrite)


def run_plan(plan: IngestPlan, out: Where, executor: Executor, *, overwrite: bool = False) -> dict[str, Any]:
    """Run a planned ingest job on ``executor``, writing ``out/records/<source>/`` (a path or a URI: each
    task writes its own part there); returns the report (also written as report.json)."""
    t0 = time.perf_counter()
    name = plan.source.name
    out_dir = Location.of(out) / "records" / name
    try:
        prepare_out_dir(out_dir, {"source": name, "schema": RECORDS_SCHEMA_VERSION,
                                  "config_fingerprint": fingerprint(config_dict(plan.cfg))}, overwrite)
    except JobConflict as exc:
        raise IngestError(str(exc)) from None
    tasks = make_tasks(plan, out_dir)
    todo = unfinished(out_dir, tasks)
    if plan.read:
        log.info("[ingest %s] read %s", name, "; ".join(f"{k}: {v}" for k, v in plan.read.items()))
    log.info("[ingest %s] %d groups in %d parts; %d already done, %d to run on the %s executor", name,
             len(plan.groups), len(tasks), len(tasks) - len(todo), len(todo), executor.name)
    ran = run_parts(executor, run_part, todo, f"ingest {name}", "frames", lambda m: m["frames"], log.info)
    failed = ran.failed
    report = build_report(plan, out_dir, tasks, executor.name, failed, time.perf_counter() - t0)
    report["retried_parts"] = ran.retried_list("part")
    write_json_atomic(out_dir / "report.json", report)
    log.info("[ingest %s] seen %d, kept %d, dropped %s; report: %s", name, report["seen"], report["kept"],
             report["dropped"], out_dir / "report.json")
    if failed:
        raise IngestError(f"{len(failed)} part(s) failed: {', '.join(sorted(failed))}; their errors are in "
                          f"{out_dir / 'report.json'}; run the same command again to retry them")
    return report


def build_report(plan: IngestPlan, out_dir: Location, tasks: list[PartTask], executor: str, failed: dict[str, str],
                 seconds: float) -> dict[str, Any]:
    """The job's report: the materialise step's failed items (one drop each) and every part's counts."""
    stats, materialise = ledger_drops(plan.root_dir)
    parts = []
    frames = 0
    markers = read_markers(out_dir, [t.name for t in tasks if t.name not in failed])
    for task in tasks:
        m = markers.get(task.name)
        if task.name in failed or m is None:
            continue
        stats.merge(Stats.from_dict(m["stats"]))
        frames += m["frames"]
        parts.append({"part": m["part"], "rows": m["rows"], "groups": len(m["groups"])})
    return {
        "source": plan.source.name, "root": str(plan.root), "resolved_root": str(plan.root_dir),
        "version": __version__, "schema": RECORDS_SCHEMA_VERSION, "frame_rate": plan.source.frame_rate,
        "read": plan.read, "executor": executor, "groups": sum(len(t.groups) for t in tasks), "frames": frames,
        **stats.to_dict(),
        "failed_parts": [{"part": k, "error": v} for k, v in sorted(failed.items())],
        "parts": parts, "archive": plan.archive, "materialise": materialise, "seconds": round(seconds, 3),
        "config": config_dict(plan.cfg),
    }
