"""Evaluation test sets: held-out shards, or a DreamBooth-style folder of subjects and backgrounds.

Every example gives a reference object (RGB + mask), a background, a fine mask (or only a box), and, when
there is one, the real image the background comes from (for realism metrics).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imprint.errors import UsageError
from imprint.geometry import binarize
from imprint.io import MANIFEST, ManifestError, read_manifest, read_shard_rows
from imprint.masks import decode_mask_png
from imprint.storage import Location, Where


@dataclass
class Example:
    id: str
    object_rgb: np.ndarray  # H x W x 3 uint8
    object_mask: np.ndarray  # H x W bool
    background: np.ndarray  # H x W x 3 uint8
    mask: np.ndarray  # H x W bool: the fine mask, or the box when only a box is known
    real: np.ndarray | None  # the real image (held-out target) or None
    box_only: bool = False


class EvalSetError(UsageError, ValueError):
    """A test set that cannot be read; the message says which layout is expected."""


def _fill_mask(rgb: np.ndarray, fill: tuple[int, int, int]) -> np.ndarray:
    """A shard object's mask: the pixels that are not the fill colour (its background was removed)."""
    return np.abs(rgb.astype(int) - np.asarray(fill)).sum(axis=2) > 12


def from_shards(shard_dir: Where, n: int) -> list[Example]:
    """The first ``n`` pairs of held-out shards: the object as built, the target as background (its object
    region is what the model regenerates) and as the real image."""
    try:
        manifest = read_manifest(shard_dir)
    except ManifestError as exc:
        raise EvalSetError(f"{exc}; pass DATA/shards/stage2-holdout (imprint pairs --holdout) or a "
                           f"DreamBooth-style folder") from None
    fill = tuple(manifest["config"].get("fill", (0, 0, 0)))
    out: list[Example] = []
    for row in read_shard_rows(shard_dir, n, columns=["pair_id", "object", "target", "mask"]):
        obj = np.asarray(Image.open(io.BytesIO(row["object"]["bytes"])).convert("RGB"))
        target = np.asarray(Image.open(io.BytesIO(row["target"]["bytes"])).convert("RGB"))
        out.append(Example(row["pair_id"], obj, _fill_mask(obj, fill), target, decode_mask_png(row["mask"]["bytes"]),
                           target))
    if not out:
        raise EvalSetError(f"{shard_dir} holds no pairs")
    return out


def from_dreambooth(folder: Path, n: int) -> list[Example]:
    """AnyDoor's DreamBooth layout: ``subjects/<name>/*.png`` (RGBA, the first one is used; alpha is the
    mask) and ``backgrounds/<id>_GT.png`` with ``<id>_mask.png`` (the target box filled white). Each subject
    is paired with the backgrounds in turn (subject-major), ``n`` composites in all."""
    folder = Path(folder)
    subjects = sorted(p for p in (folder / "subjects").iterdir() if p.is_dir()) if (folder / "subjects").is_dir() else []
    backgrounds = sorted((folder / "backgrounds").glob("*_GT.png")) if (folder / "backgrounds").is_dir() else []
    if not subjects or not backgrounds:
        raise EvalSetError(f"{folder} is not a DreamBooth-style test set: expected subjects/<name>/*.png (RGBA) and "
                           f"backgrounds/<id>_GT.png with <id>_mask.png (box filled white)")
    out: list[Example] = []
    for subject in subjects:
        pngs = sorted(subject.glob("*.png"))
        if not pngs:
            continue
        rgba = np.asarray(Image.open(pngs[0]).convert("RGBA"))
        for bg_path in backgrounds:
            mask_path = bg_path.with_name(bg_path.name.replace("_GT.png", "_mask.png"))
            if not mask_path.is_file():
                raise EvalSetError(f"{bg_path} has no {mask_path.name} beside it")
            bg = np.asarray(Image.open(bg_path).convert("RGB"))
            box = binarize(np.asarray(Image.open(mask_path).convert("RGB"))[..., 0])
            out.append(Example(f"{subject.name}/{bg_path.stem[:-3]}", rgba[..., :3], binarize(rgba[..., 3]), bg,
                               box, None, box_only=True))
            if len(out) == n:
                return out
    return out


def load_test_set(path: Where, n: int) -> list[Example]:
    """Held-out shards (a folder with ``manifest.json``: a path or a URI), else a DreamBooth-style folder."""
    loc = Location.of(path)
    if (loc / MANIFEST).is_file():
        return from_shards(loc, n)
    if not loc.is_local:
        raise EvalSetError(f"{loc} has no {MANIFEST}: in object storage, --test takes held-out shards "
                           f"(imprint pairs --holdout); a DreamBooth-style folder must be a local path")
    return from_dreambooth(loc.local_path(), n)
