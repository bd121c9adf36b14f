"""``imprint bench``: benchmarks with their floors, measured in the same run.

Each benchmark is a module of this package with ``measure(work, quick) -> dict``: it builds
its data under ``work`` (a temporary folder), times our code and a floor or baseline on the
same data, and returns the numbers. ``run`` writes each result to
``bench/results/<name>.json`` with the machine's description (:mod:`imprint.bench.common`).
Targets are reported (``meets_target``), never asserted in tests.

- ``ingest``: a generated 720p YouTube-VOS-layout set ingested (record scores included) on one
  core and on Ray, against reading each annotation PNG once and each frame's header (CPU
  seconds, alternating rounds); peak memory for N and 4N frames.
- ``pairs``: stage-2 pairs built on one core with the default filters against decoding each
  input once and encoding each output (CPU seconds, alternating rounds); peak memory for N
  and 4N pairs.
- ``loader``: ``ShardLoader`` with 0 and 2 workers against decoding the same bytes (CPU time per
  sample); stages, peak memory for N and 4N pairs, cores per GPU at an assumed step time.
- ``train``: the trainer's marginal step time against a minimal loop over the same modules.
- ``composite``: one composite against the bare denoising loop.
- ``downloads``: the download layer's ``Fetcher`` against a plain thread-pool httpx fetch;
  segmentation images/s with the tiny random Mask2Former.
- ``render``: Objaverse views rendered per second per core.
- ``quality``: what the quality scores and filters cost in pairs and ingest time, DINOv2 identity
  throughput on the CPU, and the default filters on generated fault sets.
- ``cluster``: scaling from 1 to 2 Ray workers, the driver's peak memory for N and 4N parts, and writing
  to a local S3-compatible server against the local disk.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from imprint.errors import UsageError

BENCHMARKS = ("ingest", "pairs", "loader", "train", "composite", "downloads", "render", "quality", "cluster")

log = logging.getLogger(__name__)

DESCRIPTION = ("Run the benchmarks and write bench/results/<name>.json with the machine's description. Targets are "
               "compared in the results, never asserted in tests.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", default=[],
                   help="which benchmarks: " + ", ".join(BENCHMARKS) + " (default: all)")
    p.add_argument("--out", type=Path, default=Path("bench/results"), help="results folder")
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")


def run(args: argparse.Namespace) -> int:
    from imprint.bench.common import write_result

    names = args.names or list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        raise UsageError(f"unknown benchmark(s) {sorted(unknown)}; available: {', '.join(BENCHMARKS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        measure = importlib.import_module(f"imprint.bench.{name}").measure
        with tempfile.TemporaryDirectory(prefix=f"imprint-bench-{name}-") as tmp:
            result = measure(Path(tmp), args.quick)
        path, result = write_result(args.out, name, args.quick, result)
        print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
        log.info("imprint bench: wrote %s", path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from imprint.cli import run_command

    return run_command("bench", argv)
