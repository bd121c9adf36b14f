"""Ingest benchmark: a generated 720p YouTube-VOS-layout set ingested (with the record quality scores) on one
core (local executor) and on Ray.

The floor reads each annotation PNG once and each frame's header, on one core. The ratio is of CPU seconds
(``time.process_time``), the floor and the one-core ingest timed in alternating rounds and the fastest round
of each kept (:func:`imprint.bench.common.alternate`); wall seconds are reported beside. Peak memory is
measured in child processes for N and 4N frames.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from imprint.bench.common import alternate, load_average, peak_rss_mib, timed
from imprint.executor import make_executor
from imprint.ingest.config import IngestConfig
from imprint.ingest.job import run_ingest
from imprint.ingest.sample import generate_ytvos
from imprint.quality.scores import read_grey, reduction_for


def _frames(root: Path) -> list[tuple[Path, Path]]:
    """(frame, annotation) of every annotated frame."""
    split = root / "train"
    meta = json.loads((split / "meta.json").read_text())
    frames = []
    for video, entry in meta["videos"].items():
        stems = sorted({s for obj in entry["objects"].values() for s in obj["frames"]})
        frames += [(split / "JPEGImages" / video / f"{s}.jpg", split / "Annotations" / video / f"{s}.png")
                   for s in stems]
    return frames


def _floor(frames: list[tuple[Path, Path]]) -> None:
    """Read each annotation PNG once (decode) and each frame's header."""
    for image, annotation in frames:
        with Image.open(image) as im:
            _ = im.size
        with Image.open(annotation) as im:
            _ = np.asarray(im)


def _score_reductions(records: Path) -> dict[str, int]:
    """Per frame, the JPEG decode reduction ingest's record scores used (from the boxes of its records)."""
    rows = pq.read_table(sorted(records.glob("*/part-*.parquet")), columns=["image_uri", "bbox"]).to_pylist()
    smallest: dict[str, int] = {}
    for r in rows:
        x0, y0, x1, y1 = r["bbox"]
        smallest[r["image_uri"]] = min(smallest.get(r["image_uri"], 1 << 30), max(x1 - x0, y1 - y0))
    return {uri: reduction_for(side) for uri, side in smallest.items()}


def _floor_with_score_decode(frames: list[tuple[Path, Path]], reductions: dict[str, int]) -> None:
    """:func:`_floor` plus the one reduced greyscale decode per frame the record scores need."""
    _floor(frames)
    for image, _ in frames:
        if str(image) in reductions:
            read_grey(image, reductions[str(image)])


def _ingest(root: Path, out: Path, executor_name: str, workers: int | None) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    cfg = IngestConfig(groups_per_part=2)
    with make_executor(executor_name, workers) as ex:
        t0 = time.perf_counter()
        report = run_ingest("ytvos", root, out, cfg, ex)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "frames": report["frames"], "records": report["kept"]}


def _peak_rss(root: Path, limit: int) -> float:
    """Peak RSS (MiB) of a child process ingesting the first ``limit`` videos on one core."""
    with tempfile.TemporaryDirectory() as tmp:
        return peak_rss_mib("imprint.bench.common", "ingest_ytvos", str(root), tmp, str(limit))


def measure(work: Path, quick: bool) -> dict[str, Any]:
    n_videos, n_frames = (4, 10) if quick else (24, 20)
    t0 = time.perf_counter()
    root = generate_ytvos(work / "ytvos720", seed=0, n_videos=n_videos, n_frames=n_frames, size=(1280, 720))
    gen_s = time.perf_counter() - t0
    frames = _frames(root)
    runs: list[dict[str, Any]] = []
    load = load_average()
    floor_t, local_t = alternate(lambda: _floor(frames),
                                 lambda: runs.append(_ingest(root, work / "out-local", "local", None)),
                                 rounds=2 if quick else 3)
    local = runs[-1]
    reductions = _score_reductions(work / "out-local" / "records")
    decode_t = min((timed(lambda: _floor_with_score_decode(frames, reductions)) for _ in range(2 if quick else 3)),
                   key=lambda t: t.cpu)
    workers = os.cpu_count() or 1
    ray_run = _ingest(root, work / "out-ray", "ray", workers)
    per_frame_floor = floor_t.cpu / len(frames)
    per_frame_local = local_t.cpu / local["frames"]
    ratio = per_frame_local / per_frame_floor
    small = max(1, n_videos // 4)
    rss_n = _peak_rss(root, small)
    rss_4n = _peak_rss(root, small * 4)
    growth = rss_4n / rss_n - 1.0
    return {
        "dataset": {"layout": "ytvos", "videos": n_videos, "frames_per_video": n_frames, "size": [1280, 720],
                    "frames": len(frames), "records": local["records"], "generate_seconds": round(gen_s, 2)},
        "floor": {"what": "read each annotation PNG once (decode) and each frame's header, one core",
                  "cpu_seconds": round(floor_t.cpu, 4), "wall_seconds": round(floor_t.wall, 4),
                  "ms_per_frame": round(1e3 * per_frame_floor, 3)},
        "ingest_one_core": {"executor": "local", "cpu_seconds": round(local_t.cpu, 4),
                            "wall_seconds": round(local_t.wall, 4),
                            "ms_per_frame": round(1e3 * per_frame_local, 3),
                            "frames_per_s": round(local["frames"] / local_t.cpu, 2),
                            "instances_per_s": round(local["records"] / local_t.cpu, 2)},
        "ingest_ray": {"executor": "ray", "workers": workers, "seconds": round(ray_run["seconds"], 4),
                       "frames_per_s_per_core": round(ray_run["frames"] / ray_run["seconds"] / workers, 2),
                       "instances_per_s_per_core": round(ray_run["records"] / ray_run["seconds"] / workers, 2),
                       "note": "Ray started before timing; includes task scheduling and the driver's report merge"},
        "ratio_to_floor": round(ratio, 3),
        "floor_with_score_decode": {
            "what": "the floor plus one greyscale decode per frame at the reduction the record scores use (the "
                    "least any pixel score costs: JPEG entropy decoding does not shrink with the DCT scale)",
            "cpu_seconds": round(decode_t.cpu, 4), "ms_per_frame": round(1e3 * decode_t.cpu / len(frames), 3),
            "ratio": round(local_t.cpu / local["frames"] / (decode_t.cpu / len(frames)), 3)},
        "ratio_to_floor_wall": round((local_t.wall / local["frames"]) / (floor_t.wall / len(frames)), 3),
        "load_average": {"before": load, "after": load_average()},
        "memory": {"frames_n": small * n_frames, "peak_rss_mib_n": round(rss_n, 1),
                   "frames_4n": small * 4 * n_frames, "peak_rss_mib_4n": round(rss_4n, 1),
                   "growth": round(growth, 3)},
        "targets": {"ratio_to_floor": "<= 1.3", "memory_growth_n_to_4n": "<= 0.20"},
        "meets_target": {"ratio_to_floor": ratio <= 1.3, "memory_growth": growth <= 0.20},
    }
