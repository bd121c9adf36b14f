"""``imprint pairs``: ``DATA/records`` -> stage-1 view pairs and stage-2 compositing pairs as shards."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from imprint.errors import UsageError
from imprint.executor import add_executor_arguments
from imprint.storage import location

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Build IMPRINT's training pairs from DATA/records into OUT/stage1/ and OUT/stage2/ (part-NNNNN.parquet, "
    "manifest.json, README.md dataset card, report.json). Stage 1: two views of one instance with "
    "1 <= |n1 - n2| <= window in the capture's frame numbers, backgrounds removed. Stage 2: an object cut from one "
    "frame (or the image itself) and augmented P(T(.)), the target another frame (min_gap_s..max_gap_s seconds "
    "apart where the source has a frame rate). Quality filters (--filters) remove blurry records, "
    "fragmented masks, near-duplicates, identity mismatches and static pairs, each counted in report.json and "
    "listed in OUT/stageN/excluded/. Same records, config and seed give byte-identical shards; rerunning resumes.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--records", type=location, required=True,
                   help="DATA/records (from imprint ingest): a folder or s3:// / gs:// URI")
    p.add_argument("--out", type=location, required=True,
                   help="DATA/shards, a folder or s3:// / gs:// URI; stage N goes to OUT/stageN/")
    p.add_argument("--stage", type=int, choices=(1, 2), action="append", default=None,
                   help="which stage(s) to build (repeatable; default both)")
    p.add_argument("--sources", default=None,
                   help="comma-separated sources; with one --stage they all feed it, otherwise each feeds its "
                        "paper stage (multi-view -> 1, video/images -> 2). Default: every source present")
    p.add_argument("--recipe", type=Path, default=None,
                   help="a data recipe (configs/data/*.yaml): sources, their stage, caps, weights, pair settings")
    p.add_argument("--window", type=int, default=None,
                   help="stage-1 view window in the capture's frame numbers (default 7, the paper's)")
    p.add_argument("--seed", type=int, default=None, help="sampling and augmentation seed (default 0)")
    p.add_argument("--resolution", type=int, default=None, help="target resolution in pixels (default 512)")
    p.add_argument("--holdout", type=float, default=None,
                   help="fraction of groups held out (by hash) into OUT/stageN-holdout/ for validation and eval")
    p.add_argument("--filters", default=None, metavar="none|default|FILE",
                   help="the quality filters: none (keep every pair; the scores are still measured), default (the "
                        "measured defaults), or a YAML file of thresholds (keys of FiltersConfig, e.g. "
                        "min_sharpness: 0.4). Default: the recipe's pairs.filters, else default")
    p.add_argument("--config", type=Path, default=None, help="YAML file of pair settings")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set pairs_per_instance=8 --set affine.rotate=[-10,10]")
    add_executor_arguments(p)
    p.add_argument("--overwrite", action="store_true", help="delete OUT/stageN first")


def run(args: argparse.Namespace) -> int:
    from imprint.config import load_config
    from imprint.executor import make_executor
    from imprint.pairing.config import PairsConfig, default_stage
    from imprint.pairing.job import PairsError, run_pairs
    from imprint.recipe import load_recipe

    flags = [f"{k}={v}" for k, v in (("window", args.window), ("seed", args.seed),
                                     ("resolution", args.resolution), ("holdout", args.holdout)) if v is not None]
    recipe = load_recipe(args.recipe) if args.recipe else None
    base = filters_choice(dict(recipe.pairs) if recipe else {}, args.filters)
    cfg = load_config(PairsConfig, args.config, [*flags, *args.overrides], base=base)
    present = [d.name for d in args.records.dirs()]
    try:
        if recipe is not None:
            specs = {n: (s.stage, s.pairs_per_instance or cfg.pairs_per_instance, s.weight)
                     for n, s in recipe.sources.items() if n in present}
        else:
            names = args.sources.split(",") if args.sources else present
            forced = args.stage[0] if args.sources and args.stage and len(args.stage) == 1 else None
            specs = {n: (forced or default_stage(n), cfg.pairs_per_instance, 1.0) for n in names}
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if not specs:
        raise UsageError(f"no records under {args.records}; run `imprint ingest` first")
    status = 0
    with make_executor(args.executor, args.workers, args.ray_address) as executor:
        for stage in sorted(set(args.stage or (1, 2))):
            chosen = {n: s for n, s in specs.items() if s[0] == stage}
            if not chosen:
                log.warning("imprint pairs: no source feeds stage %d; skipped", stage)
                continue
            splits = [("train", f"stage{stage}"), ("holdout", f"stage{stage}-holdout")] if cfg.holdout else \
                [("all", f"stage{stage}")]
            for split, folder in splits:
                try:
                    run_pairs(args.records, args.out / folder, stage, {n: s[1] for n, s in chosen.items()}, cfg,
                              executor, weights={n: s[2] for n, s in chosen.items()}, overwrite=args.overwrite,
                              split=split)
                except PairsError as exc:  # one stage failing never stops the other
                    log.error("imprint pairs stage %d (%s): %s", stage, split, exc)
                    status = 1
    return status


def filters_choice(base: dict[str, Any], choice: str | None) -> dict[str, Any]:
    """The pair settings ``base`` with ``--filters`` applied: ``none`` turns every filter off, ``default`` drops
    the recipe's filter settings, a FILE replaces them with its own (over the defaults)."""
    from imprint.config import load_mapping

    if choice is None:
        return base
    out = {k: v for k, v in base.items() if k != "filters"}
    if choice == "none":
        out["filters"] = {"enabled": []}
    elif choice != "default":
        path = Path(choice)
        if not path.is_file():
            raise UsageError(f"--filters takes none, default or a YAML file of thresholds; {choice} is not a file")
        out["filters"] = load_mapping(
            path, f"--filters {choice} must hold a mapping of filter settings (e.g. min_sharpness: 0.4)")
    return out


def main(argv: list[str] | None = None) -> int:
    from imprint.cli import run_command

    return run_command("pairs", argv)
