"""The VIPSeg (``VIPSeg_720P``) layout of the sample."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from imprint.ingest.sample.common import (MARGIN, MIN_BOX, Size, check_args, prepare_root, rng_for, save_jpeg,
                                          save_png)
from imprint.ingest.sample.scenes import (TrackSpec, camera_path, camera_view, plan_tracks, render_frame,
                                          scene_gains, sprite_side)
from imprint.ingest.sample.sprites import make_sprite
from imprint.ingest.sample.textures import flat_colour, tinted_texture, to_u8, value_noise

# 1-based VIPSeg labels used here: name, isthing (the file lists all 124, 0-based ids)
_VIP_USED = {1: ("wall", 0), 2: ("ceiling", 0), 3: ("door", 1), 14: ("floor", 0), 16: ("grass", 0),
             19: ("road", 0), 22: ("building", 0), 29: ("sky", 0), 49: ("car", 1), 61: ("person", 1),
             62: ("cat", 1), 63: ("dog", 1), 67: ("tree", 0)}
_VIP_N = 124
_VIP_INVALID = 200
_WALL, _CEILING, _DOOR, _FLOOR, _GRASS, _ROAD, _BUILDING, _SKY, _CAR, _PERSON, _CAT, _DOG, _TREE = (
    1, 2, 3, 14, 16, 19, 22, 29, 49, 61, 62, 63, 67)
_VIP_SHAPES = {_PERSON: ("person", None), _CAR: ("car", None), _CAT: ("ellipse", "chelsea"), _DOG: ("horse", None)}
_YT_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _vipseg_categories() -> list[dict]:
    cats = []
    for cid in range(_VIP_N):
        name, isthing = _VIP_USED.get(cid + 1, (f"class_{cid}", 0))
        colour = [(cid * 67 + 40) % 256, (cid * 131 + 90) % 256, (cid * 197 + 150) % 256]
        cats.append({"id": cid, "name": name, "isthing": isthing, "color": colour})
    return cats


def _boundary(rng: np.random.Generator, width: int, base: float, amp: float) -> np.ndarray:
    """A wavy horizontal boundary: one y per column."""
    wave = value_noise(rng, 1, width, 1, cells=rng.uniform(2, 6), octaves=2)[0, :, 0]
    return base + amp * (wave - 0.5)


def _skyline(rng: np.random.Generator, width: int, base: float, amp: float) -> np.ndarray:
    """Roof heights of a row of buildings: one y per column, piecewise constant."""
    y = np.empty(width, np.float64)
    x = 0
    while x < width:
        step = int(rng.uniform(0.08, 0.2) * width) + 1
        y[x:x + step] = base + rng.uniform(-amp, amp)
        x += step
    return y


def _band_texture(rng: np.random.Generator, label: int, w: int, h: int) -> np.ndarray:
    """Float32 RGB texture for one stuff region."""
    if label == _SKY:
        yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        top, horizon = np.array([0.25, 0.45, 0.8], np.float32), np.array([0.75, 0.85, 0.95], np.float32)
        sky = top + (horizon - top) * yy
        clouds = np.clip(value_noise(rng, h, w, 1, cells=3, octaves=4, aspect=2.5) * 1.6 - 0.7, 0, 1)
        return np.broadcast_to(sky, (h, w, 3)) * (1 - clouds) + 0.95 * clouds
    if label == _WALL:
        if rng.random() < 0.5:
            return tinted_texture(rng, "brick", w, h, rng.uniform(0.55, 0.9, 3), contrast=0.5)
        return flat_colour(rng, w, h, rng.uniform(0.6, 0.92, 3), 0.15)
    if label == _CEILING:
        return flat_colour(rng, w, h, rng.uniform(0.8, 0.95) * np.ones(3), 0.1)
    if label == _FLOOR:
        grain = value_noise(rng, h, w, 1, cells=8, octaves=3, aspect=6.0)
        wood = np.array([0.55, 0.38, 0.22], np.float32) * rng.uniform(0.7, 1.2)
        return np.clip((0.75 + 0.5 * grain) * wood, 0, 1)
    if label == _BUILDING:
        tex = tinted_texture(rng, "brick", w, h, rng.uniform(0.4, 0.75, 3), contrast=0.6)
        yy, xx = np.mgrid[0:h, 0:w]
        cell = max(8, int(min(w, h) * rng.uniform(0.06, 0.1)))
        windows = ((xx % cell) < cell * 0.5) & ((yy % cell) < cell * 0.55)
        tex[windows] *= 0.45
        return tex
    if label == _TREE:
        leaves = tinted_texture(rng, "grass", w, h, (0.2, 0.42, 0.15), contrast=1.2)
        return leaves * (0.7 + 0.6 * value_noise(rng, h, w, 1, cells=6))
    if label == _GRASS:
        return tinted_texture(rng, "grass", w, h, (0.35, 0.6, 0.22), contrast=0.9)
    if label == _ROAD:
        return tinted_texture(rng, "gravel", w, h, rng.uniform(0.35, 0.5) * np.ones(3), contrast=0.6)
    raise ValueError(label)


def _stuff_canvas(rng: np.random.Generator, canvas: Size, indoor: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stuff regions covering a background canvas: uint8 RGB, uint16 raw labels, and the
    y of the lowest boundary (where floor or ground starts) per column."""
    cw, ch = canvas
    if indoor:
        bands = [(_CEILING, None), (_WALL, _boundary(rng, cw, ch * rng.uniform(0.08, 0.18), ch * 0.04)),
                 (_FLOOR, _boundary(rng, cw, ch * rng.uniform(0.6, 0.72), ch * 0.03))]
    else:
        mid = int(rng.choice([_BUILDING, _TREE]))
        edge = _skyline if mid == _BUILDING else _boundary
        bands = [(_SKY, None), (mid, edge(rng, cw, ch * rng.uniform(0.25, 0.4), ch * 0.12)),
                 (int(rng.choice([_ROAD, _GRASS])), _boundary(rng, cw, ch * rng.uniform(0.6, 0.72), ch * 0.05))]
    yy = np.arange(ch, dtype=np.float64)[:, None]
    labels = np.zeros((ch, cw), np.uint16)
    rgb = np.zeros((ch, cw, 3), np.float32)
    for label, top in bands:
        region = np.ones((ch, cw), bool) if top is None else yy >= top[None, :]
        labels[region] = label
    for label, _ in bands:
        sel = labels == label
        rgb[sel] = _band_texture(rng, label, cw, ch)[sel]
    # void (0) along the region boundaries, as in the released masks
    edges = np.zeros((ch, cw), bool)
    edges[1:] |= labels[1:] != labels[:-1]
    edges[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    labels[edges] = 0
    floor_y = bands[-1][1]
    assert floor_y is not None  # the last band always has a top boundary
    return to_u8(rgb), labels, floor_y


def _visible_box(cams: Sequence[np.ndarray], size: Size) -> tuple[float, float, float, float]:
    """The canvas rectangle every frame of a camera path sees."""
    w, h = size
    boxes = [(-m[0, 2] / m[0, 0], (w - m[0, 2]) / m[0, 0], -m[1, 2] / m[1, 1], (h - m[1, 2]) / m[1, 1]) for m in cams]
    return (max(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), min(b[3] for b in boxes))


def _add_door(rng: np.random.Generator, rgb: np.ndarray, labels: np.ndarray, floor_y: np.ndarray,
              box: tuple[float, float, float, float], size: Size) -> None:
    """A door (a thing, raw value 300) on the wall, inside the part of the canvas always in view."""
    x0, x1, y0, y1 = box
    dw = size[0] * rng.uniform(0.12, 0.16)
    left = rng.uniform(x0 + 2 * MARGIN, max(x0 + 2 * MARGIN, x1 - 2 * MARGIN - dw))
    cols = slice(int(left), int(left + dw))
    bottom = min(float(floor_y[cols].min()) - 1, y1 - 2 * MARGIN)
    top = max(bottom - size[1] * rng.uniform(0.45, 0.6), y0 + 2 * MARGIN)
    rows = slice(int(top), int(bottom))
    h, w = rows.stop - rows.start, cols.stop - cols.start
    if h < MIN_BOX or w < MIN_BOX:
        return
    wood = flat_colour(rng, w, h, rng.uniform(0.3, 0.6) * np.array([1.0, 0.75, 0.5]), 0.3)
    wood[int(h * 0.08):int(h * 0.45), int(w * 0.15):int(w * 0.85)] *= 0.85  # panels
    wood[int(h * 0.55):int(h * 0.92), int(w * 0.15):int(w * 0.85)] *= 0.85
    cv2.circle(wood, (int(w * 0.8), int(h * 0.52)), max(1, w // 14), (0.85, 0.75, 0.3), -1)
    rgb[rows, cols] = to_u8(wood)
    labels[rows, cols] = _DOOR * 100


def _vip_name(rng: np.random.Generator) -> str:
    ytid = "".join(_YT_CHARS[i] for i in rng.integers(0, len(_YT_CHARS), 11))
    return f"{int(rng.integers(1, 3600))}_{ytid}"


#: where the split lists go (``generate_vipseg(split_files=...)``)
SPLIT_FILES = ("inside", "beside", "json", "none")


def generate_vipseg(root: Path, seed: int = 0, *, n_videos: int = 2, n_frames: int = 6,
                    size: Size = (256, 144), split_files: str = "inside") -> Path:
    """Write a VIPSeg (``VIPSeg_720P``) sample under ``root/vipseg`` and return that folder.

    ``VIPSeg_720P/images/<video>/<8 digits>.jpg`` with irregular frame numbers,
    ``VIPSeg_720P/panomasks/<video>/<same>.png`` (16-bit raw values: 0 void, a stuff label
    ``< 125``, a thing ``label * 100 + k`` with ``k`` counted per class in the video, and a
    few invalid ``200`` pixels), ``panoVIPSeg_categories.json`` (124 entries, 0-based ids),
    and the split lists of the ``n_videos`` train videos and of the val videos (one more video per five
    train videos, at least one; their frames are in ``images/`` too, as in the archive), where
    ``split_files`` says:

    - ``inside``: ``VIPSeg_720P/{train,val}.txt`` (the README's picture of the converted folder);
    - ``beside``: ``VIPSeg/{train,val,test}.txt`` with ``VIPSeg/VIPSeg_720P/`` beside them, where the
      archive keeps them and the owners' conversion scripts (run in ``VIPSeg/``) read them;
    - ``json``: only ``VIPSeg_720P/panoptic_gt_VIPSeg_{train,val}.json`` (``splitjson.py``'s output:
      ``videos``, ``annotations`` with ``segments_info``, ``categories``; segment ids are the raw values);
    - ``none``: no split file at all.
    """
    size = check_args(seed, size)
    if split_files not in SPLIT_FILES:
        raise ValueError(f"split_files must be one of {SPLIT_FILES}, got {split_files!r}")
    out = prepare_root(Path(root) / "vipseg")
    vip = out / "VIPSeg" / "VIPSeg_720P" if split_files == "beside" else out / "VIPSeg_720P"
    vip.mkdir(parents=True)
    n_val = max(1, round(n_videos / 5)) if n_videos > 0 else 0
    splits: dict[str, list[str]] = {"train": [], "val": []}
    frames: dict[str, list[tuple[str, dict[int, int]]]] = {}
    names: set[str] = set()
    for split, count in (("train", n_videos), ("val", n_val)):
        for v in range(count):
            rng = rng_for(seed, "vipseg", split, v)
            name = _vip_name(rng)
            while name in names:
                name = _vip_name(rng)
            names.add(name)
            splits[split].append(name)
            frames[name] = _write_vipseg_video(rng, vip, name, n_frames, size)
    (vip / "panoVIPSeg_categories.json").write_text(json.dumps(_vipseg_categories()))
    for split, videos in splits.items():
        if split_files in ("inside", "beside"):
            (vip.parent / f"{split}.txt" if split_files == "beside" else vip / f"{split}.txt").write_text(
                "".join(f"{n}\n" for n in sorted(videos)))
        elif split_files == "json":
            (vip / f"panoptic_gt_VIPSeg_{split}.json").write_text(
                json.dumps(_split_json(sorted(videos), frames, size)))
    if split_files == "beside":
        (vip.parent / "test.txt").write_text("")  # the test videos have no masks; none in the sample
    return out


def _split_json(videos: list[str], frames: dict[str, list[tuple[str, dict[int, int]]]], size: Size) -> dict:
    """``panoptic_gt_VIPSeg_<split>.json`` of ``videos`` (the structure ``splitjson.py`` writes)."""
    def segment(value: int, area: int) -> dict:
        return {"id": value, "category_id": (value if value < 125 else value // 100) - 1, "iscrowd": 0, "area": area}

    return {
        "videos": [{"video_id": v, "images": [{"id": stem, "width": size[0], "height": size[1],
                                               "file_name": f"{stem}.png"} for stem, _ in frames[v]]}
                   for v in videos],
        "annotations": [{"video_id": v, "annotations": [
            {"image_id": stem, "file_name": f"{stem}.png",
             "segments_info": [segment(value, area) for value, area in sorted(areas.items())]}
            for stem, areas in frames[v]]} for v in videos],
        "categories": _vipseg_categories(),
    }


def _write_vipseg_video(rng: np.random.Generator, vip: Path, name: str, n_frames: int,
                        size: Size) -> list[tuple[str, dict[int, int]]]:
    """Write one video; returns its frames as ``(stem, {valid raw value: area})``."""
    w, h = size
    indoor = bool(rng.random() < 0.5)
    canvas_size = (round(w * 1.3), round(h * 1.15))
    canvas, stuff, floor_y = _stuff_canvas(rng, canvas_size, indoor)
    cams = camera_path(rng, canvas_size, size, n_frames, zoom=0.05)
    if indoor and rng.random() < 0.7:
        _add_door(rng, canvas, stuff, floor_y, _visible_box(cams, size), size)
    n_things = int(rng.integers(2, 4))
    classes = [_PERSON] + [int(rng.choice([_PERSON, _CAT, _DOG] if indoor else [_PERSON, _CAR, _DOG]))
                          for _ in range(n_things - 1)]
    lanes = [(i / n_things - 0.08, (i + 1) / n_things + 0.08) for i in range(n_things)]
    order = rng.permutation(n_things)
    specs, sprites, codes = [], [], []
    per_class: dict[int, int] = {}
    for k in range(n_things):
        cls = classes[k]
        shape, texture = _VIP_SHAPES[cls]
        spec = TrackSpec(shape, float(rng.uniform(0.03, 0.08)), turn=10.0, tilt=5.0,
                          lane=(max(0.0, lanes[order[k]][0]), min(1.0, lanes[order[k]][1])))
        specs.append(spec)
        sprites.append(make_sprite(rng, shape, sprite_side(spec, size), texture))
        codes.append(cls * 100 + per_class.get(cls, 0))
        per_class[cls] = per_class.get(cls, 0) + 1
    actors = plan_tracks(rng, sprites, specs, size, n_frames)
    gains = scene_gains(rng, n_frames)
    written: list[tuple[str, dict[int, int]]] = []
    for t, number in enumerate(_vip_numbers(rng, n_frames)):
        stem = f"{number:08d}"
        rgb, labels = render_frame(camera_view(canvas, cams[t], size), actors, t, gains[t], strict=False)
        pano = camera_view(stuff, cams[t], size, nearest=True)
        for k, code in enumerate(codes):
            pano[labels == k + 1] = code
        _mark_invalid(rng, pano)
        save_jpeg(vip / "images" / name / f"{stem}.jpg", rgb)
        save_png(vip / "panomasks" / name / f"{stem}.png", pano)
        values, areas = np.unique(pano, return_counts=True)
        written.append((stem, {int(v): int(a) for v, a in zip(values, areas) if 0 < v < 125 or v >= 300}))
    return written


def _vip_numbers(rng: np.random.Generator, n: int) -> list[int]:
    """Frame numbers from 1 with an irregular stride (mostly 5, some 10), as the release has."""
    steps = rng.choice([5, 5, 5, 10], max(0, n - 1))
    if n > 2 and len(set(steps.tolist())) == 1:
        steps[rng.integers(len(steps))] = 15 - steps[0]
    return [1, *(1 + np.cumsum(steps)).tolist()]


def _mark_invalid(rng: np.random.Generator, pano: np.ndarray) -> None:
    """A few 2x2 specks of the out-of-range value 200 on stuff, as the released masks have."""
    h, w = pano.shape
    placed = 0
    for _ in range(50):
        y, x = int(rng.integers(0, h - 2)), int(rng.integers(0, w - 2))
        patch = pano[y:y + 2, x:x + 2]
        if (patch < 125).all():
            patch[...] = _VIP_INVALID
            placed += 1
            if placed == 3:
                break
