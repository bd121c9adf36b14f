"""Loader benchmark: ``ShardLoader`` (stage 2, batch 8) with 0 and 2 DataLoader workers against decoding the same
bytes, as CPU time per sample (all processes counted), floor and loader interleaved in one run.

The floor decodes the object, target and mask bytes of every row with the loader's own decoders
(:func:`imprint.shards.loader.decode_rgb`, :func:`~imprint.shards.loader.decode_mask`) into arrays, and
nothing else: in one process for the 0-worker loader, in two processes at once for the 2-worker one (so both
sides share the cores the same way). The loader's figure is the CPU time of the main process plus its workers
for a whole epoch (start-up, reading, shuffling, mask levels, batching, handing batches over). CPU time, not
wall time: other work on the machine slows both sides' wall clocks unevenly, and CPU seconds per sample are
what says how many cores keep a GPU fed. Each measure is repeated; ratios are taken within a repetition and
their median reported.

Also: a per-stage breakdown (ms per sample, each stage timed alone on the same rows in every repetition; the rest
of the loader and what workers add, within each repetition), peak memory of a fresh
process running an epoch over N and 4N pairs (main process and workers), and how many cores keep one GPU of
the ``stage2-sd21`` config fed at an assumed step time (no GPU here: the assumption and its source are stated).
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import psutil
import pyarrow.parquet as pq
import torch

from imprint.augment.mask_levels import draw_level, mask_level_into
from imprint.bench.common import ingest_ytvos, load_average
from imprint.executor import LocalExecutor
from imprint.ingest.sample import generate_ytvos
from imprint.io import read_json, write_json_atomic
from imprint.pairing.config import PairsConfig
from imprint.pairing.job import run_pairs
from imprint.shards.batches import SampleBatch
from imprint.shards.loader import (LoaderConfig, ShardLoader, ShardStream, decode_mask, decode_rgb, latent_mask_into,
                                   sample_rng, stored_box)

TARGET = 1.2
MEMORY_GROWTH = 0.1  # peak memory from N to 4N pairs: flat, within noise
STEP_SECONDS = {"A100": 0.5, "H100": 0.25}
STEP_ASSUMPTION = (
    "ASSUMED, not measured (no GPU here): one stage2-sd21 step (batch 8 per GPU, 512 px, bf16, gradient "
    "checkpointing, VAE encoding and the DINOv2-g image encoder on the fly) takes ~0.5 s on an A100 and ~0.25 s "
    "on an H100. Where it comes from: MosaicML's public SD2-base replication ('How We Trained Stable Diffusion "
    "for Less than $50k', Part 3, 2023) reports 6.8 days on 128 A100s for the SD2-base schedule (the model "
    "card's 550k steps at 256 px then 850k steps at 512 px, batch 2048); counting a 256 px sample at 1/4 of a "
    "512 px one, that is ~37 ms of A100 time per 512 px sample for their UNet step, with the speed-ups that post "
    "describes. We add ~70% for what our step does on top (VAE encoding and the image encoder on every step, "
    "gradient checkpointing): ~60 ms a sample, ~0.5 s for 8; an H100 taken as ~2x an A100. Measure your own "
    "step time and scale: cores per GPU = batch / step seconds / samples per second per core.")


def _build(work: Path, quick: bool) -> Path:
    """Stage-2 shards (512 px target, 224 px object) from a generated 720p YouTube-VOS-layout set."""
    n_videos = 3 if quick else 8
    root = generate_ytvos(work / "ytvos720", seed=2, n_videos=n_videos, n_frames=12, size=(1280, 720))
    ingest_ytvos(root, work / "data", n_videos)
    shards = work / "shards"
    run_pairs(work / "data" / "records", shards, 2, {"ytvos": 16}, PairsConfig(shard_rows=64), LocalExecutor())
    return shards


def _replicate(shards: Path, out: Path, copies: int) -> Path:
    """A shard folder listing ``copies`` hard links of every part of ``shards`` (N grows, the bytes stay real)."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = read_json(shards / "manifest.json")
    listed: list[dict[str, Any]] = []
    for c in range(copies):
        for shard in manifest["shards"]:
            name = f"part-{len(listed):05d}.parquet"
            os.link(shards / shard["file"], out / name)
            listed.append({**shard, "file": name})
    sources = {s: n * copies for s, n in manifest["sources"].items()}
    write_json_atomic(out / "manifest.json", {**manifest, "shards": listed, "rows": manifest["rows"] * copies,
                                              "sources": sources})
    return out


@functools.lru_cache(maxsize=1)
def _rows(shards: Path) -> list[dict[str, Any]]:
    columns = ["pair_id", "source", "seed", "object", "target", "mask"]
    rows = []
    for path in sorted(shards.glob("part-*.parquet")):
        for r in pq.read_table(path, columns=columns).to_pylist():
            rows.append({**r, "object": r["object"]["bytes"], "target": r["target"]["bytes"],
                         "mask": r["mask"]["bytes"]})
    return rows


