"""The PPR10K layout of the sample: groups of portraits, 16-bit raw sources, retouched targets, masks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from imprint.ingest.sample.common import MARGIN, Size, check_args, prepare_root, rng_for, save_png, save_tiff
from imprint.ingest.sample.scenes import Actor, Pose, camera_path, camera_view, extent, render_frame
from imprint.ingest.sample.sprites import Sprite, person_sprite
from imprint.ingest.sample.textures import photo_canvas, to_u8


def _retouch(rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """An expert's look for a group: exposure, contrast, warmth and saturation."""
    bright, contrast = rng.uniform(1.0, 1.15), rng.uniform(1.05, 1.25)
    warm, sat = rng.uniform(-0.02, 0.06), rng.uniform(1.0, 1.2)

    def apply(img: np.ndarray) -> np.ndarray:
        x = np.clip(img * bright, 0, 1)
        x = 0.5 + (x - 0.5) * contrast
        x = x * np.array([1 + warm, 1.0, 1 - warm], np.float32)
        gray = x.mean(axis=2, keepdims=True)
        return np.clip(gray + (x - gray) * sat, 0, 1)

    return apply


def _raw(scene: np.ndarray, exposure: float, cast: np.ndarray) -> np.ndarray:
    """The flat, dim, colour-cast look of the unprocessed 16-bit source, float in [0, 1]."""
    linear = np.power(scene, 2.2) * exposure * cast
    return np.clip(np.power(np.clip(linear, 0, 1), 1 / 2.6) * 0.92, 0, 1)


def _portrait_pose(rng: np.random.Generator, sprite: Sprite, size: Size, height: float) -> Pose:
    """The person standing near the middle, ``height`` of the frame tall, slightly tilted, inside."""
    w, h = size
    angle = rng.uniform(-5, 5)
    scale = height * h / (sprite.box[3] - sprite.box[2])
    x0, x1, y0, y1 = extent(sprite, angle, scale)
    fit = min((w - 1 - 2 * MARGIN) / (x1 - x0), (h - 1 - 2 * MARGIN) / (y1 - y0), 1.0)
    scale *= fit
    x0, x1, y0, y1 = extent(sprite, angle, scale)
    cx = np.clip(w / 2 + rng.uniform(-0.1, 0.1) * w, MARGIN - x0, w - 1 - MARGIN - x1)
    cy = np.clip(h / 2 + rng.uniform(-0.05, 0.05) * h, MARGIN - y0, h - 1 - MARGIN - y1)
    return Pose(float(cx), float(cy), angle, scale, rng.uniform(0.9, 1.1, 3).astype(np.float32),
                 rng.uniform(0, 2 * np.pi))


#: where the folders go (``generate_ppr10k(layout=...)``)
LAYOUTS = ("flat", "download", "split")
_FIRST_VAL_GROUP = 1356  # the owners' split (utils/split_train_val.py): group < 1356 is train
_N_AUGMENTED = 2  # augmented copies per training photo in source_aug* (the release has 5)


