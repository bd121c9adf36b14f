"""What the paper's sources cost, from the measured per-core rates: ``python -m imprint.bench.costs [RESULTS]``.

Reads ``RESULTS/{cluster,ingest,pairs,loader,render}.json`` (``imprint bench cluster ingest pairs loader
render``) and prints the Markdown of the ``<!-- BENCH -->`` section of ``docs/cluster.md``: the rates per core,
then core-hours, hours on a cluster and dollars per source. The per-core rates of the table are the
``cluster`` benchmark's CPU-time rates (items per CPU-second: what a core does, whatever else the machine
runs); the wall-clock rates of the single benchmarks are listed beside them with the load they ran under.
The source sizes are the owners' counts (``/work/shared/SOURCES.md``); where a count is not published it is
an estimate, marked so, with how it was made.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The instance price assumed (on-demand, us-east-1, Linux; check the current price): c6i.8xlarge.
INSTANCE = "c6i.8xlarge (32 vCPU, 64 GiB)"
INSTANCE_USD_PER_HOUR = 1.36
CLUSTER_VCPUS = 256  # 8 such instances
STORAGE_USD_PER_GB_MONTH = 0.023  # S3 Standard, first 50 TB


@dataclass(frozen=True)
class Source:
    name: str
    frames: int  # frames (or views, photos) ingested
    views: int  # Objaverse views rendered first
    pairs: int  # pairs built
    stage: int
    sizes: str  # where the counts come from; "est." marks an estimate


SOURCES = (
    Source("MVImgNet", 6_500_000, 0, 219_188 * 8, 1,
           "6.5M frames, 219,188 videos (owners' counts); pairs: 8 per object (paper recipe)"),
    Source("Objaverse", 798_759 * 12, 798_759 * 12, 798_759 * 12, 1,
           "798,759 objects × 12 views (recipe's `--views 12`); pairs: 12 per object"),
    Source("YouTube-VOS 2019 train", 3_471 * 30, 0, 6_459 * 16, 2,
           "3,471 videos, 6,459 objects (owners); frames: est. 30 annotated per video (3-6 s at 6 fps); "
           "pairs: 16 per object"),
    Source("VIPSeg train", 84_750 * 2_806 // 3_536, 0, 2_806 * 10 * 16, 2,
           "84,750 frames over 3,536 videos (paper, unverified) scaled to the 2,806 train videos; pairs: est. "
           "10 objects per video × 16"),
    Source("PPR10K train", 8_875, 0, 1_356 * 4, 2,
           "8,875 photos in 1,356 groups (owners' split); pairs: est. one person per group × 4"),
    Source("SA-V train", 50_583 * 84, 0, 642_036 * 16, 2,
           "50,583 videos, 642,036 masklets (owners); frames: est. 84 per video (about 14 s at 6 fps); pairs: 16 "
           "per masklet; the MP4 decoding before ingest is not measured"),
)


def _read(results: Path, name: str) -> dict[str, Any]:
    path = results / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `imprint bench {name} --out {results}` first")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _fmt(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:,.1f}" if x >= 10 else f"{x:,.2f}"


def rates(results: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Per-core rates: by CPU time (``cluster``) and by wall time on one core (the single benchmarks)."""
    cpu = _read(results, "cluster")["cpu_rates"]
    single = {n: _read(results, n) for n in ("ingest", "pairs", "loader", "render")}
    by_cpu = {"ingest": cpu["ingest_frames"]["per_cpu_second"], "pairs": cpu["pairs_512px"]["per_cpu_second"],
              "loader": cpu["loader_samples"]["per_cpu_second"],
              "render": cpu["render_views_256px"]["per_cpu_second"]}
    by_wall = {"ingest": single["ingest"]["ingest_one_core"]["frames_per_s"],
               "pairs": single["pairs"]["pairs_one_core"]["pairs_per_s_per_core"],
               "loader": single["loader"]["loader_one_core"]["samples_per_s_per_core"],
               "render": single["render"]["views_per_s_per_core"]}
    return by_cpu, by_wall