def floor_child(shards: str, part: str, parts: str) -> float:
    """CPU seconds to decode every ``parts``-th row from ``part`` on with the loader's decoders (the floor)."""
    cv2.setNumThreads(1)
    cfg = LoaderConfig(batch_size=8)
    rows = _rows(Path(shards))[int(part)::int(parts)]
    t0 = time.process_time()
    for i in range(0, len(rows), cfg.batch_size):  # by batch, phase by phase, as the loader decodes
        batch = rows[i:i + cfg.batch_size]
        for r in batch:
            decode_rgb(r["object"], cfg.object_size)
        for r in batch:
            decode_rgb(r["target"], cfg.target_size)
        for r in batch:
            decode_mask(r["mask"], cfg.target_size)
    return time.process_time() - t0


def _floor(shards: Path, processes: int, pool: Any) -> float:
    """Floor CPU seconds over all rows, in ``processes`` processes at once (0: this one)."""
    if processes == 0:
        return floor_child(str(shards), "0", "1")
    return float(sum(pool.starmap(floor_child, [(str(shards), str(p), str(processes)) for p in range(processes)])))


def _epoch(loader: ShardLoader, rss: dict[str, float] | None = None) -> tuple[float, float, int]:
    """CPU seconds of this process, CPU seconds of its DataLoader workers, and samples, of one epoch of ``loader``.

    Workers are read after every batch (a worker that has run dry exits before the epoch ends); the reading's
    own time is left out of this process's.
    """
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}  # the fork server: not part of the epoch
    workers: list[psutil.Process] | None = None
    cpu: dict[int, float] = {}
    samples, reading = 0, 0.0
    t0 = time.process_time()
    for batch in loader:
        samples += len(batch["pair_id"])
        if not loader.cfg.num_workers:
            continue
        r0 = time.process_time()
        if workers is None:
            workers = [p for p in me.children(recursive=True) if p.pid not in before]
        for p in workers:
            try:
                with p.oneshot():
                    times = p.cpu_times()
                    cpu[p.pid] = times.user + times.system
                    if rss is not None:
                        rss["workers"] = max(rss.get("workers", 0.0), p.memory_info().rss / 2**20)
            except psutil.NoSuchProcess:  # done and gone: its last reading stands
                pass
        reading += time.process_time() - r0
    return time.process_time() - t0 - reading, sum(cpu.values()), samples


def _stages(shards: Path, cfg: LoaderConfig) -> dict[str, float]:
    """Each stage of the loader alone on the same rows, ms per sample (one process, each stage's code and data
    warm: in the loader they run colder, which the caller counts in the rest)."""
    stream = ShardStream(shards, cfg)
    rows = [r.data for r in stream.shuffled_rows(0, 0, 1) if r.data is not None]
    n = len(rows)
    layout = stream.layout(cfg.batch_size)
    a = SampleBatch(layout, layout.new(shared=False)).arrays
    b = cfg.batch_size  # sample i goes to slot i % b
    fine = [decode_mask(r["mask"], cfg.target_size) for r in rows]
    levels = [draw_level(sample_rng(cfg.seed, 0, r["seed"], r["pair_id"]), cfg.levels) for r in rows]
    boxes: list[Any] = [None] * n

    def level_into(i: int) -> None:
        a["mask"][i % b] = 0
        boxes[i] = mask_level_into(fine[i], levels[i], cfg.levels, a["mask"][i % b, 0].view(np.bool_),
                                   stored_box(rows[i], cfg.target_size))

    stages: dict[str, Callable[[int], object]] = {
        "read rows (parquet, shuffle buffer)": lambda i: None,
        "decode object (into the batch)": lambda i: decode_rgb(rows[i]["object"], cfg.object_size, a["object"][i % b]),
        "decode target (into the batch)": lambda i: decode_rgb(rows[i]["target"], cfg.target_size, a["target"][i % b]),
        "decode mask": lambda i: decode_mask(rows[i]["mask"], cfg.target_size),
        "draw level": lambda i: draw_level(sample_rng(cfg.seed, 0, rows[i]["seed"], rows[i]["pair_id"]), cfg.levels),
        "mask level (zeroing the slot included)": level_into,
        "latent mask": lambda i: latent_mask_into(a["mask"][i % b, 0].view(np.bool_), boxes[i], cfg.latent_factor,
                                                  a["mask_latent"][i % b, 0].view(np.bool_)),
    }
    out = {}
    for name, stage in stages.items():
        t0 = time.process_time()
        if name.startswith("read"):
            sum(1 for _ in stream.shuffled_rows(0, 0, 1))
        else:
            for i in range(n):
                stage(i)
        out[name] = 1e3 * (time.process_time() - t0) / n
    return out


