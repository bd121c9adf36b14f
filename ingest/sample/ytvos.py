"""The YouTube-VOS 2019 layout of the sample."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from imprint.ingest.sample.common import Size, check_args, hex_id, prepare_root, rng_for, save_jpeg, save_png
from imprint.ingest.sample.scenes import (TrackSpec, camera_path, camera_view, plan_tracks, render_frame,
                                          scene_gains, sprite_side)
from imprint.ingest.sample.sprites import make_sprite
from imprint.ingest.sample.textures import photo_canvas

_GENERIC_SHAPES = ("ellipse", "polygon", "star", "logo")

_YTVOS_CATEGORIES = {"person": "person", "horse": "horse", "car": "car", "cat": None, "dog": None,
                     "skateboard": None, "duck": None, "turtle": None, "frisbee": None}


def _ytvos_specs(rng: np.random.Generator, n_objects: int, late: bool, n_frames: int) -> list[tuple[str, TrackSpec]]:
    cats = list(_YTVOS_CATEGORIES)
    lanes = [(0.0, 1.0)] if n_objects == 1 else [(0.0, 0.42), (0.58, 1.0)]
    if n_objects > 1 and rng.random() < 0.5:
        lanes.reverse()
    out = []
    for k in range(n_objects):
        cat = str(rng.choice(cats))
        shape = _YTVOS_CATEGORIES[cat] or str(rng.choice(_GENERIC_SHAPES))
        upright = shape in ("person", "car", "horse")
        area = rng.uniform(0.06, 0.2) if n_objects == 1 else rng.uniform(0.035, 0.1)
        first = int(rng.integers(1, max(2, n_frames // 2 + 1))) if late and k == 1 else 0
        spec = TrackSpec(shape, float(area), turn=15.0 if upright else 80.0, tilt=8.0 if upright else 40.0,
                          lane=lanes[k], first=first)
        out.append((cat, spec))
    return out


def generate_ytvos(root: Path, seed: int = 0, *, n_videos: int = 3, n_frames: int = 8,
                   size: Size = (256, 144)) -> Path:
    """Write a YouTube-VOS 2019 train split under ``root/ytvos`` and return that folder.

    ``train/meta.json`` lists each video's objects (category, annotated frames);
    ``train/JPEGImages/<vid>/<00000>.jpg`` (stems step 5) and ``train/Annotations/<vid>/
    <00000>.png`` (palette PNG, value = object id, VOC colours). One or two objects per
    video; in every third video (the second, fifth, ...) the second object enters late.
    """
    size = check_args(seed, size)
    out = prepare_root(Path(root) / "ytvos")
    split = out / "train"
    videos: dict[str, dict] = {}
    for v in range(n_videos):
        rng = rng_for(seed, "ytvos", v)
        vid = hex_id(rng, 10)
        while vid in videos:
            vid = hex_id(rng, 10)
        late = v % 3 == 1 and n_frames >= 2
        n_objects = 2 if late else int(rng.integers(1, 3))
        videos[vid] = _write_ytvos_video(rng, split, vid, n_objects, late, n_frames, size)
    meta = {"videos": {vid: videos[vid] for vid in sorted(videos)}}
    (split / "meta.json").write_text(json.dumps(meta))
    return out


def _write_ytvos_video(rng: np.random.Generator, split: Path, vid: str, n_objects: int, late: bool,
                       n_frames: int, size: Size) -> dict:
    w, h = size
    specs = _ytvos_specs(rng, n_objects, late, n_frames)
    sprites = [make_sprite(rng, spec.shape, sprite_side(spec, size)) for _, spec in specs]
    order = rng.permutation(n_objects)  # back to front
    actors = plan_tracks(rng, [sprites[i] for i in order], [specs[i][1] for i in order], size, n_frames)
    canvas_size = (round(w * 1.25), round(h * 1.2))
    canvas = photo_canvas(rng, canvas_size)
    cams = camera_path(rng, canvas_size, size, n_frames)
    gains = scene_gains(rng, n_frames)
    frames: dict[int, list[str]] = {k + 1: [] for k in range(n_objects)}
    for t in range(n_frames):
        stem = f"{5 * t:05d}"
        rgb, labels = render_frame(camera_view(canvas, cams[t], size), actors, t, gains[t])
        ids = np.zeros_like(labels)
        for paint_index, obj in enumerate(order):
            ids[labels == paint_index + 1] = obj + 1
        counts = np.bincount(ids.ravel(), minlength=n_objects + 1)
        for obj_id in frames:
            if counts[obj_id]:
                frames[obj_id].append(stem)
        save_jpeg(split / "JPEGImages" / vid / f"{stem}.jpg", rgb)
        save_png(split / "Annotations" / vid / f"{stem}.png", ids, list(_voc_palette()))
    return {"objects": {str(k): {"category": specs[k - 1][0], "frames": frames[k]}
                        for k in frames if frames[k]}}


@lru_cache(maxsize=1)
def _voc_palette() -> tuple[int, ...]:
    """The PASCAL VOC colour map (1 = (128, 0, 0), 2 = (0, 128, 0), ...), flattened."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return tuple(pal)
