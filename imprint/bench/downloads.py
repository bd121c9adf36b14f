"""Downloads benchmark: the download layer against a plain concurrent httpx pool, same server, same files, same
concurrency; and segmentation images/s with the tiny random Mask2Former
(:func:`imprint.ingest.segment.save_tiny_mask2former`).

Three ways to fetch the same N files are timed, interleaved (a rotation of the order in every round), after a
warm-up of each:

- ``floor``: one ``httpx.Client`` (made before the timing) shared by a ``ThreadPoolExecutor`` of
  ``concurrency`` threads, each body read whole and written to its final name (no ``.part``, no size or
  status checks, no retries, no ledger);
- ``fetcher``: :meth:`Fetcher.fetch_many` with the same concurrency (per-host limit, ``.part`` + atomic
  rename, size check, cache check, retries armed), one ``Fetcher``;
- ``job``: what a downloaded source runs: :func:`~imprint.ingest.ledger.run_items` over the items in chunks
  of ``CHUNK`` (128) on the local executor, each chunk a ``Fetcher`` and a ledger part and marker, then ``report.json``.

Before each timing the process's shared client is closed, so ours makes its client and opens its
connections inside the timing, as the floor opens its connections.

The server is a separate process (a threaded ``http.server`` with HTTP/1.1 keep-alive, as CDNs serve), so
the client's CPU time per item is measured on its own, and the server's work never holds the client's GIL.
Each round gives a ratio to the floor; the result has the median and the spread over the rounds, the
client's CPU per item for each way, and the machine's load before and after.
"""

from __future__ import annotations

import contextlib
import http.server
import resource
import shutil
import socketserver
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from imprint.bench.common import load_average
from imprint.executor import LocalExecutor
from imprint.ingest.download import DownloadConfig, DownloadError, Fetcher, ItemStatus, close_shared_clients
from imprint.ingest.segment import SegmentConfig, Segmenter, save_tiny_mask2former

TARGET = 1.1
CHUNK = 128  # two chunks per job run (the sources use 32-256): the second reuses the first one's connections
WAYS = ("floor", "fetcher", "job")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as CDNs serve; every reply carries its Content-Length

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # the default 5 drops SYNs when 32 clients connect at once: 1 s stalls


def serve_main(argv: Sequence[str] | None = None) -> int:
    """Serve the folder ``argv[0]`` on 127.0.0.1 (a free port) until killed; prints the base URL first."""
    directory = (list(argv) if argv is not None else sys.argv[1:])[0]

    def handler(*a: Any, **k: Any) -> _QuietHandler:
        return _QuietHandler(*a, directory=directory, **k)

    server = _Server(("127.0.0.1", 0), handler)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
    return 0


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 from a child process; yields the base URL, stops it after."""
    proc = subprocess.Popen([sys.executable, "-m", "imprint.bench.downloads", str(directory)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://"):
            raise DownloadError(f"the benchmark's file server did not start (exit code {proc.poll()})")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --------------------------------------------------------------------------------------------- the three ways


@dataclass(frozen=True)
class _Item:
    item_id: str
    url: str
    dest: str


@dataclass(frozen=True)
class _FetchStep:
    """The plainest ledger step: fetch a chunk's items with one :class:`Fetcher`."""

    cfg: DownloadConfig

    def __call__(self, items: Sequence[_Item]) -> list[ItemStatus]:
        with Fetcher(self.cfg) as fetcher:
            return fetcher.fetch_many([(it.item_id, it.url, it.dest, None) for it in items])


def _floor(urls: list[str], out: Path, workers: int) -> Callable[[], None]:
    """Plain concurrent httpx: one shared client (made before the timing), a thread pool, bodies written whole."""
    out.mkdir(parents=True, exist_ok=True)
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    client = httpx.Client(limits=limits, timeout=30.0)

    def one(args: tuple[int, str]) -> None:
        i, url = args
        r = client.get(url)
        r.raise_for_status()
        (out / f"{i:05d}.bin").write_bytes(r.content)

    def run() -> None:
        try:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(one, enumerate(urls)))
        finally:
            client.close()
    return run


def _config(workers: int) -> DownloadConfig:
    return DownloadConfig(concurrency=workers, per_host=workers, timeout=30.0)


def _fetcher(urls: list[str], out: Path, workers: int) -> Callable[[], None]:
    """:meth:`Fetcher.fetch_many` over all the files, with one Fetcher."""
    jobs = [(f"{i:05d}", url, out / f"{i:05d}.bin", None) for i, url in enumerate(urls)]

    def run() -> None:
        with Fetcher(_config(workers)) as fetcher:
            fetcher.fetch_many(jobs)
        close_shared_clients()  # as the floor closes its client and run_items its clients: in the timing
    return run


