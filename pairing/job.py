"""``imprint pairs``: records -> ``DATA/shards/stageN/part-NNNNN.parquet`` + manifest, card, report.

The driver plans every pair from record metadata (cheap, streaming; the record filters
judge each instance's records there, on the scores ingest stored) and cuts the plan
into shards of ``shard_rows`` pairs: shard ``i`` holds pairs ``i*rows ...`` of the
plan, so its name is a function of its inputs. Each shard is one task (local or Ray):
it decodes the frames, builds the pairs, scores and filters them on their un-augmented
crops, and writes the shard and its ``excluded/`` part under temporary names, then its
marker. A rerun keeps the finished shards; the manifest is written last.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any

from imprint import __version__
from imprint.config import config_dict, fingerprint
from imprint.errors import ImprintError
from imprint.executor import Executor
from imprint.pairing.build import FrameCache, build_pair, cubes_for
from imprint.pairing.config import PairsConfig
from imprint.pairing.plan import PairSpec, pair_rule, plan_pairs, record_parts
from imprint.pairing.quality import QUALITY_RECORD_SCORES, PairScorer, RecordGate, ScoreViews, score_views
from imprint.quality.excluded import pairs_part_path, records_part_path, write_excluded
from imprint.quality.features import get_backend
from imprint.quality.histograms import ScoreHistograms
from imprint.quality.summary import quality_report
from imprint.io import parquet_schema, read_parquet, write_json_atomic, write_text_atomic
from imprint.parts import (JobConflict, PartsRun, marker_path, part_path, prepare_out_dir, read_markers, run_parts,
                           unfinished)
from imprint.records import RECORDS_SCHEMA_VERSION
from imprint.shards.schema import SHARDS_SCHEMA_VERSION
from imprint.shards.writer import (ATTRIBUTION, attribution_list, dataset_card, licence_counts, read_credits,
                                   write_shard)
from imprint.stats import Drop, Stats
from imprint.storage import Location, Where

log = logging.getLogger(__name__)

RECORD_COLUMNS = ["image_uri", "mask", "bbox", "width", "height", "category", "licence", "attribution",
                  *QUALITY_RECORD_SCORES]


class PairsError(ImprintError, RuntimeError):
    """The job could not run or finished with failed shards."""


@dataclass(frozen=True)
class ShardTask:
    index: int
    specs: tuple[PairSpec, ...]
    cfg: PairsConfig
    out_dir: str  # DATA/shards/stageN: a path or a URI, written to by the task itself

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
            self._tables[part] = read_parquet(part, RECORD_COLUMNS).to_pydict()
        table = self._tables[part]
        return {name: table[name][index] for name in RECORD_COLUMNS}

    def build(self, spec: PairSpec, frames: FrameCache, cfg: PairsConfig, cubes: list[str]) -> dict[str, Any]:
        """The shard row of ``spec`` (raises :class:`Drop` for a pair that cannot be made), with the licence
        and attribution of the records it comes from (both of one group, so of one item)."""
        src, tgt = self.row(spec.records, spec.src_row), self.row(spec.records, spec.tgt_row)
        return _with_licence(build_pair(spec, src, tgt, frames, cfg, cubes), src)

    def scored(self, spec: PairSpec, frames: FrameCache, cfg: PairsConfig, cubes: list[str], side: int
               ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], ScoreViews]:
        """The shard row of ``spec``, its two records and the crops it is scored on (from the frames the row
        was built from)."""
        src, tgt = self.row(spec.records, spec.src_row), self.row(spec.records, spec.tgt_row)
        row = _with_licence(build_pair(spec, src, tgt, frames, cfg, cubes), src)
        return row, src, tgt, score_views(spec, src, tgt, frames, side, cfg.fill)


def _with_licence(row: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    row.update(licence=src["licence"], attribution=src["attribution"])
    return row


def build_shard(task: ShardTask) -> dict[str, Any]:
    """Build, score, filter and write one shard and its ``excluded/`` part; returns its marker (rows, bytes,
    sha256, sources, counts, score histograms)."""
    t0 = time.perf_counter()
    stats = Stats()
    records, frames, cubes = _Records(), FrameCache(), cubes_for(task.cfg)
    backend = get_backend(task.cfg.filters.identity)
    stage = task.specs[0].stage if task.specs else 2
    scorer = PairScorer(task.cfg.filters, stage, backend, stats)
    rows: list[dict[str, Any]] = []
    sources: dict[str, int] = {}

    def keep(kept: list[dict[str, Any]]) -> None:
        for row in kept:
            stats.keep()
            sources[row["source"]] = sources.get(row["source"], 0) + 1
            rows.append(row)

    for spec in task.specs:
        item = f"{spec.source}/{spec.group_id}/{spec.instance_id}/{spec.src_frame}->{spec.tgt_frame}"
        try:
            row, src, tgt, views = records.scored(spec, frames, task.cfg, cubes, backend.side)
        except Drop as drop:
            # quality outcomes (an object gone after the crop or the affine draw) are counted only;
            # broken inputs are listed with their error too
            broken = drop.reason not in ("vanished_after_crop", "degenerate_affine")
            stats.drop(drop.reason, item=item, error=(drop.detail or drop.reason) if broken else None)
            continue
        except Exception:  # noqa: BLE001 - an unforeseen input: counted with its traceback, never fatal
            stats.drop("error", item=item, error=traceback.format_exc())
            continue
        keep(scorer.add(spec, row, src, tgt, views))
    keep(scorer.finish())
    out = Location(task.out_dir)
    excluded = write_excluded(scorer.excluded, pairs_part_path(out, task.name))
    info = write_shard(rows, part_path(out, task.name), task.cfg.row_group_rows)
    marker = {**info, "part": task.name, "fingerprint": task.fingerprint(), "sources": sources,
              "stats": stats.to_dict(), "quality": {"excluded": excluded, "scores": scorer.hist.to_dict()},
              "seconds": round(time.perf_counter() - t0, 4)}
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


def run_pairs(records_dir: Where, out_dir: Where, stage: int, sources: dict[str, int], cfg: PairsConfig,
              executor: Executor, *, weights: dict[str, float] | None = None, overwrite: bool = False,
              split: str = "all") -> dict[str, Any]:
    """Build the shards of one stage from ``sources`` ({source: pairs per instance}). Returns the report.

    ``split``: ``all`` pairs, or only the ``train`` / ``holdout`` groups (``cfg.holdout``). ``records_dir``
    and ``out_dir`` are paths or URIs; each task writes its shard to ``out_dir`` itself.
    """
    t0 = time.perf_counter()
    records_dir, out_dir = Location.of(records_dir), Location.of(out_dir)
    missing = [s for s in sources if not record_parts(records_dir, s)]
    if missing:
        raise PairsError(f"no records for {', '.join(missing)} under {records_dir}; run `imprint ingest` first")
    _check_records_schema(records_dir, sources)
    job = {"stage": stage, "sources": dict(sorted(sources.items())), "config": fingerprint(config_dict(cfg)),
           "split": split}
    try:
        prepare_out_dir(out_dir, job, overwrite)
    except JobConflict as exc:
        raise PairsError(str(exc)) from None
    for source in sorted(sources):
        log.info("[pairs stage%d] %s: %s", stage, source, pair_rule(source, stage, cfg))
    gate = RecordGate(cfg.filters, stage)
    specs = list(plan_pairs(records_dir, sources, stage, cfg, split, gate))
    for (source, part), removed in sorted(gate.excluded.items()):
        write_excluded(removed, records_part_path(out_dir, source, part))
    rows = _rows_per_shard(specs, cfg)
    tasks = [ShardTask(i // rows, tuple(specs[i:i + rows]), cfg, str(out_dir)) for i in range(0, len(specs), rows)]
    todo = unfinished(out_dir, tasks)
    log.info("[pairs stage%d] %d pairs planned from %s in %d shards; %d already done, %d to run on the %s executor",
             stage, len(specs), ", ".join(sorted(sources)), len(tasks), len(tasks) - len(todo), len(todo),
             executor.name)
    ran = run_parts(executor, build_shard, todo, f"pairs stage{stage}", "pairs", lambda m: m["rows"], log.info)
    failed = ran.failed
    report, manifest = _finish(out_dir, stage, tasks, cfg, sources, weights, executor.name, ran,
                               time.perf_counter() - t0, split, gate, records_dir)
    log.info("[pairs stage%d] %d pairs in %d shards; dropped %s; records removed %s; manifest: %s", stage,
             manifest["rows"], len(manifest["shards"]), report["dropped"], gate.stats.to_dict()["dropped"],
             out_dir / "manifest.json")
    if failed:
        raise PairsError(f"{len(failed)} shard(s) failed: {', '.join(sorted(failed))}; errors in "
                         f"{out_dir / 'report.json'}; run the same command again to retry them")
    return report


def _check_records_schema(records_dir: Location, sources: dict[str, int]) -> None:
    """Refuse records written by another version of the records schema (they lack columns pairs need)."""
    for source in sorted(sources):
        for part in record_parts(records_dir, source)[:1]:
            meta = parquet_schema(part).metadata or {}
            version = meta.get(b"imprint.schema", b"?").decode()
            if version != RECORDS_SCHEMA_VERSION:
                raise PairsError(f"{records_dir / source} holds records {version}; this imprint reads "
                                 f"{RECORDS_SCHEMA_VERSION}: ingest {source} again with --overwrite")


def _finish(out_dir: Location, stage: int, tasks: list[ShardTask], cfg: PairsConfig, sources: dict[str, int],
            weights: dict[str, float] | None, executor: str, ran: PartsRun, seconds: float, split: str,
            gate: RecordGate, records_dir: Location):
    failed = ran.failed
    stats = Stats()
    shards = []
    counts: dict[str, int] = {}
    markers = read_markers(out_dir, [t.name for t in tasks if t.name not in failed])
    hist = ScoreHistograms()
    hist.merge(gate.hist)
    excluded = sum(len(rows) for rows in gate.excluded.values())
    for task in tasks:
        m = markers.get(task.name)
        if task.name in failed or m is None:
            continue
        stats.merge(Stats.from_dict(m["stats"]))
        hist.merge(ScoreHistograms.from_dict(m["quality"]["scores"]))
        excluded += m["quality"]["excluded"]
        shards.append({k: m[k] for k in ("file", "rows", "bytes", "sha256", "sources")})
        for source, n in m["sources"].items():
            counts[source] = counts.get(source, 0) + n
    resolved = {**config_dict(cfg), "stage": stage, "split": split, "pairs_per_instance_by_source": dict(sorted(sources.items())),
                "source_weights": dict(sorted((weights or {s: 1.0 for s in sources}).items())),
                "pair_rules": {s: pair_rule(s, stage, cfg) for s in sorted(sources)}}
    report = {"stage": stage, "version": __version__, "executor": executor,
              "records": str(records_dir.local_path().resolve()) if records_dir.is_local else str(records_dir),
              **stats.to_dict(),
              "failed_shards": [{"shard": k, "error": v} for k, v in sorted(failed.items())],
              "retried_shards": ran.retried_list("shard"),
              "quality": quality_report(cfg.filters, stage, gate.stats, hist, excluded),
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
