"""Loader benchmark: ``ShardLoader`` on one core (no workers) against decoding the same image bytes the same
way."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch

from imprint.bench.common import ingest_ytvos
from imprint.executor import LocalExecutor
from imprint.ingest.sample import generate_ytvos
from imprint.pairing.config import PairsConfig
from imprint.pairing.job import run_pairs
from imprint.shards.loader import LoaderConfig, ShardLoader, decode_mask, decode_rgb


def measure(work: Path, quick: bool) -> dict[str, Any]:
    torch.set_num_threads(1)
    n_videos = 3 if quick else 8
    root = generate_ytvos(work / "ytvos720", seed=2, n_videos=n_videos, n_frames=12, size=(1280, 720))
    ingest_ytvos(root, work / "data", n_videos)
    shards = work / "shards"
    run_pairs(work / "data" / "records", shards, 2, {"ytvos": 16}, PairsConfig(shard_rows=64), LocalExecutor())
    cfg = LoaderConfig(batch_size=8, num_workers=0, drop_last=False)
    columns = ["object", "target", "mask"]
    rows = [r for p in sorted(shards.glob("part-*.parquet")) for r in pq.read_table(p, columns=columns).to_pylist()]

    def floor() -> float:
        t0 = time.perf_counter()
        for r in rows:
            decode_rgb(r["object"]["bytes"], cfg.object_size)
            decode_rgb(r["target"]["bytes"], cfg.target_size)
            decode_mask(r["mask"]["bytes"], cfg.target_size)
        return time.perf_counter() - t0

    def epoch() -> tuple[float, int]:
        loader = ShardLoader(shards, cfg)
        t0 = time.perf_counter()
        n = sum(len(batch["pair_id"]) for batch in loader)
        return time.perf_counter() - t0, n

    floor()
    epoch()  # warm-up: page cache, imports
    floor_s = min(floor() for _ in range(3))
    loader_s, n = min(epoch() for _ in range(3))
    ratio = (loader_s / n) / (floor_s / len(rows))
    return {
        "dataset": {"pairs": len(rows), "stage": 2, "object_size": cfg.object_size, "target_size": cfg.target_size,
                    "batch_size": cfg.batch_size},
        "floor": {"what": "decode the object, target and mask bytes of every row (same decoders, no tensors), "
                          "one core", "seconds": round(floor_s, 4),
                  "samples_per_s": round(len(rows) / floor_s, 1)},
        "loader_one_core": {"num_workers": 0, "seconds": round(loader_s, 4), "samples": n,
                            "samples_per_s_per_core": round(n / loader_s, 1)},
        "ratio_to_floor": round(ratio, 3),
        "targets": {"ratio_to_floor": "<= 1.3"},
        "meets_target": {"ratio_to_floor": ratio <= 1.3},
    }
