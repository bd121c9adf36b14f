"""``imprint eval``: composite a test set with one or more models at every mask level and score them into
``metrics.json`` and ``report.html``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from imprint.augment.mask_levels import MaskLevelConfig, mask_levels
from imprint.errors import UsageError
from imprint.eval import metrics as M
from imprint.eval.pipeline import CompositeInputError, CompositeOptions, CompositingPipeline
from imprint.eval.testsets import Example, EvalSetError, load_test_set
from imprint.storage import local_dir, location

log = logging.getLogger(__name__)


def tiny_backbone(kind: Literal["dino", "clip"], folder: Path) -> Path:
    """A tiny random DINOv2 or CLIP with its image processor, saved to ``folder`` (``--dino tiny``): for
    checking the wiring offline; its scores mean nothing."""
    import torch
    from transformers import (BitImageProcessor, CLIPConfig, CLIPImageProcessor, CLIPModel, Dinov2Config,
                              Dinov2Model)

    torch.manual_seed(0)
    folder = Path(folder) / f"tiny-{kind}"
    if (folder / "config.json").is_file():
        return folder
    if kind == "dino":
        Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, patch_size=14,
                                 image_size=56)).save_pretrained(folder)
        BitImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 56, "width": 56}).save_pretrained(folder)
    else:
        text = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=99,
                    max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)
        vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                      patch_size=8, image_size=32)
        CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
        CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def _backbone(name: str, kind: Literal["dino", "clip"], out: Path) -> M.FeatureBackbone:
    """The metric backbone named by ``--dino`` / ``--clip`` (``tiny``: a random one, for the wiring only)."""
    path = tiny_backbone(kind, out / "backbones") if name == "tiny" else name
    return M.FeatureBackbone.from_pretrained(path, kind=kind)


def _level_masks(example: Example, levels: Sequence[int], cfg: MaskLevelConfig) -> dict[int, np.ndarray]:
    if example.box_only:  # only a box is known: level 0
        return {0: example.mask} if 0 in levels else {}
    all_levels = mask_levels(example.mask, cfg)
    return {level: all_levels[level] for level in levels}


def _background(output: np.ndarray, background: np.ndarray, region: np.ndarray) -> dict[str, Any]:
    """Background preservation outside the edited region; not computed when the region is everything."""
    if region.all():
        return {"psnr": None, "ssim": None, "l1": None}
    return M.background_metrics(output, background, region)


def evaluate_model(name: str, model_dir: Path, examples: list[Example], levels: Sequence[int],
                   opts: CompositeOptions, dino: M.FeatureBackbone, clip: M.FeatureBackbone,
                   batch: int = 4) -> dict[str, Any]:
    """Composite every example at every level and score each composite; returns the report's model entry."""
    pipe = CompositingPipeline.from_pretrained(model_dir)
    cfg = MaskLevelConfig()
    jobs = [(ex, level, mask) for ex in examples for level, mask in _level_masks(ex, levels, cfg).items()]
    samples: list[dict[str, Any]] = []
    crops: list[np.ndarray] = []
    refs: list[np.ndarray] = []
    for start in range(0, len(jobs), batch):
        chunk = jobs[start:start + batch]
        outs, regions = pipe([np.dstack([ex.object_rgb, ex.object_mask.astype(np.uint8) * 255]) for ex, _, _ in chunk],
                             [ex.background for ex, _, _ in chunk], [m for _, _, m in chunk], options=opts,
                             return_regions=True)
        for (ex, level, mask), out, region in zip(chunk, outs, regions):
            crops.append(M.crop_to_box(out, M.mask_box(mask)))
            refs.append(M.reference_object(ex.object_rgb, ex.object_mask))
            samples.append({"id": ex.id, "level": level, "reference": refs[-1], "background": ex.background,
                            "mask": mask, "output": out,
                            "metrics": {**_background(out, ex.background, region),
                                        "shape_iou": M.shape_iou(out, ex.background, mask)}})
        log.info("[eval %s] %d/%d composites", name, min(start + batch, len(jobs)), len(jobs))
    dino_scores = M.identity_scores(crops, refs, dino)
    clip_scores = M.identity_scores(crops, refs, clip)
    dreamsim = M.dreamsim_scores(crops, refs) if M.dreamsim_available() else None
    for i, sample in enumerate(samples):
        sample["metrics"]["dino"] = float(dino_scores[i])
        sample["metrics"]["clip"] = float(clip_scores[i])
        if dreamsim is not None:
            sample["metrics"]["dreamsim"] = float(dreamsim[i])
    # realism: composites against the real images (held-out targets), else against the backgrounds
    reals = [ex.real if ex.real is not None else ex.background for ex in examples]
    fake_feats = dino.embed([s["output"] for s in samples])
    real_feats = dino.embed(reals)
    set_metrics: dict[str, Any] = {"fid": M.fid(fake_feats, real_feats)}
    subset = max(2, min(len(samples), len(reals)) // 2)
    set_metrics["kid"] = M.kid(fake_feats, real_feats, subsets=20, subset_size=subset)
    return {"info": {"model": str(model_dir), "steps": opts.steps, "guidance": opts.guidance, "seed": opts.seed},
            "samples": samples, "set_metrics": set_metrics}


DESCRIPTION = ("Composite a test set with each model at every mask level and score: identity (DINO and CLIP score "
               "of the generated region cropped to its box against the reference object, DreamSim when installed), "
               "realism (FID and KID on the DINO backbone's features, against the real images), background "
               "preservation (PSNR / SSIM / L1 outside the edited region) and shape adherence (IoU per mask level). "
               "Writes OUT/metrics.json and OUT/report.html.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", required=True, metavar="[NAME=]DIR",
                   help="a stage-2 export (RUN/final); repeat to compare checkpoints or ablations")
    p.add_argument("--test", type=location, required=True,
                   help="DATA/shards/stage2-holdout (held-out pairs; a folder or s3:// / gs:// URI) or a "
                        "DreamBooth-style folder (subjects/<name>/*.png RGBA, backgrounds/<id>_GT.png + "
                        "<id>_mask.png)")
    p.add_argument("--out", type=local_dir, required=True, help="the report folder (reports/NAME; a filesystem)")
    p.add_argument("--n", type=int, default=32, help="test cases (each composited at every level)")
    p.add_argument("--levels", default="0,1,2,3", help="mask levels to composite at (0 = box ... 3 = fine)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dino", default=M.DEFAULT_DINO_MODEL, help="DINO backbone: hub id, folder, or 'tiny' (offline wiring check)")
    p.add_argument("--clip", default=M.DEFAULT_CLIP_MODEL, help="CLIP backbone: hub id, folder, or 'tiny'")


def _models(specs: Sequence[str]) -> dict[str, Path]:
    """``--model [NAME=]DIR`` as ``{name: folder}``, each checked to be a stage-2 export before anything loads."""
    from imprint.train.models import ModelFolderError, read_model_config

    models: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        folder = Path(path if sep else spec)
        try:
            read_model_config(folder)
        except ModelFolderError as exc:
            raise CompositeInputError(str(exc)) from None
        models[name if sep else folder.parent.name or spec] = folder
    return models


def _levels(text: str) -> list[int]:
    try:
        levels = sorted({int(v) for v in text.split(",")})
    except ValueError:
        levels = []
    if not levels or not set(levels) <= {0, 1, 2, 3}:
        raise UsageError(f"--levels takes values in 0..3 separated by commas, got {text!r}")
    return levels


def run(args: argparse.Namespace) -> int:
    from imprint.eval.report import write_report

    levels = _levels(args.levels)
    try:
        examples = load_test_set(args.test, args.n)
        models = _models(args.model)
        dino, clip = _backbone(args.dino, "dino", args.out), _backbone(args.clip, "clip", args.out)
        opts = CompositeOptions(steps=args.steps, guidance=args.guidance, seed=args.seed)
        results = {"title": f"imprint eval: {args.test}", "settings": {
            "test": str(args.test), "n": len(examples), "levels": levels, "steps": args.steps,
            "guidance": args.guidance, "seed": args.seed, "dino": args.dino, "clip": args.clip},
            "notes": ([] if M.dreamsim_available() else ["DreamSim is not installed: pip install dreamsim"]) +
                     (["the metric backbones are tiny random models: the scores check the wiring only"]
                      if "tiny" in (args.dino, args.clip) else []),
            "models": {name: evaluate_model(name, path, examples, levels, opts, dino, clip)
                       for name, path in models.items()}}
    except ValueError as exc:
        if isinstance(exc, (EvalSetError, CompositeInputError)):
            raise
        raise UsageError(str(exc)) from exc
    metrics_path, html_path = write_report(args.out, results)
    log.info("imprint eval: wrote %s and %s", metrics_path, html_path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from imprint.cli import run_command

    return run_command("eval", argv)