def _job(urls: list[str], out: Path, workers: int) -> Callable[[], None]:
    """:func:`run_items` over the items with a fetch step: chunks, a Fetcher per chunk, the ledger, the report."""
    from imprint.ingest.ledger import run_items

    items = [_Item(f"{i:05d}", url, str(out / f"{i:05d}.bin")) for i, url in enumerate(urls)]

    def run() -> None:
        report = run_items(items, out / "ledger", _FetchStep(_config(workers)), LocalExecutor(), CHUNK,
                           label="bench")
        if report["counts"] != {"ok": len(items)}:
            raise DownloadError(f"benchmark fetch failed: {report['counts']}, {report['failures'][:1]}")
    return run


def _check(out: Path, n: int, size: int) -> None:
    """Each way must leave the same result: ``n`` whole files under their final names, nothing else."""
    files = sorted(out.glob("*.bin"))
    if len(files) != n or any(f.stat().st_size != size for f in files) or list(out.glob("*.part")):
        raise DownloadError(f"benchmark fetch into {out} left {len(files)} of {n} files, or a wrong size, or .part")


WAY_FNS = {"floor": _floor, "fetcher": _fetcher, "job": _job}


def _timed(way: str, urls: list[str], out: Path, workers: int, size: int) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one fetch of ``urls`` into the empty folder ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    close_shared_clients()  # ours makes its client and opens its connections in the timing, as the floor does
    run = WAY_FNS[way](urls, out, workers)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    run()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    _check(out, len(urls), size)
    shutil.rmtree(out, ignore_errors=True)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


# --------------------------------------------------------------------------------------------- measure


