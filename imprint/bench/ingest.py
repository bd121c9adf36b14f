"""Ingest benchmark: a generated 720p YouTube-VOS-layout set ingested on one core (local executor) and on Ray.

The floor reads each annotation PNG once and each frame's header, on one core. Peak memory is
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
from PIL import Image

from imprint.bench.common import peak_rss_mib
from imprint.executor import make_executor
from imprint.ingest.config import IngestConfig
from imprint.ingest.job import run_ingest
from imprint.ingest.sample import generate_ytvos


def _floor(root: Path) -> tuple[float, int]:
    """Seconds to read each annotation PNG once and each frame's header; and the frame count."""
    split = root / "train"
    meta = json.loads((split / "meta.json").read_text())
    frames = []
    for video, entry in meta["videos"].items():
        stems = sorted({s for obj in entry["objects"].values() for s in obj["frames"]})
        frames += [(split / "JPEGImages" / video / f"{s}.jpg", split / "Annotations" / video / f"{s}.png")
                   for s in stems]
    t0 = time.perf_counter()
    for image, annotation in frames:
        with Image.open(image) as im:
            _ = im.size
        with Image.open(annotation) as im:
            _ = np.asarray(im)
    return time.perf_counter() - t0, len(frames)


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
    _floor(root)  # warm the page cache so both runs read from memory
    floor_s, frames = _floor(root)
    local = _ingest(root, work / "out-local", "local", None)
    workers = os.cpu_count() or 1
    ray_run = _ingest(root, work / "out-ray", "ray", workers)
    per_frame_floor = floor_s / frames
    per_frame_local = local["seconds"] / local["frames"]
    ratio = per_frame_local / per_frame_floor
    small = max(1, n_videos // 4)
    rss_n = _peak_rss(root, small)
    rss_4n = _peak_rss(root, small * 4)
    growth = rss_4n / rss_n - 1.0
    return {
        "dataset": {"layout": "ytvos", "videos": n_videos, "frames_per_video": n_frames, "size": [1280, 720],
                    "frames": frames, "records": local["records"], "generate_seconds": round(gen_s, 2)},
        "floor": {"what": "read each annotation PNG once (decode) and each frame's header, one core",
                  "seconds": round(floor_s, 4), "ms_per_frame": round(1e3 * per_frame_floor, 3)},
        "ingest_one_core": {"executor": "local", "seconds": round(local["seconds"], 4),
                            "ms_per_frame": round(1e3 * per_frame_local, 3),
                            "frames_per_s": round(local["frames"] / local["seconds"], 2),
                            "instances_per_s": round(local["records"] / local["seconds"], 2)},
        "ingest_ray": {"executor": "ray", "workers": workers, "seconds": round(ray_run["seconds"], 4),
                       "frames_per_s_per_core": round(ray_run["frames"] / ray_run["seconds"] / workers, 2),
                       "instances_per_s_per_core": round(ray_run["records"] / ray_run["seconds"] / workers, 2),
                       "note": "Ray started before timing; includes task scheduling and the driver's report merge"},
        "ratio_to_floor": round(ratio, 3),
        "memory": {"frames_n": small * n_frames, "peak_rss_mib_n": round(rss_n, 1),
                   "frames_4n": small * 4 * n_frames, "peak_rss_mib_4n": round(rss_4n, 1),
                   "growth": round(growth, 3)},
        "targets": {"ratio_to_floor": "<= 1.5", "memory_growth_n_to_4n": "<= 0.20"},
        "meets_target": {"ratio_to_floor": ratio <= 1.5, "memory_growth": growth <= 0.20},
    }
