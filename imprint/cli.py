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


EPILOG = """\
The flow: ingest -> pairs -> train -> composite/eval. Run `imprint SUBCOMMAND --help` for one stage.
"""


def _executor_args(p: argparse.ArgumentParser) -> None:
    from imprint.executor import EXECUTORS

    p.add_argument("--executor", choices=EXECUTORS, default="ray",
                   help="ray (default; local Ray, or a cluster via --ray-address/RAY_ADDRESS) or local "
                        "(in-process, for tests and debugging); both write identical outputs")
    p.add_argument("--workers", type=int, default=None, help="CPUs for a local Ray (default: all cores)")
    p.add_argument("--ray-address", default=None, help="join an existing Ray cluster (default: $RAY_ADDRESS)")


def _ingest_parser(sub: argparse._SubParsersAction) -> None:
    from imprint.ingest.sources import INGEST_SOURCES

    p = sub.add_parser(
        "ingest", help="official dataset layouts -> object records (Parquet)",
        description="Read a source as its owners distribute it (folder or .zip/.tar/.tar.gz archive) and write "
                    "one record per (frame, object instance) to DATA/records/SOURCE/part-NNNNN.parquet, with "
                    "report.json (seen / kept / dropped by reason, failed items, seconds, config). Rerunning "
                    "the same command resumes: finished parts are kept, the rest is redone.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("source", nargs="?", choices=(*INGEST_SOURCES, "sample"),
                   help="which layout to read; 'sample' generates the embedded sample data (every layout) "
                        "from --seed and ingests it; omit it with --recipe")
    p.add_argument("--recipe", type=Path, default=None,
                   help="a data recipe (configs/data/*.yaml): ingest every source it lists, with its root")
    p.add_argument("--root", type=Path, help="the extracted folder or the official archive (not for 'sample')")
    p.add_argument("--out", type=Path, required=True, help="the DATA folder; records go to DATA/records/SOURCE/")
    p.add_argument("--limit", type=int, default=None, help="only the first N groups (videos / captures) by id")
    _executor_args(p)
    p.add_argument("--config", type=Path, default=None, help="YAML file of ingest settings (see configs/ingest/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set min_area_frac=0.01 (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="delete DATA/records/SOURCE first")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated sample and of the renders")
    remote = p.add_argument_group("downloaded sources (objaverse, pixabay, urls) and SA-V")
    remote.add_argument("--retry-failed", action="store_true", help="retry the items that failed before")
    remote.add_argument("--uids", type=Path, default=None, help="objaverse: a file of uids, one per line")
    remote.add_argument("--lvis-categories", default=None, help="objaverse: comma-separated LVIS categories")
    remote.add_argument("--views", type=int, default=12, help="objaverse: views rendered on the orbit")
    remote.add_argument("--render-size", type=int, default=256, help="objaverse: view size in pixels")
    remote.add_argument("--objaverse-url", default=None,
                        help="objaverse: base URL or folder of a mirror (default: $IMPRINT_OBJAVERSE_URL, then HF)")
    remote.add_argument("--licences", default="by,by-sa,cc0", help="objaverse: licences kept (Sketchfab slugs)")
    remote.add_argument("--query", default=None, help="pixabay: search terms")
    remote.add_argument("--category", default=None, help="pixabay: category (animals, food, ...)")
    remote.add_argument("--pixabay-url", default=None, help="pixabay: API base URL (default: the real API)")
    remote.add_argument("--list", dest="url_list", type=Path, default=None,
                        help="urls: a .parquet or .csv with columns url, optional mask_url, group_id")
    remote.add_argument("--segmenter", default=None,
                        help="pixabay/urls: segmentation model, hub id or folder (see docs/sources-remote.md; "
                             "default: facebook/mask2former-swin-large-coco-panoptic)")
    p.set_defaults(func=_run_ingest)


