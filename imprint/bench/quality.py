"""Quality benchmark: what the scores and filters cost, how fast DINOv2 scores identity on the CPU, and how well
the default filters do on generated faults.

- ``pairs``: stage-2 pairs of a generated 720p YouTube-VOS-layout set with the default filters on one core,
  and the part of that time the quality work takes (cutting the two scoring crops from frames already
  decoded, the classic identity features, identity, change and the pair filters), timed on the same pairs with
  the frames already in memory. Target: <= 15 % of pairs time.
- ``ingest``: the record scores (one reduced greyscale decode per frame, then sharpness, mask quality and
  the hash per object) against the whole ingest time of the same set.
- ``dinov2_cpu``: crops per second through the DINOv2 backend on the CPU, for a tiny random model (hidden
  32, 2 layers, 56 px) and for DINOv2-small's architecture with random weights (224 px); weights cannot be
  downloaded here, and the speed does not depend on them.
- ``faults``: generated fault sets (every kind, both layouts, seeds the thresholds were not chosen on):
  share of faulty pairs removed and of clean pairs kept, per fault kind.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from imprint.bench.common import ingest_ytvos
from imprint.executor import LocalExecutor
from imprint.ingest.sample import generate_mvimgnet, generate_ytvos
from imprint.ingest.sample.faults import FaultTruth, inject_faults
from imprint.masks import decode_mask_png
from imprint.pairing.build import FrameCache
from imprint.pairing.config import PairsConfig
from imprint.pairing.job import run_pairs
from imprint.pairing.plan import PairSpec, plan_pairs
from imprint.pairing.quality import QUALITY_RECORD_SCORES, PairScorer, score_views
from imprint.quality.features import get_backend
from imprint.quality.filters import NO_FILTERS
from imprint.quality.scores import read_grey, record_scores, reduction_for
from imprint.stats import Stats

_COLUMNS = ["image_uri", "mask", "bbox", *QUALITY_RECORD_SCORES]


def _rows(specs: list[PairSpec]) -> dict[tuple[str, int], dict[str, Any]]:
    tables = {part: pq.read_table(part, columns=_COLUMNS).to_pylist() for part in {s.records for s in specs}}
    return {(s.records, r): tables[s.records][r] for s in specs for r in (s.src_row, s.tgt_row)}


def quality_seconds(specs: list[PairSpec], cfg: PairsConfig) -> float:
    """Seconds of the quality work of building ``specs`` (crops, features, scores, filters), the frames and
    masks already decoded: what the filters add to a pairs run."""
    rows = _rows(specs)
    frames = FrameCache(size=len({r["image_uri"] for r in rows.values()}) + 1)
    for s in specs:  # decode everything first: that is the pair builder's share, not the filters'
        for row in (s.src_row, s.tgt_row):
            frames.get(rows[(s.records, row)]["image_uri"])
            frames.mask((s.records, row), rows[(s.records, row)]["mask"])
    backend = get_backend(cfg.filters.identity)
    scorer = PairScorer(cfg.filters, 2, backend, Stats())
    t0 = time.perf_counter()
    for s in specs:
        src, tgt = rows[(s.records, s.src_row)], rows[(s.records, s.tgt_row)]
        scorer.add(s, {}, src, tgt, score_views(s, src, tgt, frames, backend.side, cfg.fill))
    scorer.finish()
    return time.perf_counter() - t0


def record_score_seconds(records: Path) -> tuple[float, int, int]:
    """Seconds to compute every record's scores as ingest does (one reduced decode per frame), frames, records."""
    table = pq.read_table(sorted(records.glob("*/part-*.parquet")), columns=["image_uri", "mask", "bbox"]).to_pylist()
    by_frame: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in table:
        by_frame[r["image_uri"]].append(r)
    masks = {id(r): decode_mask_png(r["mask"]) for r in table}  # ingest holds the masks already
    t0 = time.perf_counter()
    for uri, recs in by_frame.items():
        reduction = reduction_for(min(max(r["bbox"][2] - r["bbox"][0], r["bbox"][3] - r["bbox"][1]) for r in recs))
        grey = read_grey(uri, reduction)
        assert grey is not None
        for r in recs:
            record_scores(grey, reduction, masks[id(r)], r["bbox"])
    return time.perf_counter() - t0, len(by_frame), len(table)


def _cost(work: Path, quick: bool) -> dict[str, Any]:
    n_videos, n_frames = (4, 10) if quick else (12, 20)
    root = generate_ytvos(work / "ytvos720", seed=1, n_videos=n_videos, n_frames=n_frames, size=(1280, 720))
    t0 = time.perf_counter()
    ingest_ytvos(root, work / "data", n_videos)
    ingest_s = time.perf_counter() - t0
    scores_s, frames, n_records = record_score_seconds(work / "data" / "records")
    records = work / "data" / "records"
    cfg = PairsConfig(shard_rows=64)
    cap = 4
    specs = list(plan_pairs(records, {"ytvos": cap}, 2, PairsConfig(shard_rows=64, filters=NO_FILTERS)))
    run_pairs(records, work / "warm", 2, {"ytvos": 1}, cfg, LocalExecutor())  # imports
    quality_seconds(specs[:8], cfg)
    t0 = time.perf_counter()
    report = run_pairs(records, work / "shards", 2, {"ytvos": cap}, cfg, LocalExecutor())
    pairs_s = time.perf_counter() - t0
    quality_s = quality_seconds(specs, cfg)
    share = quality_s / pairs_s
    return {
        "dataset": {"layout": "ytvos", "videos": n_videos, "frames_per_video": n_frames, "size": [1280, 720],
                    "pairs_planned": len(specs), "records": n_records, "frames": frames},
        "pairs": {"what": "default filters, classic identity backend, one core",
                  "pairs_seconds": round(pairs_s, 4), "ms_per_pair": round(1e3 * pairs_s / max(1, report["seen"]), 3),
                  "quality_seconds": round(quality_s, 4),
                  "quality_ms_per_pair": round(1e3 * quality_s / max(1, len(specs)), 3),
                  "quality_share_of_pairs_time": round(share, 4), "dropped": report["dropped"]},
        "ingest": {"ingest_seconds": round(ingest_s, 4), "record_scores_seconds": round(scores_s, 4),
                   "record_scores_ms_per_frame": round(1e3 * scores_s / max(1, frames), 3),
                   "record_scores_share_of_ingest_time": round(scores_s / ingest_s, 4)},
        "targets": {"quality_share_of_pairs_time": "<= 0.15"},
        "meets_target": {"quality_share_of_pairs_time": share <= 0.15},
    }


