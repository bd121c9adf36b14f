"""Downloads benchmark: the download layer's :class:`~imprint.ingest.download.Fetcher` against a plain
thread-pool httpx fetch of the same files, same server, same run; and segmentation images/s with the tiny
random Mask2Former (:func:`imprint.ingest.segment.save_tiny_mask2former`)."""

from __future__ import annotations

import contextlib
import http.server
import shutil
import socketserver
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from imprint.ingest.download import DownloadConfig, DownloadError, Fetcher
from imprint.ingest.segment import SegmentConfig, Segmenter, save_tiny_mask2former


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (a free port) in a thread; yields the base URL."""

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 256

    def handler(*a: Any, **k: Any) -> _QuietHandler:
        return _QuietHandler(*a, directory=str(directory), **k)

    server = Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _baseline_fetch(urls: list[str], out: Path, workers: int) -> float:
    """Plain concurrent httpx: one shared client, a thread pool, each body written whole."""
    out.mkdir(parents=True, exist_ok=True)

    def one(args: tuple[int, str], client: httpx.Client) -> None:
        i, url = args
        r = client.get(url)
        r.raise_for_status()
        (out / f"{i}.bin").write_bytes(r.content)

    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    with httpx.Client(limits=limits, timeout=30.0) as client:
        t0 = time.perf_counter()  # like Fetcher.fetch_many: the pool's start and shutdown are timed
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda a: one(a, client), enumerate(urls)))
        return time.perf_counter() - t0


def _ours_fetch(urls: list[str], out: Path, workers: int) -> float:
    cfg = DownloadConfig(concurrency=workers, per_host=workers, timeout=30.0)
    with Fetcher(cfg) as fetcher:
        jobs = [(str(i), url, out / f"{i}.bin", None) for i, url in enumerate(urls)]
        t0 = time.perf_counter()
        sts = fetcher.fetch_many(jobs)
        seconds = time.perf_counter() - t0
    bad = [s for s in sts if s.status != "ok"]
    if bad:
        raise DownloadError(f"benchmark fetch failed: {bad[0].status}: {bad[0].error}")
    return seconds


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
    """N files of 256 KiB are served from 127.0.0.1; both clients use the same number of threads
    (``concurrency``). Each is run 5 times alternately (fresh output folders, so nothing is cached) and
    the best time kept."""
    n_files, size, workers = (100, 256 * 1024, 16) if quick else (200, 256 * 1024, 32)
    work = Path(work)
    serve = work / "serve"
    serve.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n_files):
        (serve / f"{i:05d}.bin").write_bytes(rng.bytes(size))
    with serve_directory(serve) as base:
        urls = [f"{base}/{i:05d}.bin" for i in range(n_files)]
        _baseline_fetch(urls[:8], work / "warm-a", workers)  # warm-up: imports, page cache, server threads
        _ours_fetch(urls[:8], work / "warm-b", workers)
        base_s, ours_s = [], []
        for rep in range(5):
            base_s.append(_baseline_fetch(urls, work / f"base-{rep}", workers))
            ours_s.append(_ours_fetch(urls, work / f"ours-{rep}", workers))
            shutil.rmtree(work / f"base-{rep}", ignore_errors=True)
            shutil.rmtree(work / f"ours-{rep}", ignore_errors=True)
    b, o = min(base_s), min(ours_s)
    ratio = o / b
    seg = _segmentation(work, quick)
    return {
        "dataset": {"files": n_files, "bytes_each": size, "server": "http.server (threaded) on 127.0.0.1",
                    "concurrency": workers},
        "baseline": {"what": "httpx.Client + ThreadPoolExecutor of the same size, whole bodies written",
                     "seconds": round(b, 4), "items_per_s": round(n_files / b, 1),
                     "mib_per_s": round(n_files * size / 2**20 / b, 1)},
        "fetcher": {"what": "Fetcher.fetch_many: per-host limit, .part + rename, size check, retries armed",
                    "seconds": round(o, 4), "items_per_s": round(n_files / o, 1),
                    "mib_per_s": round(n_files * size / 2**20 / o, 1)},
        "ratio_to_baseline": round(ratio, 3),
        "segmentation": seg,
        "targets": {"ratio_to_baseline": "<= 1.2"},
        "meets_target": {"ratio_to_baseline": ratio <= 1.2},
    }