def _materialise(name: str, args: argparse.Namespace, executor) -> Path:
    """Fetch (and render or segment) a remote source into DATA/raw/<source>/; return the root to read."""
    if name == "objaverse":
        from imprint.ingest.objaverse import fetch_objaverse
        from imprint.ingest.render import RenderConfig

        uids = [u.strip() for u in args.uids.read_text().split() if u.strip()] if args.uids else None
        cats = args.lvis_categories.split(",") if args.lvis_categories else None
        return fetch_objaverse(args.out, uids, cats, args.limit, args.views, args.objaverse_url,
                               set(args.licences.split(",")), executor, args.retry_failed,
                               RenderConfig(views=args.views, size=args.render_size), seed=args.seed)
    segmenter = args.segmenter or "facebook/mask2former-swin-large-coco-panoptic"
    if name == "pixabay":
        from imprint.ingest.pixabay import PIXABAY_API, fetch_pixabay

        return fetch_pixabay(args.out, args.query, args.category, args.limit or 100, segmenter, executor,
                             args.retry_failed, args.pixabay_url or PIXABAY_API)
    if name == "urls":
        from imprint.ingest.urls import fetch_urls

        if args.url_list is None:
            raise ValueError("urls needs --list FILE.parquet|csv (columns url, optional mask_url, group_id)")
        return fetch_urls(args.url_list, args.out, args.segmenter, executor, args.retry_failed)
    if name == "sav":
        from imprint.ingest.sav import prepare_sav

        if args.root is None:
            raise ValueError("sav needs --root: the extracted sav_train folder, a sav_XXX.tar or a folder of tars")
        return prepare_sav(args.root, args.out, executor, args.limit)
    raise ValueError(name)


def _run_ingest(args: argparse.Namespace) -> int:
    from imprint.config import ConfigError, load_config
    from imprint.executor import make_executor
    from imprint.ingest.base import LayoutError
    from imprint.ingest.config import IngestConfig
    from imprint.ingest.job import IngestError, run_ingest

    from imprint.recipe import load_recipe

    try:
        recipe = load_recipe(args.recipe) if args.recipe else None
        cfg = load_config(IngestConfig, args.config, args.overrides, base=recipe.ingest_config if recipe else None)
    except ConfigError as exc:
        print(f"imprint ingest: {exc}", file=sys.stderr)
        return 2
    if recipe is None and args.source is None:
        print("imprint ingest: name a SOURCE or pass --recipe FILE", file=sys.stderr)
        return 2
    wanted = list(recipe.ingest.items()) if recipe else [(args.source, {"root": args.root})]
    jobs = []
    for name, spec in wanted:
        if name in ("objaverse", "pixabay", "urls", "sav"):
            jobs.append((name, None))  # fetched or decoded first, on the executor
        elif name == "sample":
            from imprint.ingest.sample import SOURCES, generate

            roots = generate(args.out / "raw" / "sample", seed=args.seed)
            jobs += [(source, roots[source]) for source in SOURCES]
        elif spec.get("root") is None:
            print(f"imprint ingest: --root is required for {name} (the extracted folder or archive)",
                  file=sys.stderr)
            return 2
        else:
            jobs.append((name, Path(spec["root"])))
    status = 0
    with make_executor(args.executor, args.workers, args.ray_address) as executor:
        for name, root in jobs:
            try:
                source_cfg = cfg
                if root is None:
                    root = _materialise(name, args, executor)
                if name in ("pixabay", "urls"):  # single images: each is its own group (self-pairs)
                    from imprint.ingest.urls import single_image_config

                    source_cfg = single_image_config(cfg)
                run_ingest(name, root, args.out, source_cfg, executor,
                           limit=None if name in ("objaverse", "pixabay") else args.limit, overwrite=args.overwrite)
            except (LayoutError, IngestError, ValueError, RuntimeError) as exc:
                print(f"imprint ingest {name}: {exc}", file=sys.stderr)
                status = 1
    return status