def _dinov2_rate(config: Any, n: int, tmp: Path) -> dict[str, Any]:
    import torch
    import transformers

    from imprint.quality.features import IdentityConfig

    transformers.Dinov2Model(config).save_pretrained(tmp)
    backend = get_backend(IdentityConfig(backend="dinov2", model=str(tmp), batch_size=32))
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (backend.side, backend.side, 3), dtype=np.uint8) for _ in range(n)]
    masks = [np.ones((backend.side, backend.side), bool)] * n
    backend.embed(crops[:4], masks[:4])  # warm-up
    t0 = time.perf_counter()
    backend.embed(crops, masks)
    seconds = time.perf_counter() - t0
    return {"side": backend.side, "crops": n, "seconds": round(seconds, 4), "crops_per_s": round(n / seconds, 1),
            "torch_threads": torch.get_num_threads()}


def _dinov2(work: Path, quick: bool) -> dict[str, Any]:
    import transformers

    from imprint.train.architectures import MODEL_CONFIG_DIR

    tiny = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                                     image_size=56, patch_size=14)
    small = transformers.Dinov2Config.from_pretrained(MODEL_CONFIG_DIR / "facebook" / "dinov2-small")
    return {"tiny_random": _dinov2_rate(tiny, 64 if quick else 256, work / "dino-tiny"),
            "small_architecture_random": _dinov2_rate(small, 16 if quick else 64, work / "dino-small"),
            "gpu": "not measured: no GPU was lent to this run"}


def fault_results(root: Path, seed: int, videos: int, captures: int) -> dict[str, Any]:
    """Default filters on a generated fault set of both layouts: per (source, kind) pairs planned and removed."""
    from imprint.ingest.config import IngestConfig
    from imprint.ingest.job import run_ingest

    def fast(**more: Any) -> PairsConfig:
        return PairsConfig(resolution=64, object_resolution=56, shard_rows=64, pairs_per_instance=1000, **more)

    out: dict[str, Any] = {}
    totals: Counter[str] = Counter()
    for source, stage in (("ytvos", 2), ("mvimgnet", 1)):
        layout = generate_ytvos(root, seed, n_videos=videos, n_frames=10) if source == "ytvos" else \
            generate_mvimgnet(root, seed, n_classes=max(2, captures // 3), n_instances=3, n_frames=14)
        truth: FaultTruth = inject_faults(layout, source, seed * 7 + 3, clean=2)
        run_ingest(source, layout, root / "data", IngestConfig(), LocalExecutor())
        records = root / "data" / "records"
        names = {(r["group_id"], r["instance_id"], r["frame_index"]): r["frame_name"] for r in pq.read_table(
            sorted((records / source).glob("part-*.parquet")),
            columns=["group_id", "instance_id", "frame_index", "frame_name"]).to_pylist()}
        planned = list(plan_pairs(records, {source: 1000}, stage, fast(filters=NO_FILTERS)))
        run_pairs(records, root / "shards" / source, stage, {source: 1000}, fast(), LocalExecutor())
        kept = set(pq.read_table(sorted((root / "shards" / source).glob("part-*.parquet")),
                                 columns=["pair_id"]).column("pair_id").to_pylist())
        kinds: dict[str, Counter[str]] = defaultdict(Counter)
        for s in planned:
            a = names[(s.group_id, s.instance_id, s.src_frame)]
            b = names[(s.group_id, s.instance_id, s.tgt_frame)]
            kind = truth.pair_fault(s.group_id, s.instance_id, a, b) or truth.pair_label(s.group_id, s.instance_id, a, b)
            kinds[kind]["kept" if s.pair_id in kept else "removed"] += 1
            label = "faulty" if kind not in ("clean", "redundant") else kind
            totals[f"{label}_pairs"] += 1
            totals[f"{label}_{'kept' if s.pair_id in kept else 'removed'}"] += 1
        out[source] = {k: dict(v) for k, v in sorted(kinds.items())}
    out["faulty_removed_share"] = round(totals["faulty_removed"] / max(1, totals["faulty_pairs"]), 4)
    out["clean_kept_share"] = round(totals["clean_kept"] / max(1, totals["clean_pairs"]), 4)
    return out


def measure(work: Path, quick: bool) -> dict[str, Any]:
    cost = _cost(work / "cost", quick)
    faults = {str(seed): fault_results(work / f"faults{seed}", seed, 12, 9) for seed in ((301,) if quick else (301, 302))}
    return {**cost, "dinov2_cpu": _dinov2(work, quick), "faults": faults,
            "faults_targets": {"faulty_removed_share": ">= 0.95", "clean_kept_share": ">= 0.80"},
            "faults_meet_targets": {seed: f["faulty_removed_share"] >= 0.95 and f["clean_kept_share"] >= 0.80
                                    for seed, f in faults.items()}}
