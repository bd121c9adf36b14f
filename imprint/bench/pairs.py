"""Pairs benchmark: stage-2 pairs of a generated 720p YouTube-VOS-layout set built on one core with the
default quality filters, against decoding each distinct input once and encoding each output with the same
codecs and sizes. Peak memory is measured in child processes for N and 4N pairs.

The ratio is of CPU seconds (``time.process_time``: this process, every thread), the floor and the build
timed in alternating rounds and the fastest round of each kept, so a machine shared with other jobs moves
both sides alike (the first round also pays the imports; wall seconds are reported beside)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow.parquet as pq

from imprint.bench.common import alternate, ingest_ytvos, load_average, peak_rss_mib
from imprint.executor import LocalExecutor
from imprint.ingest.sample import generate_ytvos
from imprint.masks import decode_mask_png, encode_mask_png
from imprint.pairing.build import encode_image
from imprint.pairing.config import PairsConfig
from imprint.pairing.job import run_pairs
from imprint.pairing.plan import PairSpec, plan_pairs


def _floor(records_dir: Path, specs: list[PairSpec], cfg: PairsConfig) -> None:
    """Decode every distinct input (frame JPEG, record mask PNG) once and encode every output with the
    same codecs and sizes (object and target JPEG/PNG, mask PNG): what no pair builder can avoid."""
    tables = {}
    rows = []
    for spec in specs:
        if spec.records not in tables:
            tables[spec.records] = pq.read_table(spec.records, columns=["image_uri", "mask"]).to_pydict()
        t = tables[spec.records]
        rows.append(((t["image_uri"][spec.src_row], (spec.records, spec.src_row), t["mask"][spec.src_row]),
                     (t["image_uri"][spec.tgt_row], (spec.records, spec.tgt_row), t["mask"][spec.tgt_row])))
    obj = np.full((cfg.object_resolution, cfg.object_resolution, 3), 127, np.uint8)
    tgt = np.full((cfg.resolution, cfg.resolution, 3), 127, np.uint8)
    seen: set[Any] = set()
    for pair in rows:
        for uri, key, mask in pair:
            if key not in seen:
                seen.add(key)
                decode_mask_png(mask)
            if uri not in seen:
                seen.add(uri)
                frame = cv2.imread(uri, cv2.IMREAD_COLOR)
                if frame is None:
                    raise OSError(f"cannot read {uri}")
                # outputs of the real sizes with real content (windows of the frame, no resampling)
                tgt = np.ascontiguousarray(frame[:cfg.resolution, :cfg.resolution])
                obj = np.ascontiguousarray(frame[:cfg.object_resolution, :cfg.object_resolution])
        encode_image(obj, cfg)
        encode_image(tgt, cfg)
        encode_mask_png(tgt[..., 0] > 127)


def _peak_rss(records: Path, sources: dict[str, int]) -> float:
    """Peak RSS (MiB) of a child process building the pairs ``sources`` asks for, on one core."""
    with tempfile.TemporaryDirectory() as tmp:
        return peak_rss_mib("imprint.bench.common", "pairs_child", str(records), tmp, json.dumps(sources))


def measure(work: Path, quick: bool) -> dict[str, Any]:
    n_videos, n_frames = (4, 10) if quick else (12, 20)
    root = generate_ytvos(work / "ytvos720", seed=1, n_videos=n_videos, n_frames=n_frames, size=(1280, 720))
    ingest_ytvos(root, work / "data", n_videos)
    records = work / "data" / "records"
    cfg = PairsConfig(shard_rows=64)
    cap = 4
    specs = list(plan_pairs(records, {"ytvos": cap}, 2, cfg))
    reports: list[dict[str, Any]] = []

    def build() -> None:
        shutil.rmtree(work / "shards", ignore_errors=True)
        reports.append(run_pairs(records, work / "shards", 2, {"ytvos": cap}, cfg, LocalExecutor()))

    load = load_average()
    floor_t, ours_t = alternate(lambda: _floor(records, specs, cfg), build, rounds=2 if quick else 3)
    report = reports[-1]
    seen = report["seen"]
    ratio = (ours_t.cpu / seen) / (floor_t.cpu / len(specs))
    rss_n = _peak_rss(records, {"ytvos": 1})
    rss_4n = _peak_rss(records, {"ytvos": 4})
    n1 = len(list(plan_pairs(records, {"ytvos": 1}, 2, cfg)))
    return {
        "dataset": {"layout": "ytvos", "videos": n_videos, "frames_per_video": n_frames, "size": [1280, 720],
                    "pairs": len(specs), "stage": 2, "resolution": cfg.resolution,
                    "object_resolution": cfg.object_resolution, "image_format": cfg.image_format,
                    "filters": "default", "identity_backend": cfg.filters.identity.backend},
        "floor": {"what": "decode each distinct input frame (JPEG) and record mask (PNG) once, encode object, "
                          "target and mask per pair with the same codecs and sizes, one core",
                  "cpu_seconds": round(floor_t.cpu, 4), "wall_seconds": round(floor_t.wall, 4),
                  "ms_per_pair": round(1e3 * floor_t.cpu / len(specs), 3)},
        "pairs_one_core": {"executor": "local", "cpu_seconds": round(ours_t.cpu, 4),
                           "wall_seconds": round(ours_t.wall, 4), "built": report["kept"],
                           "dropped": report["dropped"], "ms_per_pair": round(1e3 * ours_t.cpu / seen, 3),
                           "pairs_per_s_per_core": round(seen / ours_t.cpu, 2)},
        "ratio_to_floor": round(ratio, 3),
        "ratio_to_floor_wall": round((ours_t.wall / seen) / (floor_t.wall / len(specs)), 3),
        "load_average": {"before": load, "after": load_average()},
        "memory": {"pairs_n": n1, "peak_rss_mib_n": round(rss_n, 1), "pairs_4n": len(specs),
                   "peak_rss_mib_4n": round(rss_4n, 1), "growth": round(rss_4n / rss_n - 1, 3)},
        "targets": {"ratio_to_floor": "<= 1.3", "memory_growth_n_to_4n": "<= 0.20"},
        "meets_target": {"ratio_to_floor": ratio <= 1.3, "memory_growth": rss_4n / rss_n - 1 <= 0.20},
    }