def _pairs_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pairs", help="records -> stage-1 view pairs and stage-2 compositing pairs (Parquet shards)",
        description="Build IMPRINT's training pairs from DATA/records into OUT/stage1/ and OUT/stage2/ "
                    "(part-NNNNN.parquet, manifest.json, README.md dataset card, report.json). Stage 1: two "
                    "views of one instance with 1 <= |i - j| <= window, backgrounds removed. Stage 2: an object "
                    "cut from one frame (or the image itself) and augmented P(T(.)), the target the other frame. "
                    "Same records, config and seed give byte-identical shards; rerunning resumes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--records", type=Path, required=True, help="DATA/records (from imprint ingest)")
    p.add_argument("--out", type=Path, required=True, help="DATA/shards; stage N goes to OUT/stageN/")
    p.add_argument("--stage", type=int, choices=(1, 2), action="append", default=None,
                   help="which stage(s) to build (repeatable; default both)")
    p.add_argument("--sources", default=None,
                   help="comma-separated sources; with one --stage they all feed it, otherwise each feeds its "
                        "paper stage (multi-view -> 1, video/images -> 2). Default: every source present")
    p.add_argument("--recipe", type=Path, default=None,
                   help="a data recipe (configs/data/*.yaml): sources, their stage, caps, weights, pair settings")
    p.add_argument("--window", type=int, default=None, help="stage-1 view window (default 7)")
    p.add_argument("--seed", type=int, default=None, help="sampling and augmentation seed (default 0)")
    p.add_argument("--resolution", type=int, default=None, help="target resolution in pixels (default 512)")
    p.add_argument("--holdout", type=float, default=None,
                   help="fraction of groups held out (by hash) into OUT/stageN-holdout/ for validation and eval")
    p.add_argument("--config", type=Path, default=None, help="YAML file of pair settings")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set pairs_per_instance=8 --set affine.rotate=[-10,10]")
    _executor_args(p)
    p.add_argument("--overwrite", action="store_true", help="delete OUT/stageN first")
    p.set_defaults(func=_run_pairs)