def loader_child(shards: str, workers: str) -> None:
    """One epoch in a fresh process; prints its peak RSS and its workers' (MiB) as JSON."""
    import resource

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    rss: dict[str, float] = {}
    _epoch(ShardLoader(Path(shards), LoaderConfig(batch_size=8, num_workers=int(workers), drop_last=False)), rss)
    rss["main"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps(rss))


def _peak_rss(shards: Path, workers: int) -> dict[str, float]:
    code = ("import sys; from imprint.bench.loader import loader_child\n"
            "if __name__ == '__main__':\n    loader_child(sys.argv[1], sys.argv[2])")
    res = subprocess.run([sys.executable, "-c", code, str(shards), str(workers)], check=True, capture_output=True,
                         text=True)
    out: dict[str, float] = json.loads(res.stdout.strip().splitlines()[-1])
    return {k: round(v, 1) for k, v in out.items()}


def _gpu_feed(per_core: float) -> dict[str, Any]:
    from imprint.config import load_config
    from imprint.train.config import TrainConfig, resolve_config_path

    cfg = load_config(TrainConfig, resolve_config_path("stage2-sd21"))
    need = {gpu: cfg.batch_size / s for gpu, s in STEP_SECONDS.items()}
    return {"config": "stage2-sd21", "samples_per_step": cfg.batch_size, "resolution": cfg.resolution,
            "config_num_workers": cfg.num_workers, "assumed_step_seconds": STEP_SECONDS,
            "assumption": STEP_ASSUMPTION,
            "samples_per_s_per_gpu": {gpu: round(v, 1) for gpu, v in need.items()},
            "loader_samples_per_s_per_core": round(per_core, 1),
            "cores_per_gpu": {gpu: round(v / per_core, 2) for gpu, v in need.items()}}


def _runs(sets: dict[int, Path], n: int, reps: int) -> dict[str, list[float]]:
    """Interleaved CPU seconds: per repetition and worker count, the floor over the N set, then loader
    epochs over the N and the 4N set; then each stage alone (ms per sample, ``stage:NAME``)."""
    (k1, n_set), (k4, big) = sorted(sets.items())
    loaders = {(w, k): ShardLoader(s, LoaderConfig(batch_size=8, num_workers=w, drop_last=False))
               for w in (0, 2) for k, s in ((k1, n_set), (k4, big))}
    for loader in loaders.values():  # warm-up: page cache, imports, buffers and slots, and the fork server
        _epoch(loader)  # (started by the loader, with its preloaded modules, before the floor's pool uses it)
    runs: dict[str, list[float]] = {}
    with multiprocessing.get_context("forkserver").Pool(2) as pool:
        _floor(n_set, 2, pool)
        for _ in range(reps):
            for w in (0, 2):
                runs.setdefault(f"floor_{w}", []).append(_floor(n_set, w, pool))
                for k in (k1, k4):
                    main, workers, samples = _epoch(loaders[w, k])
                    assert samples == n * k // k1, (samples, n, k)
                    runs.setdefault(f"loader_{w}_{k}", []).append(main + workers)
                    runs.setdefault(f"main_{w}_{k}", []).append(main)
            for name, ms in _stages(n_set, LoaderConfig(batch_size=8)).items():
                runs.setdefault(f"stage:{name}", []).append(ms)
    return runs


def _marginal(runs: dict[str, list[float]], key: str, n: int, k: tuple[int, int]) -> list[float]:
    """Per repetition, seconds per sample between the N and the 4N epoch of ``key`` (``loader_W`` or ``main_W``)."""
    n4 = n * k[1] // k[0]
    return [(b - s) / (n4 - n) for s, b in zip(runs[f"{key}_{k[0]}"], runs[f"{key}_{k[1]}"])]


def _figures(runs: dict[str, list[float]], w: int, n: int, k: tuple[int, int]) -> dict[str, Any]:
    """Per-sample figures of one worker count: the loader's marginal cost per sample (the 4N epoch less the
    N epoch, over the 3N samples between: start-up and other per-epoch costs cancel), its per-epoch fixed
    cost, and whole-epoch ratios; each ratio within one repetition, then the median."""
    med = statistics.median
    floor = [f / n for f in runs[f"floor_{w}"]]
    small, big = runs[f"loader_{w}_{k[0]}"], runs[f"loader_{w}_{k[1]}"]
    n4 = n * k[1] // k[0]
    marginal, main = _marginal(runs, f"loader_{w}", n, k), _marginal(runs, f"main_{w}", n, k)
    return {
        "main_process_ms_per_sample": round(1e3 * med(main), 3),
        "floor_ms_per_sample": round(1e3 * med(floor), 3),
        "loader_ms_per_sample": round(1e3 * med(marginal), 3),
        "excess_ms_per_sample": round(1e3 * med([m - f for m, f in zip(marginal, floor)]), 3),
        "loader_samples_per_s_per_core": round(1 / med(marginal), 1),
        "ratio_to_floor": round(med([m / f for m, f in zip(marginal, floor)]), 3),
        "ratios": [round(m / f, 3) for m, f in zip(marginal, floor)],
        "fixed_ms_per_epoch": round(1e3 * med([s - n * m for s, m in zip(small, marginal)]), 1),
        "epoch_ratio_to_floor": {str(n): round(med([s / (n * f) for s, f in zip(small, floor)]), 3),
                                 str(n4): round(med([b / (n4 * f) for b, f in zip(big, floor)]), 3)},
    }


