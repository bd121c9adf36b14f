"""``imprint pairs``: records -> ``DATA/shards/stageN/part-NNNNN.parquet`` + manifest, card, report.

The driver plans every pair from record metadata (cheap, streaming) and cuts the plan
into shards of ``shard_rows`` pairs: shard ``i`` holds pairs ``i*rows ...`` of the
plan, so its name is a function of its inputs. Each shard is one task (local or Ray):
it decodes the frames, builds the pairs and writes the shard under a temporary name,
then its marker. A rerun keeps the finished shards; the manifest is written last.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from imprint import __version__
from imprint.config import config_dict, fingerprint
from imprint.errors import ImprintError
from imprint.executor import Executor
from imprint.pairing.build import FrameCache, build_pair, cubes_for
from imprint.pairing.config import PairsConfig
from imprint.pairing.plan import PairSpec, plan_pairs
from imprint.io import write_json_atomic, write_text_atomic
from imprint.parts import (JobConflict, PartsRun, is_done, marker_path, part_path, prepare_out_dir, read_marker,
                           run_parts)
from imprint.records import RECORDS_SCHEMA_VERSION
from imprint.shards.schema import SHARDS_SCHEMA_VERSION
from imprint.shards.writer import (ATTRIBUTION, attribution_list, dataset_card, licence_counts, read_credits,
                                   write_shard)
from imprint.stats import Drop, Stats

log = logging.getLogger(__name__)

RECORD_COLUMNS = ["image_uri", "mask", "bbox", "width", "height", "category", "licence", "attribution"]


class PairsError(ImprintError, RuntimeError):
    """The job could not run or finished with failed shards."""


@dataclass(frozen=True)
class ShardTask:
    index: int
    specs: tuple[PairSpec, ...]
    cfg: PairsConfig
    out_dir: str

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}"

    def fingerprint(self) -> str:
        return fingerprint(config_dict(self.cfg), [s.pair_id for s in self.specs])


class _Records:
    """Rows of records parts, read once per task (only the columns pairs need)."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[str, list]] = {}

    def row(self, part: str, index: int) -> dict[str, Any]:
        if part not in self._tables:
            self._tables[part] = pq.read_table(part, columns=RECORD_COLUMNS).to_pydict()
        table = self._tables[part]
        return {name: table[name][index] for name in RECORD_COLUMNS}

    def build(self, spec: PairSpec, frames: FrameCache, cfg: PairsConfig, cubes: list[str]) -> dict[str, Any]:
        """The shard row of ``spec`` (raises :class:`Drop` for a pair that cannot be made), with the licence
        and attribution of the records it comes from (both of one group, so of one item)."""
        src = self.row(spec.records, spec.src_row)
        row = build_pair(spec, src, self.row(spec.records, spec.tgt_row), frames, cfg, cubes)
        row.update(licence=src["licence"], attribution=src["attribution"])
        return row


def build_shard(task: ShardTask) -> dict[str, Any]:
    """Build and write one shard; returns its marker (rows, bytes, sha256, sources, counts)."""
    t0 = time.perf_counter()
    stats = Stats()
    records, frames, cubes = _Records(), FrameCache(), cubes_for(task.cfg)
    rows = []
    sources: dict[str, int] = {}
    for spec in task.specs:
        item = f"{spec.source}/{spec.group_id}/{spec.instance_id}/{spec.src_frame}->{spec.tgt_frame}"
        try:
            row = records.build(spec, frames, task.cfg, cubes)
        except Drop as drop:
            # quality outcomes (an object gone after the crop or the affine draw) are counted only;
            # broken inputs are listed with their error too
            broken = drop.reason not in ("vanished_after_crop", "degenerate_affine")
            stats.drop(drop.reason, item=item, error=(drop.detail or drop.reason) if broken else None)
            continue
        except Exception:  # noqa: BLE001 - an unforeseen input: counted with its traceback, never fatal
            stats.drop("error", item=item, error=traceback.format_exc())
            continue
        stats.keep()
        sources[spec.source] = sources.get(spec.source, 0) + 1
        rows.append(row)
    out = Path(task.out_dir)
    info = write_shard(rows, part_path(out, task.name), task.cfg.row_group_rows)
    marker = {**info, "part": task.name, "fingerprint": task.fingerprint(), "sources": sources,
              "stats": stats.to_dict(), "seconds": round(time.perf_counter() - t0, 4)}
    write_json_atomic(marker_path(out, task.name), marker)
    return marker