def generate_ppr10k(root: Path, seed: int = 0, *, n_groups: int = 3, n_photos: int = 3,
                    size: Size = (144, 216), layout: str = "flat") -> Path:
    """Write a PPR10K (360p set) sample under ``root/ppr10k`` and return that folder.

    ``source/<g>_<i>.tif`` (16-bit RGB, flat and colour-cast like the raw exports),
    ``target_a/<g>_<i>.tif`` (8-bit RGB, retouched) and ``masks/<g>_<i>.png`` (0 / 255),
    one person per photo; the photos of a group share the person and the scene with a
    slightly different framing, pose and exposure. ``layout`` says where the folders sit:

    - ``flat``: all three in one folder (the 360p set as third-party loaders keep it);
    - ``download``: ``PPR10K-dataset/train_val_images_tif_360p/{source,source_aug_6,target_a}/`` with
      ``PPR10K-dataset/masks_360p/`` beside the image folder, as the owners' drive holds them;
    - ``split``: the official training code's ``train/{source_aug,target_a,masks}/`` and
      ``val/{source,target_a,masks}/`` (train has no ``source/``).

    In ``download`` and ``split`` the last third of the groups (at least one) are validation groups,
    numbered from 1356 as in the release; ``source_aug*`` holds each training photo with
    two augmented copies ``<g>_<i>_<k>.tif``.
    """
    size = check_args(seed, size)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    out = prepare_root(Path(root) / "ppr10k")
    n_val = 0 if layout == "flat" else max(1, n_groups // 3)
    for g in range(n_groups):
        val = g >= n_groups - n_val
        group = _FIRST_VAL_GROUP + g if val else g
        folders = _folders(out, layout, val)
        for i, (source, target, mask) in enumerate(_group_photos(rng_for(seed, "ppr10k", g), size, n_photos)):
            name = f"{group}_{i}"
            src16 = np.round(source * 65535).astype(np.uint16)
            if "source" in folders:
                save_tiff(folders["source"] / f"{name}.tif", src16)
            if "source_aug" in folders:
                save_tiff(folders["source_aug"] / f"{name}.tif", src16)
                for k in range(1, _N_AUGMENTED + 1):
                    brighter = np.clip(source * (1 + 0.1 * k), 0, 1)
                    save_tiff(folders["source_aug"] / f"{name}_{k}.tif", np.round(brighter * 65535).astype(np.uint16))
            save_tiff(folders["target_a"] / f"{name}.tif", target)
            save_png(folders["masks"] / f"{name}.png", mask)
    return out


def _folders(out: Path, layout: str, val: bool) -> dict[str, Path]:
    """Where a group's photos go: ``source`` and ``source_aug`` where the layout has them, ``target_a``,
    ``masks``."""
    if layout == "flat":
        return {"source": out / "source", "target_a": out / "target_a", "masks": out / "masks"}
    if layout == "download":
        images = out / "PPR10K-dataset" / "train_val_images_tif_360p"
        folders = {"source": images / "source", "target_a": images / "target_a",
                   "masks": out / "PPR10K-dataset" / "masks_360p"}
        if not val:
            folders["source_aug"] = images / "source_aug_6"
        return folders
    split = out / ("val" if val else "train")
    if val:
        return {"source": split / "source", "target_a": split / "target_a", "masks": split / "masks"}
    return {"source_aug": split / "source_aug", "target_a": split / "target_a", "masks": split / "masks"}


def _group_photos(rng: np.random.Generator, size: Size, n_photos: int,
                  ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A group's photos: ``(source float RGB in [0, 1], target uint8 RGB, mask 0/255)`` each."""
    w, h = size
    canvas_size = (round(w * 1.2), round(h * 1.15))
    canvas = photo_canvas(rng, canvas_size)
    canvas = cv2.GaussianBlur(canvas, (0, 0), max(1.0, min(w, h) / 90))  # shallow depth of field
    sprite = person_sprite(rng, max(48, round(h / 8) * 8))  # the figure spans ~0.86 of it
    look = _retouch(rng)
    cams = camera_path(rng, canvas_size, size, max(2, n_photos), zoom=0.04)
    height = rng.uniform(0.72, 0.88)
    photos = []
    for i in range(n_photos):
        pose = _portrait_pose(rng, sprite, size, height * rng.uniform(0.95, 1.05))
        actor = Actor(sprite, [pose])
        rgb, labels = render_frame(camera_view(canvas, cams[i], size), [actor], 0, np.ones(3, np.float32),
                                   strict=False)
        scene = rgb.astype(np.float32) / 255.0
        cast = np.array([1.0, 1.0, 1.0], np.float32) + rng.uniform(-0.08, 0.08, 3).astype(np.float32)
        source = _raw(scene, float(rng.uniform(0.55, 0.95)), cast)
        photos.append((source, to_u8(look(scene)), np.where(labels > 0, 255, 0).astype(np.uint8)))
    return photos
