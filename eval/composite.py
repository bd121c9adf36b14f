"""``imprint composite``: one object into one background, or a CSV of jobs."""

from __future__ import annotations

import argparse
import csv
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from imprint.eval.pipeline import SCHEDULERS, CompositeInputError, CompositeOptions, CompositingPipeline, box_mask
from imprint.geometry import binarize

log = logging.getLogger(__name__)

JOB_COLUMNS = ("object", "background", "mask", "box", "object_mask", "out", "seed")


def parse_box(text: str) -> list[int]:
    try:
        box = [int(round(float(v))) for v in text.split(",")]
    except ValueError:
        box = []
    if len(box) != 4:
        raise CompositeInputError(f"--box takes x0,y0,x1,y1 in background pixels, got {text!r}")
    return box


def load_job(job: dict[str, str], base: Path) -> tuple[Image.Image, np.ndarray, np.ndarray, np.ndarray | None]:
    """(object image, background, placement mask, object mask or None) of one job."""
    def path(key: str) -> Path:
        p = Path(job[key])
        return p if p.is_absolute() else base / p

    for key in ("object", "background"):
        if not job.get(key) or not path(key).is_file():
            raise CompositeInputError(f"{key} image {job.get(key)!r} does not exist")
    obj = Image.open(path("object"))
    obj.load()
    background = np.asarray(Image.open(path("background")).convert("RGB"))
    if job.get("mask"):
        mask = np.asarray(Image.open(path("mask")).convert("L"))
    elif job.get("box"):
        mask = box_mask(parse_box(job["box"]), (background.shape[1], background.shape[0]))
    else:
        raise CompositeInputError("give where the object goes: --mask m.png (any precision level) or --box x0,y0,x1,y1")
    omask = binarize(np.asarray(Image.open(path("object_mask")).convert("L"))) if job.get("object_mask") else None
    return obj, background, mask, omask


DESCRIPTION = ("Composite an object (RGBA, or RGB with --object-mask) into a background where a mask (any of the "
               "four precision levels) or a box says, with a stage-2 model (RUN2/final). Pixels outside the edited "
               "region stay the background's exactly (background blending).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True, help="a stage-2 export (RUN/final)")
    p.add_argument("--object", help="the object image (RGBA PNG, or RGB with --object-mask)")
    p.add_argument("--object-mask", default=None, help="the object's mask when the image has no alpha")
    p.add_argument("--background", help="the background image")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--mask", default=None, help="where the object goes: a mask of the background's size")
    where.add_argument("--box", default=None, help="where the object goes: x0,y0,x1,y1 in background pixels")
    p.add_argument("--out", type=Path, help="the composite (PNG)")
    p.add_argument("--jobs", type=Path, default=None,
                   help=f"a CSV of jobs instead (columns {', '.join(JOB_COLUMNS)}; paths relative to the CSV)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scheduler", choices=SCHEDULERS, default="ddim")
    p.add_argument("--no-blend", action="store_true", help="turn background blending off (ablation)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    try:
        if args.jobs:
            with open(args.jobs, newline="") as f:
                jobs = list(csv.DictReader(f))
            base = args.jobs.parent
        else:
            if not (args.object and args.background and args.out):
                raise CompositeInputError("give --object, --background and --out (or --jobs FILE.csv)")
            jobs = [{"object": args.object, "background": args.background, "mask": args.mask or "",
                     "box": args.box or "", "object_mask": args.object_mask or "", "out": str(args.out)}]
            base = Path.cwd()
        pipe = CompositingPipeline.from_pretrained(args.model, args.scheduler, args.device,
                                                   getattr(torch, args.dtype))
        failed = 0
        for job in tqdm(jobs, desc="composite", disable=len(jobs) < 2):
            try:
                obj, bg, mask, omask = load_job(job, base)
                opts = CompositeOptions(steps=args.steps, guidance=args.guidance,
                                        seed=int(job.get("seed") or args.seed), blend=not args.no_blend)
                out = pipe([obj], [bg], [mask], [omask], opts)[0]
            except CompositeInputError as exc:
                failed += 1
                log.warning("imprint composite: %s: %s", job.get("out", "?"), exc)
                continue
            target = Path(job["out"]) if Path(job["out"]).is_absolute() else base / job["out"]
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(out).save(target)
        if not failed:
            log.info("imprint composite: wrote %s", args.out or f"{len(jobs)} composites")
    except CompositeInputError:
        raise
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    from imprint.cli import run_command

    return run_command("composite", argv)