def _rounds(urls: list[str], work: Path, workers: int, rounds: int,
            size: int) -> dict[str, list[tuple[float, float]]]:
    """``rounds`` timings of each way, the order rotated every round (after a warm-up of each way)."""
    import logging

    ledger_log = logging.getLogger("imprint.ingest.ledger")
    level = ledger_log.level
    ledger_log.setLevel(logging.WARNING)  # two info lines per job run would go into the timing
    try:
        for way in WAYS:  # warm-up: imports, page cache, the server's threads, TLS/SSL set-up
            _timed(way, urls[: max(8, len(urls) // 4)], work / f"warm-{way}", workers, size)
        times: dict[str, list[tuple[float, float]]] = {w: [] for w in WAYS}
        for r in range(rounds):
            for k in range(len(WAYS)):
                way = WAYS[(r + k) % len(WAYS)]
                times[way].append(_timed(way, urls, work / f"{way}-{r}", workers, size))
    finally:
        ledger_log.setLevel(level)
    return times


@dataclass(frozen=True)
class _DoneStep:
    """A ledger step that fetches nothing: every item ``ok`` at once (the ledger's own cost, alone)."""

    nbytes: int

    def __call__(self, items: Sequence[_Item]) -> list[ItemStatus]:
        now = time.time()
        return [ItemStatus(it.item_id, it.url, "ok", None, 1, self.nbytes, it.dest, 0.001, now) for it in items]


def _ledger_only(work: Path, n: int, size: int, rounds: int) -> dict[str, Any]:
    """:func:`run_items` with :class:`_DoneStep` over ``n`` items: planning, a ledger part and marker per chunk,
    reading the ledger back and the report, per item; and a rerun over the finished ledger (nothing to do)."""
    from imprint.ingest.ledger import run_items

    items = [_Item(f"{i:05d}", f"http://127.0.0.1/{i:05d}.bin", str(work / f"{i:05d}.bin")) for i in range(n)]
    first: list[float] = []
    rerun: list[float] = []
    for r in range(rounds):
        root = work / f"ledger-{r}"
        for out in (first, rerun):
            t0 = time.perf_counter()
            run_items(items, root, _DoneStep(size), LocalExecutor(), CHUNK, label="bench")
            out.append(time.perf_counter() - t0)
        shutil.rmtree(root, ignore_errors=True)
    return {"items": n, "chunk": CHUNK, "us_per_item": round(statistics.median(first) / n * 1e6, 1),
            "rerun_us_per_item": round(statistics.median(rerun) / n * 1e6, 1)}


def _summary(values: Sequence[float], digits: int = 3) -> dict[str, Any]:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "runs": [round(v, digits) for v in values]}


def _segmentation(work: Path, quick: bool) -> dict[str, Any]:
    path = save_tiny_mask2former(work / "tiny-m2f", seed=0)
    seg = Segmenter.from_pretrained(str(path), SegmentConfig(), device="cpu")
    rng = np.random.default_rng(0)
    n = 10 if quick else 40
    images = [(rng.random((480, 640, 3)) * 255).astype(np.uint8) for _ in range(n)]
    seg.segment(images[0])  # warm-up
    t0 = time.perf_counter()
    for im in images:
        seg.segment(im)
    s = time.perf_counter() - t0
    return {"model": "tiny random Mask2Former (1.3 M params; plumbing speed, not a real model's)",
            "image_size": [640, 480], "images": n, "threads": 1, "seconds": round(s, 4),
            "images_per_s": round(n / s, 2)}


def measure(work: Path, quick: bool) -> dict[str, Any]:
    """N files of 256 KiB served from 127.0.0.1 by a child process, fetched by the floor, the fetcher and the
    job with the same concurrency, in ``rounds`` interleaved rounds; ratios to the floor per round."""
    n_files, size, workers, rounds = (64, 256 * 1024, 16, 3) if quick else (256, 256 * 1024, 16, 30)
    work = Path(work)
    serve = work / "serve"
    serve.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n_files):
        (serve / f"{i:05d}.bin").write_bytes(rng.bytes(size))
    load_before = load_average()
    with serve_directory(serve) as base:
        times = _rounds([f"{base}/{i:05d}.bin" for i in range(n_files)], work, workers, rounds, size)
    load_after = load_average()
    walls = {w: [t[0] for t in times[w]] for w in WAYS}
    cpus = {w: [t[1] for t in times[w]] for w in WAYS}
    ratios = {w: [o / f for o, f in zip(walls[w], walls["floor"])] for w in ("fetcher", "job")}
    cpu_ratios = {w: [o / f for o, f in zip(cpus[w], cpus["floor"])] for w in ("fetcher", "job")}
    med = {w: statistics.median(walls[w]) for w in WAYS}
    cpu_us = {w: statistics.median(cpus[w]) / n_files * 1e6 for w in WAYS}
    wall_us = {w: med[w] / n_files * 1e6 for w in WAYS}
    ways: dict[str, Any] = {
        "floor": "httpx.Client + ThreadPoolExecutor of the same size, each body read whole and written to its name",
        "fetcher": "Fetcher.fetch_many: per-host limit, .part + atomic rename, size check, cache check, retries armed",
        "job": f"run_items over chunks of {CHUNK}: a Fetcher per chunk, ledger part + marker per chunk, report.json",
    }
    result: dict[str, Any] = {
        "dataset": {"files": n_files, "bytes_each": size, "concurrency": workers, "rounds": rounds,
                    "server": "http.server (threaded, HTTP/1.1 keep-alive) in a child process on 127.0.0.1",
                    "order": "warm-up of each way, then rounds with the order rotated (floor/fetcher/job, "
                             "fetcher/job/floor, …)"},
        "machine_load": {"loadavg_before": load_before, "loadavg_after": load_after},
    }
    for w in WAYS:
        result[w] = {"what": ways[w], "seconds": _summary(walls[w], 4), "client_cpu_seconds": _summary(cpus[w], 4),
                     "items_per_s": round(n_files / med[w], 1), "mib_per_s": round(n_files * size / 2**20 / med[w], 1),
                     "wall_us_per_item": round(wall_us[w], 1), "client_cpu_us_per_item": round(cpu_us[w], 1)}
    result["ratio_to_baseline"] = {w: _summary(ratios[w]) for w in ("fetcher", "job")}
    result["client_cpu_ratio_to_baseline"] = {w: _summary(cpu_ratios[w]) for w in ("fetcher", "job")}
    result["per_item_cost_us"] = {
        "floor_client_cpu": round(cpu_us["floor"], 1),
        "fetcher_over_floor": {"wall": round(wall_us["fetcher"] - wall_us["floor"], 1),
                               "client_cpu": round(cpu_us["fetcher"] - cpu_us["floor"], 1)},
        "ledger_and_chunks_over_fetcher": {"wall": round(wall_us["job"] - wall_us["fetcher"], 1),
                                           "client_cpu": round(cpu_us["job"] - cpu_us["fetcher"], 1)},
    }
    result["per_item_cost_us"]["ledger_alone"] = _ledger_only(work, n_files, size, rounds)
    result["segmentation"] = _segmentation(work, quick)
    result["targets"] = {"ratio_to_baseline": f"<= {TARGET} (median over the rounds, fetcher and job)"}
    result["meets_target"] = {"ratio_to_baseline": all(statistics.median(ratios[w]) <= TARGET
                                                       for w in ("fetcher", "job"))}
    return result


if __name__ == "__main__":
    raise SystemExit(serve_main())