WHAT = {"ingest": "ingest: frames / s (720p YouTube-VOS layout)",
        "pairs": "pairs: stage-2 pairs / s (512 px target, 224 px object, from 720p)",
        "loader": "loader: samples / s (decode 224 + 512 px, mask level)",
        "render": "render: Objaverse views / s (256 px, pyrender on the CPU, a small textured object)"}


def rates_table(by_cpu: dict[str, float], by_wall: dict[str, float]) -> list[str]:
    lines = ["| per core | per CPU-second (`imprint bench cluster`) | per wall-second, one core (`imprint bench NAME`) |",
             "|---|---|---|"]
    return lines + [f"| {WHAT[k]} | {_fmt(by_cpu[k])} | {_fmt(by_wall[k])} |" for k in by_cpu]


def _core_hours(s: Source, rate: dict[str, float]) -> float:
    return (s.frames / rate["ingest"] + s.views / rate["render"] + s.pairs / rate["pairs"]) / 3600


def cost_table(low: dict[str, float], high: dict[str, float], efficiency: float, bytes_per_pair: float) -> list[str]:
    """Per source: core-hours, hours on the cluster and dollars, each from the faster rates (``low``) to
    the slower (``high``), and the shards' size."""
    usd = INSTANCE_USD_PER_HOUR / 32 / efficiency  # per core-hour of work

    def span(a: float, b: float, unit: str = "") -> str:
        return f"{unit}{_fmt(a)}–{unit}{_fmt(b)}"

    lines = ["| source | stage | frames ingested | views rendered | pairs built | core-hours | minutes on 256 vCPU "
             "| cost | shards |", "|---|---|---|---|---|---|---|---|---|"]
    minutes = 60 / CLUSTER_VCPUS / efficiency
    tot = [0.0, 0.0, 0.0]
    for s in SOURCES:
        a, b = _core_hours(s, low), _core_hours(s, high)
        tb = s.pairs * bytes_per_pair / 1e12
        tot = [tot[0] + a, tot[1] + b, tot[2] + tb]
        lines.append(f"| {s.name} | {s.stage} | {s.frames:,} | {s.views:,} | {s.pairs:,} | {span(a, b)} | "
                     f"{span(a * minutes, b * minutes)} | {span(a * usd, b * usd, '$')} | {_fmt(tb)} TB |")
    lines.append(f"| **all** | | | | | **{span(tot[0], tot[1])}** | **{span(tot[0] * minutes, tot[1] * minutes)}** "
                 f"| **{span(tot[0] * usd, tot[1] * usd, '$')}** | **{_fmt(tot[2])} TB** |")
    lines += ["", "Sizes (estimates marked *est.*):", ""] + [f"- {s.name}: {s.sizes}." for s in SOURCES]
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m imprint.bench.costs [RESULTS] [--efficiency E]``: E replaces the scaling efficiency of
    ``RESULTS/cluster.json`` (e.g. the median over several runs of ``imprint bench cluster``)."""
    parser = argparse.ArgumentParser(prog="python -m imprint.bench.costs", description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="?", type=Path, default=Path("bench/results"))
    parser.add_argument("--efficiency", type=float, default=None)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    results = args.results
    by_cpu, by_wall = rates(results)
    cluster = _read(results, "cluster")
    efficiency = args.efficiency or float(cluster["scaling"]["pairs"]["efficiency"])
    bytes_per_pair = float(cluster["object_storage"]["shard_bytes_per_pair"])
    print("\n".join([*rates_table(by_cpu, by_wall), "",
                      f"efficiency {efficiency}, {bytes_per_pair:.0f} bytes per pair, "
                      f"${INSTANCE_USD_PER_HOUR / 32:.4f} per vCPU-hour", "",
                      *cost_table(by_cpu, by_wall, efficiency, bytes_per_pair)]))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