def _rows_per_shard(specs: list[PairSpec], cfg: PairsConfig) -> int:
    """``shard_rows``, or rows that make about ``shard_bytes``, estimated by building the first pairs."""
    if not cfg.shard_bytes or not specs:
        return cfg.shard_rows
    records, frames, cubes = _Records(), FrameCache(), cubes_for(cfg)
    sizes = []
    for spec in specs[:8]:
        try:
            row = records.build(spec, frames, cfg, cubes)
        except Drop:
            continue
        sizes.append(sum(len(row[c]["bytes"]) for c in ("object", "target", "mask")) + 200)
    per_row = max(1, sum(sizes) // len(sizes)) if sizes else 1
    return max(1, cfg.shard_bytes // per_row)


def run_pairs(records_dir: Path, out_dir: Path, stage: int, sources: dict[str, int], cfg: PairsConfig,
              executor: Executor, *, weights: dict[str, float] | None = None, overwrite: bool = False,
              split: str = "all") -> dict[str, Any]:
    """Build the shards of one stage from ``sources`` ({source: pairs per instance}). Returns the report.

    ``split``: ``all`` pairs, or only the ``train`` / ``holdout`` groups (``cfg.holdout``).
    """
    t0 = time.perf_counter()
    records_dir, out_dir = Path(records_dir), Path(out_dir)
    missing = [s for s in sources if not (records_dir / s).is_dir()]
    if missing:
        raise PairsError(f"no records for {', '.join(missing)} under {records_dir}; run `imprint ingest` first")
    _check_records_schema(records_dir, sources)
    job = {"stage": stage, "sources": dict(sorted(sources.items())), "config": fingerprint(config_dict(cfg)),
           "split": split}
    try:
        prepare_out_dir(out_dir, job, overwrite)
    except JobConflict as exc:
        raise PairsError(str(exc)) from None
    specs = list(plan_pairs(records_dir, sources, stage, cfg, split))
    rows = _rows_per_shard(specs, cfg)
    tasks = [ShardTask(i // rows, tuple(specs[i:i + rows]), cfg, str(out_dir)) for i in range(0, len(specs), rows)]
    todo = [t for t in tasks if not is_done(out_dir, t.name, t.fingerprint())]
    log.info("[pairs stage%d] %d pairs planned from %s in %d shards; %d already done, %d to run on the %s executor",
             stage, len(specs), ", ".join(sorted(sources)), len(tasks), len(tasks) - len(todo), len(todo),
             executor.name)
    ran = run_parts(executor, build_shard, todo, f"pairs stage{stage}", "pairs", lambda m: m["rows"], log.info)
    failed = ran.failed
    report, manifest = _finish(out_dir, stage, tasks, cfg, sources, weights, executor.name, ran,
                               time.perf_counter() - t0, split)
    log.info("[pairs stage%d] %d pairs in %d shards; dropped %s; manifest: %s", stage, manifest["rows"],
             len(manifest["shards"]), report["dropped"], out_dir / "manifest.json")
    if failed:
        raise PairsError(f"{len(failed)} shard(s) failed: {', '.join(sorted(failed))}; errors in "
                         f"{out_dir / 'report.json'}; run the same command again to retry them")
    return report


def _check_records_schema(records_dir: Path, sources: dict[str, int]) -> None:
    """Refuse records written by another version of the records schema (they lack columns pairs need)."""
    for source in sorted(sources):
        for part in sorted((records_dir / source).glob("part-*.parquet"))[:1]:
            meta = pq.read_schema(part).metadata or {}
            version = meta.get(b"imprint.schema", b"?").decode()
            if version != RECORDS_SCHEMA_VERSION:
                raise PairsError(f"{records_dir / source} holds records {version}; this imprint reads "
                                 f"{RECORDS_SCHEMA_VERSION}: ingest {source} again with --overwrite")


def _finish(out_dir: Path, stage: int, tasks: list[ShardTask], cfg: PairsConfig, sources: dict[str, int],
            weights: dict[str, float] | None, executor: str, ran: PartsRun, seconds: float, split: str):
    failed = ran.failed
    stats = Stats()
    shards = []
    counts: dict[str, int] = {}
    for task in tasks:
        m = read_marker(out_dir, task.name)
        if task.name in failed or m is None:
            continue
        stats.merge(Stats.from_dict(m["stats"]))
        shards.append({k: m[k] for k in ("file", "rows", "bytes", "sha256", "sources")})
        for source, n in m["sources"].items():
            counts[source] = counts.get(source, 0) + n
    resolved = {**config_dict(cfg), "stage": stage, "split": split, "pairs_per_instance_by_source": dict(sorted(sources.items())),
                "source_weights": dict(sorted((weights or {s: 1.0 for s in sources}).items()))}
    report = {"stage": stage, "version": __version__, "executor": executor, **stats.to_dict(),
              "failed_shards": [{"shard": k, "error": v} for k, v in sorted(failed.items())],
              "retried_shards": ran.retried_list("shard"),
              "seconds": round(seconds, 3), "config": resolved}
    credits = read_credits(out_dir / s["file"] for s in shards)
    manifest = {"schema": SHARDS_SCHEMA_VERSION, "version": __version__, "stage": stage, "config": resolved,
                "sources": dict(sorted(counts.items())), "licences": licence_counts(credits),
                "rows": sum(s["rows"] for s in shards), "shards": shards}
    write_json_atomic(out_dir / "report.json", report)
    write_text_atomic(out_dir / ATTRIBUTION, attribution_list(credits, manifest["rows"]))
    write_text_atomic(out_dir / "README.md", dataset_card(manifest, report))
    if not failed:
        write_json_atomic(out_dir / "manifest.json", manifest)
    return report, manifest
