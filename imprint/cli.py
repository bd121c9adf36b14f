"""The ``imprint`` command: one subcommand per stage of the flow.

Every entry point is ``main(argv=None)`` so tests call it in-process.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from imprint import __version__

COMING = {
    "pairs": ("#3", "build stage-1 view pairs and stage-2 compositing pairs as Parquet shards"),
    "verify": ("#3", "check every shard against its manifest (hashes, rows, schema, images)"),
    "preview": ("#3", "write an HTML contact sheet of shard samples"),
    "train": ("#5", "train stage 1 (encoder) or stage 2 (compositing generator)"),
    "composite": ("#6", "composite an object into a background with a trained model"),
    "eval": ("#6", "score a model (identity, realism, background, shape) into a report"),
}

EPILOG = """\
The flow: ingest -> pairs -> train -> composite/eval. Run `imprint SUBCOMMAND --help` for one stage.
"""


def _ingest_parser(sub: argparse._SubParsersAction) -> None:
    from imprint.executor import EXECUTORS
    from imprint.ingest.sources import INGEST_SOURCES

    p = sub.add_parser(
        "ingest", help="official dataset layouts -> object records (Parquet)",
        description="Read a source as its owners distribute it (folder or .zip/.tar/.tar.gz archive) and write "
                    "one record per (frame, object instance) to DATA/records/SOURCE/part-NNNNN.parquet, with "
                    "report.json (seen / kept / dropped by reason, failed items, seconds, config). Rerunning "
                    "the same command resumes: finished parts are kept, the rest is redone.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("source", choices=(*INGEST_SOURCES, "sample"),
                   help="which layout to read; 'sample' generates the embedded sample data (every layout) "
                        "from --seed and ingests it")
    p.add_argument("--root", type=Path, help="the extracted folder or the official archive (not for 'sample')")
    p.add_argument("--out", type=Path, required=True, help="the DATA folder; records go to DATA/records/SOURCE/")
    p.add_argument("--limit", type=int, default=None, help="only the first N groups (videos / captures) by id")
    p.add_argument("--workers", type=int, default=None, help="CPUs for a local Ray (default: all cores)")
    p.add_argument("--executor", choices=EXECUTORS, default="ray",
                   help="ray (default; local Ray, or a cluster via --ray-address/RAY_ADDRESS) or local "
                        "(in-process, for tests and debugging); both write identical records")
    p.add_argument("--ray-address", default=None, help="join an existing Ray cluster (default: $RAY_ADDRESS)")
    p.add_argument("--config", type=Path, default=None, help="YAML file of ingest settings (see configs/ingest/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set min_area_frac=0.01 (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="delete DATA/records/SOURCE first")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated sample ('sample' only)")
    p.set_defaults(func=_run_ingest)


def _run_ingest(args: argparse.Namespace) -> int:
    from imprint.config import ConfigError, load_config
    from imprint.executor import make_executor
    from imprint.ingest.base import LayoutError
    from imprint.ingest.config import IngestConfig
    from imprint.ingest.job import IngestError, run_ingest

    try:
        cfg = load_config(IngestConfig, args.config, args.overrides)
    except ConfigError as exc:
        print(f"imprint ingest: {exc}", file=sys.stderr)
        return 2
    if args.source == "sample":
        from imprint.ingest.sample import SOURCES, generate

        roots = generate(args.out / "raw" / "sample", seed=args.seed)
        jobs = [(name, roots[name]) for name in SOURCES]
    else:
        if args.root is None:
            print(f"imprint ingest: --root is required for {args.source} (the extracted folder or archive)",
                  file=sys.stderr)
            return 2
        jobs = [(args.source, args.root)]
    status = 0
    with make_executor(args.executor, args.workers, args.ray_address) as executor:
        for name, root in jobs:
            try:
                run_ingest(name, root, args.out, cfg, executor, limit=args.limit, overwrite=args.overwrite)
            except (LayoutError, IngestError) as exc:
                print(f"imprint ingest {name}: {exc}", file=sys.stderr)
                status = 1
    return status


def _bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks; results to bench/results/*.json",
                       description="Run the benchmarks and write bench/results/<name>.json with the machine's "
                                   "description. Targets are compared in the results, never asserted in tests.")
    p.add_argument("names", nargs="*", default=["ingest"], help="which benchmarks (default: all available)")
    p.add_argument("--out", type=Path, default=Path("bench/results"), help="results folder")
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    p.set_defaults(func=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from imprint.bench import main as bench_main

    argv = [*args.names, "--out", str(args.out)] + (["--quick"] if args.quick else [])
    return bench_main(argv)


def _coming_parser(sub: argparse._SubParsersAction, name: str, issue: str, text: str) -> None:
    p = sub.add_parser(name, help=f"{text} (comes with issue {issue})",
                       description=f"{text}. Not available yet: this command comes with issue {issue}.")
    p.set_defaults(func=lambda args, _n=name, _i=issue: _coming(_n, _i))


def _coming(name: str, issue: str) -> int:
    print(f"imprint {name}: not available yet; it comes with issue {issue}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imprint", description="Build IMPRINT's training data at scale and train its two-stage model.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"imprint {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _ingest_parser(sub)
    for name, (issue, text) in COMING.items():
        _coming_parser(sub, name, issue, text)
    _bench_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