def _run_pairs(args: argparse.Namespace) -> int:
    from imprint.config import ConfigError, load_config
    from imprint.executor import make_executor
    from imprint.pairing.config import PairsConfig, default_stage
    from imprint.pairing.job import PairsError, run_pairs
    from imprint.recipe import load_recipe

    flags = [f"{k}={v}" for k, v in (("window", args.window), ("seed", args.seed),
                                     ("resolution", args.resolution), ("holdout", args.holdout)) if v is not None]
    try:
        recipe = load_recipe(args.recipe) if args.recipe else None
        cfg = load_config(PairsConfig, args.config, [*flags, *args.overrides], base=recipe.pairs if recipe else None)
        present = sorted(p.name for p in args.records.iterdir() if p.is_dir()) if args.records.is_dir() else []
        if recipe is not None:
            specs = {n: (s.stage, s.pairs_per_instance or cfg.pairs_per_instance, s.weight)
                     for n, s in recipe.sources.items() if n in present}
        else:
            names = args.sources.split(",") if args.sources else present
            forced = args.stage[0] if args.sources and args.stage and len(args.stage) == 1 else None
            specs = {n: (forced or default_stage(n), cfg.pairs_per_instance, 1.0) for n in names}
    except (ConfigError, ValueError) as exc:
        print(f"imprint pairs: {exc}", file=sys.stderr)
        return 2
    if not specs:
        print(f"imprint pairs: no records under {args.records}; run `imprint ingest` first", file=sys.stderr)
        return 2
    status = 0
    with make_executor(args.executor, args.workers, args.ray_address) as executor:
        for stage in sorted(set(args.stage or (1, 2))):
            chosen = {n: s for n, s in specs.items() if s[0] == stage}
            if not chosen:
                print(f"imprint pairs: no source feeds stage {stage}; skipped", file=sys.stderr)
                continue
            splits = [("train", f"stage{stage}"), ("holdout", f"stage{stage}-holdout")] if cfg.holdout else \
                [("all", f"stage{stage}")]
            for split, folder in splits:
                try:
                    run_pairs(args.records, args.out / folder, stage, {n: s[1] for n, s in chosen.items()}, cfg,
                              executor, weights={n: s[2] for n, s in chosen.items()}, overwrite=args.overwrite,
                              split=split)
                except PairsError as exc:
                    print(f"imprint pairs stage {stage} ({split}): {exc}", file=sys.stderr)
                    status = 1
    return status


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train stage 1 (identity encoder) or stage 2 (compositing generator) from shards",
        description="Train IMPRINT's stage 1 (DINOv2 + adapter + the UNet's decoder blocks on view pairs; "
                    "exports RUN/encoder/) or stage 2 (adapter + the whole inpainting UNet on compositing pairs, "
                    "Sequential Collaborative Training; exports RUN/final/). Checkpoints in RUN/checkpoints/ "
                    "resume exactly with --resume latest. Multi-GPU: accelerate launch -m imprint.cli train ...",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--stage", type=int, choices=(1, 2), required=True, help="which stage")
    p.add_argument("--config", required=True,
                   help="a named config (stage1-tiny, stage2-tiny, stage1-sd21, stage2-sd21; configs/train/) "
                        "or a YAML file")
    p.add_argument("--shards", type=Path, required=True, help="DATA/shards/stageN (from imprint pairs)")
    p.add_argument("--out", type=Path, required=True, help="the run folder")
    p.add_argument("--encoder", type=Path, default=None,
                   help="stage 2: the stage-1 encoder export (RUN1/encoder); default: a fresh DINOv2 + adapter")
    p.add_argument("--resume", default=None, help="'latest' or a RUN/checkpoints/checkpoint-N folder")
    p.add_argument("--val-shards", type=Path, default=None,
                   help="held-out shards for the validation grids (default: DATA/shards/stageN-holdout if it "
                        "exists, else the first pairs of --shards)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override config keys, e.g. max_steps=2 batch_size=4 sct.n_epochs=2")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from imprint.config import ConfigError, load_config
    from imprint.train.checkpoint import ResumeError
    from imprint.train.config import TrainConfig, resolve_config_path
    from imprint.train.loop import TrainError, train

    try:
        cfg = load_config(TrainConfig, resolve_config_path(args.config), [f"stage={args.stage}", *args.overrides])
    except (ConfigError, FileNotFoundError) as exc:
        print(f"imprint train: {exc}", file=sys.stderr)
        return 2
    val = args.val_shards
    if val is None:
        holdout = args.shards.parent / f"{args.shards.name}-holdout"
        val = holdout if (holdout / "manifest.json").is_file() else None
    try:
        train(cfg, args.shards, args.out, encoder_path=args.encoder, resume=args.resume, val_shards=val)
    except (TrainError, ResumeError) as exc:
        print(f"imprint train: {exc}", file=sys.stderr)
        return 1
    return 0


DELEGATED = {
    "verify": ("imprint.shards.verify", "check every shard against its manifest (hashes, rows, schema, images)"),
    "preview": ("imprint.shards.preview", "write an HTML contact sheet of shard samples"),
    "composite": ("imprint.eval.composite", "composite an object into a background with a stage-2 model"),
    "eval": ("imprint.eval.run", "score models (identity, realism, background, shape) into a report"),
}


def _delegated_parser(sub: argparse._SubParsersAction, name: str, text: str) -> None:
    sub.add_parser(name, help=text, add_help=False)


def _bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks; results to bench/results/*.json",
                       description="Run the benchmarks and write bench/results/<name>.json with the machine's "
                                   "description. Targets are compared in the results, never asserted in tests.")
    p.add_argument("names", nargs="*", default=[],
                   help="which benchmarks: ingest, pairs, loader, train, composite, downloads, render (default: all)")
    p.add_argument("--out", type=Path, default=Path("bench/results"), help="results folder")
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    p.set_defaults(func=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from imprint.bench import main as bench_main

    argv = [*args.names, "--out", str(args.out)] + (["--quick"] if args.quick else [])
    return bench_main(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imprint", description="Build IMPRINT's training data at scale and train its two-stage model.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"imprint {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _ingest_parser(sub)
    _pairs_parser(sub)
    _train_parser(sub)
    for name, (_module, text) in DELEGATED.items():
        _delegated_parser(sub, name, text)
    _bench_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:  # these parse their own arguments
        import importlib

        return importlib.import_module(DELEGATED[argv[0]][0]).main(argv[1:])
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
