"""Cluster benchmark: scaling from 1 to 2 workers, the driver's memory as parts grow, object storage vs disk.

- **Scaling.** A pairs job (512 px shards from 720p frames) and an ingest job, 8+ parts each, on a private
  Ray of 1 and of 2 workers, alternated and repeated: the efficiency is ``T1 / (2 * T2)`` per repeat, the
  median reported. Ray is started and its workers warmed (every module imported) before the clock starts,
  so the times are the job's, not Ray's start-up. The CPU seconds of all the run's processes say what the
  second worker costs in work, which the machine's load does not change.
- **Driver memory.** Peak RSS of the driver process alone (a child that starts its own Ray) for an ingest job
  of N and of 4N parts: only small markers come back to the driver, so it should stay flat.
- **Per-core rates** of ingest, pairs, the loader and rendering, by the CPU time they use.
- **Object storage.** The same pairs job (512 px shards) written to a local S3-compatible server (moto's,
  a child process on 127.0.0.1) and to the local disk, alternated and repeated; then reading those shards
  back with the loader, and raw upload/download throughput. moto is a Python server on this machine: it
  bounds the client's overhead from above (a real store is farther away but faster per request).

The machine may be shared: each ratio is measured within one run, repeats are alternated, medians are
reported with the load average seen.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from imprint.bench.common import load_average, timed



def _median(xs: list[float]) -> float:
    return round(statistics.median(xs), 4)


# --- scaling -----------------------------------------------------------------------------------------------


def _tree_cpu() -> dict[int, float]:
    """CPU seconds (user + system) so far of this process and every process under it (Ray's included)."""
    import psutil

    me = psutil.Process()
    out = {}
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            out[proc.pid] = t.user + t.system
    return out


def _cpu_since(before: dict[int, float]) -> float:
    return sum(t - before.get(pid, 0.0) for pid, t in _tree_cpu().items())


def _scale(job: Callable[[Any, Path], Any], warm: Callable[[Any, Path], Any], work: Path, repeats: int,
           name: str) -> dict[str, Any]:
    """``job(executor, out)`` on a private Ray of 1 and of 2 workers (``--workers 1`` / ``--workers 2``), the
    order alternated per repeat: wall seconds (Ray started and its workers warmed before the clock starts)
    and the CPU seconds every process of the run used meanwhile."""
    from imprint.executor import RayExecutor

    load_before = load_average()
    wall: dict[int, list[float]] = {1: [], 2: []}
    cpu: dict[int, list[float]] = {1: [], 2: []}
    for r in range(repeats):
        for workers in (1, 2) if r % 2 == 0 else (2, 1):
            temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a length limit
            try:
                with RayExecutor(workers=workers, temp_dir=temp) as ex:
                    warm(ex, work / f"warm-{name}")  # every worker process imports the stage
                    out = work / f"scale-{name}-{r}-{workers}"
                    before = _tree_cpu()
                    wall[workers].append(timed(lambda: job(ex, out)).wall)
                    cpu[workers].append(_cpu_since(before))
            finally:
                shutil.rmtree(temp, ignore_errors=True)
                shutil.rmtree(work / f"warm-{name}", ignore_errors=True)
                shutil.rmtree(work / f"scale-{name}-{r}-{workers}", ignore_errors=True)
    effs = [a / (2 * b) for a, b in zip(wall[1], wall[2])]
    cpu_ratio = [b / a for a, b in zip(cpu[1], cpu[2])]
    return {"repeats": repeats, "seconds_1_worker": [round(t, 3) for t in wall[1]],
            "seconds_2_workers": [round(t, 3) for t in wall[2]],
            "median_seconds_1_worker": _median(wall[1]), "median_seconds_2_workers": _median(wall[2]),
            "efficiency_per_repeat": [round(e, 3) for e in effs], "efficiency": _median(effs),
            "cpu_seconds_1_worker": [round(t, 3) for t in cpu[1]], "cpu_seconds_2_workers": [round(t, 3) for t in cpu[2]],
            "cpu_2_over_1": _median(cpu_ratio),
            "load_average_before_after": [load_before, load_average()]}


def _scaling(root: Path, records: Path, small: Path, work: Path, repeats: int) -> dict[str, Any]:
    """Pairs (the heavy stage: 512 px shards) and ingest of the same 720p set, each with 8+ parts."""
    from imprint.ingest.config import IngestConfig
    from imprint.ingest.job import plan_ingest, run_plan
    from imprint.pairing.config import PairsConfig
    from imprint.pairing.job import run_pairs

    pcfg, sources = PairsConfig(shard_rows=16), {"ytvos": 8}
    warm_cfg = PairsConfig(shard_rows=2)  # several small parts: every worker process imports the stage
    pairs = _scale(lambda ex, out: run_pairs(records, out, 2, sources, pcfg, ex),
                   lambda ex, out: run_pairs(small, out, 2, sources, warm_cfg, ex), work, repeats, "pairs")
    shards = 0
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        from imprint.executor import LocalExecutor

        report = run_pairs(records, Path(tmp), 2, sources, pcfg, LocalExecutor())
        shards, n_pairs = len(list(Path(tmp).glob("part-*.parquet"))), report["kept"]
    icfg = IngestConfig(groups_per_part=2)
    plan = plan_ingest("ytvos", root, work, icfg)
    warm = plan_ingest("ytvos", root, work, icfg, limit=4)
    ingest = _scale(lambda ex, out: run_plan(plan, out, ex), lambda ex, out: run_plan(warm, out, ex), work,
                    repeats, "ingest")
    frames = sum(len(g.frames) for g in plan.groups)
    return {
        "pairs": {"job": "pairs, stage 2 at 512 px from 1280x720 frames", "parts": shards, "pairs": n_pairs,
                  **pairs, "pairs_per_s_2_workers": round(n_pairs / pairs["median_seconds_2_workers"], 2)},
        "ingest": {"job": "ingest, YouTube-VOS layout at 1280x720", "parts": -(-len(plan.groups) // 2),
                   "frames": frames, **ingest,
                   "frames_per_s_2_workers": round(frames / ingest["median_seconds_2_workers"], 2)},
        "how": "a private Ray of 1 and of 2 workers (--workers 1 / 2), started and warmed (a small job of "
               "several parts) before the clock starts, the order alternated per repeat; efficiency = T1 / (2 T2) "
               "per repeat, median reported; the driver's planning and report are inside the times. cpu_2_over_1: "
               "CPU seconds of every process of the run (driver, Ray, workers) with 2 workers over 1: the work "
               "parallelism adds, whatever the machine's load",
    }


# --- driver memory -----------------------------------------------------------------------------------------


def drive(root: str, out: str, limit: str) -> None:
    """Child process: ingest the first ``limit`` videos of ``root`` (one per part) on a private Ray of 2 CPUs;
    prints JSON: the driver's RSS once Ray has started, and its peak RSS while the job runs (sampled every
    20 ms) and overall (``ru_maxrss``), in MiB."""
    import json
    import resource
    import threading

    import psutil

    from imprint.executor import RayExecutor
    from imprint.ingest.config import IngestConfig
    from imprint.ingest.job import run_ingest

    me = psutil.Process()
    with RayExecutor(workers=2, temp_dir=tempfile.mkdtemp(prefix="ray", dir="/tmp")) as ex:
        started = me.memory_info().rss
        peak, done = [started], threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                peak[0] = max(peak[0], me.memory_info().rss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        run_ingest("ytvos", Path(root), Path(out), IngestConfig(groups_per_part=1), ex, limit=int(limit))
        done.set()
        sampler.join()
        peak[0] = max(peak[0], me.memory_info().rss)
    print(json.dumps({"rss_after_ray_start_mib": started / 2**20, "peak_during_job_mib": peak[0] / 2**20,
                      "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _driver_memory(work: Path, n: int) -> dict[str, Any]:
    import json

    from imprint.ingest.sample import generate_ytvos

    root = generate_ytvos(work / "many", seed=1, n_videos=4 * n, n_frames=3, size=(320, 180))
    seen: dict[int, dict[str, float]] = {}
    for parts in (n, 4 * n):
        with tempfile.TemporaryDirectory(dir=work) as out:
            code = "import sys; from imprint.bench.cluster import drive; drive(*sys.argv[1:])"
            res = subprocess.run([sys.executable, "-c", code, str(root), out, str(parts)], check=True,
                                 capture_output=True, text=True)
            seen[parts] = json.loads(res.stdout.strip().splitlines()[-1])
    a, b = seen[n], seen[4 * n]
    growth = b["peak_during_job_mib"] / a["peak_during_job_mib"] - 1.0
    job_n = a["peak_during_job_mib"] - a["rss_after_ray_start_mib"]
    job_4n = b["peak_during_job_mib"] - b["rss_after_ray_start_mib"]
    return {"parts_n": n, "parts_4n": 4 * n,
            "peak_rss_mib_n": round(a["peak_during_job_mib"], 1), "peak_rss_mib_4n": round(b["peak_during_job_mib"], 1),
            "growth": round(growth, 3),
            "job_adds_mib_n": round(job_n, 1), "job_adds_mib_4n": round(job_4n, 1),
            "ru_maxrss_mib_n": round(a["ru_maxrss_mib"], 1), "ru_maxrss_mib_4n": round(b["ru_maxrss_mib"], 1),
            "how": "the driver process alone (a child that starts a private Ray of 2 CPUs and ingests one video per "
                   "part): its RSS once Ray has started, then its peak while the job runs (sampled every 20 ms); "
                   "Ray's own processes are not counted"}


# --- object storage ----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server in a child process on 127.0.0.1 and a free port; the environment points at it (and is
    restored after). Yields its URL."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("moto's S3 server did not start")
            time.sleep(0.1)
        os.environ.update(env)
        yield env["AWS_ENDPOINT_URL"]
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(timeout=10)


def _throughput(base: Any, mib: int) -> dict[str, float]:
    """MiB/s writing (whole-object) and reading back ``mib`` MiB in 4 files under ``base``."""
    from imprint.io import write_bytes_atomic

    data = os.urandom(mib * 2**20 // 4)
    files = [base / f"blob-{i}.bin" for i in range(4)]

    def write() -> None:
        for f in files:
            write_bytes_atomic(f, data)

    w = timed(write).wall
    r = timed(lambda: [f.read_bytes() for f in files]).wall
    return {"write_mib_per_s": round(mib / w, 1), "read_mib_per_s": round(mib / r, 1)}


def _loader_rate(shards: Any) -> float:
    from imprint.shards.loader import LoaderConfig, ShardStream

    stream = ShardStream(shards, LoaderConfig(object_size=224, target_size=512, shuffle_buffer=16))
    t0 = time.perf_counter()
    n = sum(1 for _ in stream)
    return n / (time.perf_counter() - t0)


def _storage(records: Path, work: Path, repeats: int, mib: int) -> dict[str, Any]:
    try:
        import moto.server  # noqa: F401 - only to say it is missing
    except ImportError:
        return {"skipped": "moto[server] is not installed (pip install -e '.[dev]')"}
    import pyarrow.fs as pafs

    from imprint.executor import LocalExecutor
    from imprint.pairing.config import PairsConfig
    from imprint.pairing.job import run_pairs
    from imprint.storage import Location

    cfg = PairsConfig(shard_rows=16, row_group_rows=8)
    sources = {"ytvos": 4}
    load_before = load_average()
    with s3_server() as url:
        pafs.S3FileSystem(endpoint_override=url, allow_bucket_creation=True).create_dir("bench")
        local_t: list[float] = []
        s3_t: list[float] = []
        rows = 0
        run_pairs(records, work / "shards-warm", 2, sources, cfg, LocalExecutor())  # imports, caches
        for r in range(repeats):
            order = (("disk", local_t), ("s3", s3_t)) if r % 2 == 0 else (("s3", s3_t), ("disk", local_t))
            for where, times in order:
                out: Any = work / f"shards-{r}" if where == "disk" else Location(f"s3://bench/shards-{r}")
                t0 = time.perf_counter()
                report = run_pairs(records, out, 2, sources, cfg, LocalExecutor())
                times.append(time.perf_counter() - t0)
                rows = report["kept"]
        disk_shards, s3_shards = work / "shards-0", Location("s3://bench/shards-0")
        nbytes = sum(p.stat().st_size for p in disk_shards.glob("part-*.parquet"))
        loader_disk = [_loader_rate(disk_shards) for _ in range(2)]
        loader_s3 = [_loader_rate(s3_shards) for _ in range(2)]
        disk_io = _throughput(Location(work), mib)
        s3_io = _throughput(Location("s3://bench/blobs"), mib)
    ratios = [s / d for s, d in zip(s3_t, local_t)]
    return {
        "job": "pairs, stage 2 at 512 px, local executor (one core)", "pairs": rows,
        "shard_bytes_per_pair": round(nbytes / max(rows, 1)), "repeats": repeats,
        "seconds_disk": [round(t, 3) for t in local_t], "seconds_s3": [round(t, 3) for t in s3_t],
        "median_seconds_disk": _median(local_t), "median_seconds_s3": _median(s3_t),
        "s3_over_disk_per_repeat": [round(x, 3) for x in ratios], "s3_over_disk": _median(ratios),
        "loader_samples_per_s_disk": round(statistics.median(loader_disk), 1),
        "loader_samples_per_s_s3": round(statistics.median(loader_s3), 1),
        "raw_io_mib": mib, "raw_io_disk": disk_io, "raw_io_s3": s3_io,
        "server": "moto (Python) in a child process on 127.0.0.1: a floor on a real store's speed per request",
        "load_average_before_after": [load_before, load_average()],
    }


# --- per-core rates by CPU time ------------------------------------------------------------------------------


def _cpu(fn: Callable[[], int], repeats: int) -> dict[str, float]:
    """Items per CPU-second and per wall-second of ``fn`` (returns its item count) in this process, medians."""
    per_cpu, per_wall, counts = [], [], []
    for _ in range(repeats):
        t = timed(lambda: counts.append(fn()))
        n = counts[-1]
        per_cpu.append(n / t.cpu)
        per_wall.append(n / t.wall)
    return {"items": n, "per_cpu_second": round(statistics.median(per_cpu), 2),
            "per_wall_second": round(statistics.median(per_wall), 2)}


def _cpu_rates(root: Path, work: Path, repeats: int, objects: int) -> dict[str, Any]:
    """What one core does per second, by the CPU time of this process (all its threads): on a shared machine
    wall-clock rates fall with the load, CPU-time rates much less. One thread each (OpenCV, torch, llvmpipe)."""
    import cv2
    import numpy as np
    import torch

    from imprint.executor import LocalExecutor
    from imprint.ingest.config import IngestConfig
    from imprint.ingest.job import run_ingest
    from imprint.ingest.render import RenderConfig, demo_object, render_views
    from imprint.pairing.config import PairsConfig
    from imprint.pairing.job import run_pairs
    from imprint.shards.loader import LoaderConfig, ShardStream

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    counter = iter(range(10**6))

    def ingest() -> int:
        return int(run_ingest("ytvos", root, work / f"rate-i{next(counter)}", IngestConfig(groups_per_part=2),
                              LocalExecutor())["frames"])

    def pairs() -> int:
        out = work / f"rate-p{next(counter)}"
        return int(run_pairs(work / "data" / "records", out, 2, {"ytvos": 4}, PairsConfig(shard_rows=64),
                             LocalExecutor())["kept"])

    ingest(), pairs()  # imports and caches
    rates = {"ingest_frames": _cpu(ingest, repeats), "pairs_512px": _cpu(pairs, repeats)}
    shards = work / f"rate-p{next(counter) - 1}"
    stream = ShardStream(shards, LoaderConfig(object_size=224, target_size=512, shuffle_buffer=16))
    rates["loader_samples"] = _cpu(lambda: sum(1 for _ in stream), repeats)
    glb = work / "rate-sphere.glb"
    demo_object("sphere").export(str(glb))
    rcfg = RenderConfig(views=12, size=256, gl_threads=1)
    render_views(glb, rcfg, np.random.default_rng(0))  # context, shaders

    def render() -> int:
        return sum(len(render_views(glb, rcfg, np.random.default_rng(i))) for i in range(objects))

    rates["render_views_256px"] = _cpu(render, repeats)
    return {**rates, "how": "items / CPU-seconds of this process (time.process_time), one thread each; ingest: "
                            "720p YouTube-VOS layout; pairs: stage 2 at 512 px (object 224 px) from 720p; loader: "
                            "ShardStream decoding object 224 px + target and mask 512 px; render: a 1.3k-face "
                            "textured sphere, 12 views at 256 px (real Objaverse objects are heavier)",
            "load_average": load_average()}


def measure(work: Path, quick: bool) -> dict[str, Any]:
    from imprint.executor import LocalExecutor
    from imprint.ingest.config import IngestConfig
    from imprint.ingest.job import run_ingest
    from imprint.ingest.sample import generate_ytvos

    n_videos, n_frames, repeats = (8, 4, 1) if quick else (16, 20, 5)
    root = generate_ytvos(work / "ytvos720", seed=0, n_videos=n_videos, n_frames=n_frames, size=(1280, 720))
    cfg = IngestConfig(groups_per_part=2)
    run_ingest("ytvos", root, work / "data", cfg, LocalExecutor())
    run_ingest("ytvos", root, work / "small", cfg, LocalExecutor(), limit=2)
    records, small = work / "data" / "records", work / "small" / "records"
    scaling = _scaling(root, records, small, work, repeats)
    memory = _driver_memory(work, 4 if quick else 16)
    storage = _storage(records, work, 1 if quick else 3, 16 if quick else 64)
    rates = _cpu_rates(root, work, 1 if quick else 3, 2 if quick else 10)
    return {
        "machine_load_note": "the machine is shared with other sessions: see each section's load averages",
        "scaling": scaling, "driver_memory": memory, "object_storage": storage, "cpu_rates": rates,
        "targets": {"scaling_efficiency": ">= 0.8", "driver_memory_growth_n_to_4n": "<= 0.20"},
        "meets_target": {"scaling_efficiency_pairs": scaling["pairs"]["efficiency"] >= 0.8,
                         "driver_memory": memory["growth"] <= 0.20},
    }
