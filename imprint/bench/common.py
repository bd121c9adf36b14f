"""What the benchmarks share: the machine's description, result writing, peak memory of a child process,
and the data sets several benchmarks build (a YouTube-VOS-layout set ingested, the sample at tiny sizes).

Imports of the stages stay inside the functions: :func:`ingest_ytvos` and :func:`pairs_child` also run
alone in a child process whose peak memory is measured, so the child loads only what the measured job
needs.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def machine_description() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil
        mem_gib = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover
        mem_gib = None
    versions = {}
    for mod in ("numpy", "PIL", "pyarrow", "ray", "cv2", "torch"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing optional module is just not listed
            pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib, "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions}


def write_result(out: Path, name: str, quick: bool, result: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Write ``out/<name>.json``: the benchmark's result with its name, size, date and machine."""
    from imprint.io import write_json_atomic

    result = {"benchmark": name, "quick": quick, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "machine": machine_description(), **result}
    path = out / f"{name}.json"
    write_json_atomic(path, result)
    return path, result


@dataclass(frozen=True)
class Timing:
    """CPU seconds (this process, every thread) and wall seconds of one timed call."""

    cpu: float
    wall: float


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages, rounded: how busy it was beside a figure."""
    return [round(x, 2) for x in os.getloadavg()]


def timed(fn: Callable[[], object]) -> Timing:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return Timing(time.process_time() - c0, time.perf_counter() - w0)


def alternate(floor: Callable[[], object], ours: Callable[[], object], rounds: int = 3) -> tuple[Timing, Timing]:
    """The fastest of ``rounds`` timings of ``floor`` and of ``ours``, run in alternation (floor, ours, floor,
    ...): on a machine other jobs share, both sides see the same load, and the fastest round of each is the
    one least disturbed (the first also pays imports and the page cache)."""
    floors, ours_ = [], []
    for _ in range(rounds):
        floors.append(timed(floor))
        ours_.append(timed(ours))
    return min(floors, key=lambda t: t.cpu), min(ours_, key=lambda t: t.cpu)


def peak_rss_mib(module: str, function: str, *args: str) -> float:
    """Peak RSS (MiB) of a fresh Python process that runs ``module.function(*args)`` (string arguments)."""
    code = ("import importlib, resource, sys; "
            "getattr(importlib.import_module(sys.argv[1]), sys.argv[2])(*sys.argv[3:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    res = subprocess.run([sys.executable, "-c", code, module, function, *args], check=True, capture_output=True,
                         text=True)
    return int(res.stdout.strip().splitlines()[-1]) / 1024.0


def ingest_ytvos(root: str | Path, out: str | Path, limit: int | str) -> None:
    """Ingest the first ``limit`` videos of a YouTube-VOS-layout ``root`` into ``out`` on one core."""
    from imprint.executor import LocalExecutor
    from imprint.ingest.config import IngestConfig
    from imprint.ingest.job import run_ingest

    run_ingest("ytvos", Path(root), Path(out), IngestConfig(groups_per_part=2), LocalExecutor(), limit=int(limit))


def pairs_child(records: str | Path, out: str | Path, n_sources: str, rows: int | str = 64) -> None:
    """Build stage-2 pairs of ``records`` into ``out`` on one core; ``n_sources``: JSON {source: pairs each}."""
    from imprint.executor import LocalExecutor
    from imprint.pairing.config import PairsConfig
    from imprint.pairing.job import run_pairs

    run_pairs(Path(records), Path(out), 2, json.loads(n_sources), PairsConfig(shard_rows=int(rows)),
              LocalExecutor())


def tiny_shards(work: Path) -> Path:
    """The embedded sample, ingested and paired at the tiny models' sizes."""
    from imprint.executor import LocalExecutor
    from imprint.ingest.config import IngestConfig
    from imprint.ingest.job import run_ingest
    from imprint.ingest.sample import generate
    from imprint.pairing.config import PairsConfig
    from imprint.pairing.job import run_pairs

    roots = generate(work / "sample", seed=0, scale=2)
    for source, root in roots.items():
        run_ingest(source, root, work / "data", IngestConfig(split="all" if source == "vipseg" else "train"),
                   LocalExecutor())
    cfg = PairsConfig(resolution=64, object_resolution=56, shard_rows=32, pairs_per_instance=8)
    run_pairs(work / "data" / "records", work / "shards" / "stage2", 2, {"ytvos": 8, "vipseg": 8, "ppr10k": 8}, cfg,
              LocalExecutor())
    return work / "shards" / "stage2"
