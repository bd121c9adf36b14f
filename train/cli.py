"""``imprint train``: stage 1 (identity encoder) or stage 2 (compositing generator) from shards."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from imprint.errors import UsageError
from imprint.storage import local_dir, location

if TYPE_CHECKING:
    from imprint.train.config import TrainConfig

DESCRIPTION = (
    "Train IMPRINT's stage 1 (DINOv2 + adapter + the UNet's decoder blocks on view pairs; exports RUN/encoder/) "
    "or stage 2 (adapter + the whole inpainting UNet on compositing pairs, Sequential Collaborative Training; "
    "exports RUN/final/). Checkpoints in RUN/checkpoints/ resume exactly with --resume latest. "
    "Several GPUs: torchrun --standalone --nproc_per_node N -m imprint.cli train ... (or accelerate launch "
    "--multi_gpu -m imprint.cli train ...). Before booking a GPU: --dry-run builds the models without weights on "
    "the meta device and reports parameters, the trainable split and peak GPU memory.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", type=int, choices=(1, 2), required=True, help="which stage")
    p.add_argument("--config", required=True,
                   help="a named config (stage1-tiny, stage2-tiny, stage1-sd21, stage2-sd21; configs/train/) "
                        "or a YAML file")
    p.add_argument("--shards", type=location, default=None,
                   help="DATA/shards/stageN (from imprint pairs; a folder or s3:// / gs:// URI); required, except with --dry-run (which then "
                        "checks their manifest and schema)")
    p.add_argument("--out", type=local_dir, default=None,
                   help="the run folder (a local or shared folder); required, except with --dry-run (which then writes OUT/dry-run.json)")
    p.add_argument("--dry-run", action="store_true",
                   help="no training: build the configured models without weights on the meta device, run one "
                        "shape-checking training step there, print parameters, the trainable split and an "
                        "estimate of peak GPU memory per device (no GPU, no network, no shards needed)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--encoder", type=Path, default=None,
                       help="stage 2 (required unless --from-dinov2): the stage-1 encoder export (RUN1/encoder)")
    start.add_argument("--from-dinov2", action="store_true",
                       help="stage 2: start from a fresh DINOv2 + adapter (the config's encoder), skipping stage 1 "
                            "(the paper's ablation)")
    p.add_argument("--resume", default=None, help="'latest' or a RUN/checkpoints/checkpoint-N folder")
    p.add_argument("--val-shards", type=location, default=None,
                   help="held-out shards for the validation grids (default: DATA/shards/stageN-holdout if it "
                        "exists, else the first pairs of --shards)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override config keys, e.g. max_steps=2 batch_size=4 sct.n_epochs=2")


def run(args: argparse.Namespace) -> int:
    from imprint.config import load_config
    from imprint.train.config import TrainConfig, resolve_config_path
    from imprint.train.loop import train

    cfg = load_config(TrainConfig, resolve_config_path(args.config), [f"stage={args.stage}", *args.overrides])
    if args.dry_run:
        return _dry_run(cfg, args)
    missing = [flag for flag, value in (("--shards", args.shards), ("--out", args.out)) if value is None]
    if missing:
        raise UsageError(f"imprint train needs {' and '.join(missing)} (--shards DATA/shards/stage{args.stage} from "
                         f"`imprint pairs`, --out the run folder); only --dry-run runs without them")
    val = args.val_shards
    if val is None:
        holdout = args.shards.parent / f"{args.shards.name}-holdout"
        val = holdout if (holdout / "manifest.json").is_file() else None
    train(cfg, args.shards, args.out, encoder_path=args.encoder, from_dinov2=args.from_dinov2, resume=args.resume,
          val_shards=val)
    return 0


def _dry_run(cfg: TrainConfig, args: argparse.Namespace) -> int:
    from imprint.train.dryrun import DRY_RUN_FILE, dry_run, format_table

    if args.resume is not None:
        raise UsageError("--resume does nothing with --dry-run (nothing is trained): leave it out")
    report = dry_run(cfg, config_name=args.config, encoder_path=args.encoder, shards=args.shards, out=args.out)
    print(format_table(report))
    if args.out is not None:
        print(f"wrote {args.out / DRY_RUN_FILE}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from imprint.cli import run_command

    return run_command("train", argv)
