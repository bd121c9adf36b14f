"""``imprint train``: stage 1 (identity encoder) or stage 2 (compositing generator) from shards."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = (
    "Train IMPRINT's stage 1 (DINOv2 + adapter + the UNet's decoder blocks on view pairs; exports RUN/encoder/) "
    "or stage 2 (adapter + the whole inpainting UNet on compositing pairs, Sequential Collaborative Training; "
    "exports RUN/final/). Checkpoints in RUN/checkpoints/ resume exactly with --resume latest. "
    "Several GPUs: torchrun --nproc_per_node N -m imprint.cli train ... (or accelerate launch --multi_gpu "
    "-m imprint.cli train ...).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", type=int, choices=(1, 2), required=True, help="which stage")
    p.add_argument("--config", required=True,
                   help="a named config (stage1-tiny, stage2-tiny, stage1-sd21, stage2-sd21; configs/train/) "
                        "or a YAML file")
    p.add_argument("--shards", type=Path, required=True, help="DATA/shards/stageN (from imprint pairs)")
    p.add_argument("--out", type=Path, required=True, help="the run folder")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--encoder", type=Path, default=None,
                       help="stage 2 (required unless --from-dinov2): the stage-1 encoder export (RUN1/encoder)")
    start.add_argument("--from-dinov2", action="store_true",
                       help="stage 2: start from a fresh DINOv2 + adapter (the config's encoder), skipping stage 1 "
                            "(the paper's ablation)")
    p.add_argument("--resume", default=None, help="'latest' or a RUN/checkpoints/checkpoint-N folder")
    p.add_argument("--val-shards", type=Path, default=None,
                   help="held-out shards for the validation grids (default: DATA/shards/stageN-holdout if it "
                        "exists, else the first pairs of --shards)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override config keys, e.g. max_steps=2 batch_size=4 sct.n_epochs=2")


def run(args: argparse.Namespace) -> int:
    from imprint.config import load_config
    from imprint.train.config import TrainConfig, resolve_config_path
    from imprint.train.loop import train

    cfg = load_config(TrainConfig, resolve_config_path(args.config), [f"stage={args.stage}", *args.overrides])
    val = args.val_shards
    if val is None:
        holdout = args.shards.parent / f"{args.shards.name}-holdout"
        val = holdout if (holdout / "manifest.json").is_file() else None
    train(cfg, args.shards, args.out, encoder_path=args.encoder, from_dinov2=args.from_dinov2, resume=args.resume,
          val_shards=val)
    return 0


def main(argv: list[str] | None = None) -> int:
    from imprint.cli import run_command

    return run_command("train", argv)