def _breakdown(runs: dict[str, list[float]], n: int, k: tuple[int, int]) -> dict[str, float]:
    """Medians over the repetitions of each stage alone, of the rest of the 0-worker loader (its marginal
    cost less the stages, within each repetition) and of what 2 workers add (their marginal less 0 workers')."""
    med = statistics.median
    names = [key.split(":", 1)[1] for key in runs if key.startswith("stage:")]
    loader_0, loader_2 = (_marginal(runs, f"loader_{w}", n, k) for w in (0, 2))
    out = {name: round(med(runs[f"stage:{name}"]), 4) for name in names}
    rest = [1e3 * m - sum(runs[f"stage:{name}"][r] for name in names) for r, m in enumerate(loader_0)]
    out["the rest: batching, colder caches (0 workers' loader less the stages above)"] = round(
        med(rest), 4)
    out["handing batches over with 2 workers (their loader less 0 workers')"] = round(
        1e3 * med([b - a for a, b in zip(loader_0, loader_2)]), 4)
    return out


def measure(work: Path, quick: bool) -> dict[str, Any]:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    base = _build(work, quick)
    copies = (1, 4) if quick else (3, 12)  # N and 4N; N/2 (one of 2 workers) above a worker's shuffle buffer
    sets = {k: _replicate(base, work / f"x{k}", k) for k in copies}
    n = read_json(sets[copies[0]] / "manifest.json")["rows"]
    reps = 2 if quick else 5
    runs = _runs(sets, n, reps)
    cfg = LoaderConfig(batch_size=8)
    result: dict[str, Any] = {
        "dataset": {"pairs_n": n, "pairs_4n": n * copies[1] // copies[0], "stage": 2,
                    "object_size": cfg.object_size, "target_size": cfg.target_size, "batch_size": cfg.batch_size,
                    "repetitions": reps, "note": "a generated 720p YouTube-VOS-layout set paired at 512 px, its "
                    "parts listed several times (hard links): in the full run each of 2 workers gets more than its "
                    "shuffle buffer (256 rows) of the N set, so both epochs reach the steady state"},
        "floor": {"what": "decode object, target (JPEG) and mask (PNG) of every row with the loader's decoders "
                          "into new arrays, nothing else (by batch of 8: objects, then targets, then masks, the "
                          "order the loader decodes in, ~8% faster than row by row here); CPU time, one process "
                          "(0 workers) or two at once (2 workers)"},
        "loader": {"what": "ShardLoader epochs (stage 2, batch 8): CPU time of the main process and its "
                           "DataLoader workers; per sample = the 4N epoch less the N epoch over the 3N samples "
                           "between (start-up cancels, it is given as fixed_ms_per_epoch)"},
        "load_average": load_average(),
    }
    for w in (0, 2):
        result[f"workers_{w}"] = _figures(runs, w, n, copies)
    result["stages_ms_per_sample"] = _breakdown(runs, n, copies)
    memory = {f"workers_{w}": {str(k * n // copies[0]): _peak_rss(s, w) for k, s in sets.items()} for w in (0, 2)}
    growth = max(big[part] / small[part] - 1 for small, big in (tuple(m.values()) for m in memory.values())
                 for part in small)
    result["memory_mib"] = {**memory, "growth_n_to_4n": round(growth, 3),
                            "what": "peak RSS of a fresh process running one epoch ('main'), and the largest RSS "
                                    "its workers reached (read after every batch)"}
    result["gpu_feed"] = _gpu_feed(result["workers_2"]["loader_samples_per_s_per_core"])
    result["targets"] = {"ratio_to_floor": f"<= {TARGET} (0 and 2 workers)",
                         "memory_growth_n_to_4n": f"<= {MEMORY_GROWTH}"}
    result["meets_target"] = {**{f"ratio_workers_{w}": result[f"workers_{w}"]["ratio_to_floor"] <= TARGET
                                 for w in (0, 2)}, "memory_growth": growth <= MEMORY_GROWTH}
    return result
