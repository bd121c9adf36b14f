"""Clips of the sample: sprites moving, turning and re-lit along tracks, painted over a background seen
through a panning camera, with each frame's label map."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from imprint.ingest.sample.common import MARGIN, MIN_BOX, Size, frac, lerp, smoothstep
from imprint.ingest.sample.sprites import Sprite
from imprint.ingest.sample.textures import apply_gain

# nominal alpha fill of each shape in its square sprite (sizes the sprite before drawing)
_FILL = {"ellipse": 0.5, "polygon": 0.45, "star": 0.3, "logo": 0.3, "horse": 0.3, "person": 0.13, "car": 0.3}


# --------------------------------------------------------------------------- motion


@dataclass(frozen=True)
class Pose:
    """Where a sprite is drawn in one frame, and how it is lit."""

    cx: float
    cy: float
    angle: float  # degrees, counter-clockwise on screen
    scale: float
    gain: np.ndarray  # per-channel light gain
    light: float  # direction of the light ramp across the object, radians


def _affine(sprite: Sprite, pose: Pose) -> np.ndarray:
    """The 2x3 map from sprite pixels to frame pixels."""
    a = math.radians(pose.angle)
    cos, sin = pose.scale * math.cos(a), pose.scale * math.sin(a)
    c = (sprite.size - 1) / 2
    return np.array([[cos, sin, pose.cx - (cos + sin) * c],
                     [-sin, cos, pose.cy - (cos - sin) * c]], np.float64)


def extent(sprite: Sprite, angle: float, scale: float) -> tuple[float, float, float, float]:
    """xmin, xmax, ymin, ymax of the sprite's rotated, scaled box, relative to its centre."""
    a = math.radians(angle)
    cos, sin = scale * math.cos(a), scale * math.sin(a)
    x0, x1, y0, y1 = sprite.box
    corners = np.array([(x0, y0), (x1, y0), (x0, y1), (x1, y1)])
    xs = cos * corners[:, 0] + sin * corners[:, 1]
    ys = -sin * corners[:, 0] + cos * corners[:, 1]
    return float(xs.min()), float(xs.max()), float(ys.min()), float(ys.max())


@dataclass(frozen=True)
class TrackSpec:
    """How one object moves in a clip."""

    shape: str
    area: float  # target fraction of the frame
    turn: float  # most rotation over the clip, degrees
    tilt: float  # most rotation at the start, degrees
    lane: tuple[float, float] = (0.0, 1.0)  # part of the free width its centre travels in
    first: int = 0  # first frame it is in


def sprite_side(spec: TrackSpec, size: Size) -> int:
    """A sprite side that puts the object at about its own resolution (scale near 1)."""
    side = math.sqrt(spec.area * size[0] * size[1] / _FILL[spec.shape])
    return int(np.clip(round(side / 8) * 8, 48, 1024))


def _track(rng: np.random.Generator, sprite: Sprite, spec: TrackSpec, size: Size, n: int) -> list[Pose | None]:
    """Poses for ``n`` frames: moving, turning, scaling and re-lit, always inside the frame."""
    w, h = size
    base = math.sqrt(spec.area * w * h / max(sprite.area, 1.0))
    k0, k1 = np.exp(rng.uniform(np.log(0.82), np.log(1.22), 2))
    a0 = rng.uniform(-spec.tilt, spec.tilt)
    a1 = a0 + rng.uniform(-spec.turn, spec.turn)
    ts = [smoothstep(frac(t, n)) for t in range(n)]
    angles = [float(lerp(a0, a1, t)) for t in ts]
    scales = []
    for t, ang in zip(ts, angles):
        sc = base * float(lerp(k0, k1, t))
        x0, x1, y0, y1 = extent(sprite, ang, sc)
        fit = min((w - 1 - 2 * MARGIN) / (x1 - x0), (h - 1 - 2 * MARGIN) / (y1 - y0), 1.0)
        scales.append(sc * fit * (0.98 if fit < 1 else 1.0))
    ext = [extent(sprite, a, s) for a, s in zip(angles, scales)]
    lo_x = max(MARGIN - e[0] for e in ext)
    hi_x = min(w - 1 - MARGIN - e[1] for e in ext)
    lo_y = max(MARGIN - e[2] for e in ext)
    hi_y = min(h - 1 - MARGIN - e[3] for e in ext)
    if hi_x < lo_x:
        lo_x = hi_x = (lo_x + hi_x) / 2
    if hi_y < lo_y:
        lo_y = hi_y = (lo_y + hi_y) / 2
    lane_lo = lo_x + (hi_x - lo_x) * spec.lane[0]
    lane_hi = lo_x + (hi_x - lo_x) * spec.lane[1]
    p0 = np.array([rng.uniform(lane_lo, lane_hi), rng.uniform(lo_y, hi_y)])
    p1 = np.array([rng.uniform(lane_lo, lane_hi), rng.uniform(lo_y, hi_y)])
    wobble = rng.uniform(0.0, 0.03) * min(w, h)
    phase = rng.uniform(0, 2 * np.pi)
    b0, b1 = rng.uniform(0.7, 1.25, 2)
    if abs(b1 - b0) < 0.15:
        b1 = b0 + 0.15 if b0 < 1.0 else b0 - 0.15
    c0, c1 = 1.0 + rng.uniform(-0.1, 0.1, (2, 3))
    l0 = rng.uniform(0, 2 * np.pi)
    l1 = l0 + rng.uniform(-np.pi / 2, np.pi / 2)
    poses: list[Pose | None] = []
    for i, (t, ang, sc, e) in enumerate(zip(ts, angles, scales, ext)):
        if i < spec.first:
            poses.append(None)
            continue
        p = lerp(p0, p1, t) + wobble * np.array([math.sin(phase + 3 * t), math.cos(phase + 2 * t)])
        cx = float(np.clip(p[0], MARGIN - e[0], w - 1 - MARGIN - e[1]))
        cy = float(np.clip(p[1], MARGIN - e[2], h - 1 - MARGIN - e[3]))
        gain = (float(lerp(b0, b1, t)) * lerp(c0, c1, t)).astype(np.float32)
        poses.append(Pose(cx, cy, ang, sc, gain, float(lerp(l0, l1, t))))
    return poses


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class _Layer:
    """A sprite warped into its box in the frame."""

    x0: int
    y0: int
    rgb: np.ndarray | None
    alpha: np.ndarray


def _layer(sprite: Sprite, pose: Pose, size: Size, with_rgb: bool = True) -> _Layer:
    w, h = size
    e = extent(sprite, pose.angle, pose.scale)
    x0, x1 = max(0, math.floor(pose.cx + e[0]) - 2), min(w, math.ceil(pose.cx + e[1]) + 3)
    y0, y1 = max(0, math.floor(pose.cy + e[2]) - 2), min(h, math.ceil(pose.cy + e[3]) + 3)
    m = _affine(sprite, pose)
    m[:, 2] -= (x0, y0)
    dsize = (x1 - x0, y1 - y0)
    warp = lambda img: cv2.warpAffine(img, m, dsize, flags=cv2.INTER_LINEAR,  # noqa: E731
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return _Layer(x0, y0, warp(sprite.rgb) if with_rgb else None, warp(sprite.alpha))


def _paint(frame: np.ndarray, layer: _Layer, pose: Pose) -> None:
    """Composite a lit layer over a uint8 RGB frame, in place."""
    h, w = layer.alpha.shape
    roi = frame[layer.y0:layer.y0 + h, layer.x0:layer.x0 + w]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    radius = max(h, w) / 2
    ramp = 1.0 + 0.22 * ((xx - (pose.cx - layer.x0)) * math.cos(pose.light)
                         + (yy - (pose.cy - layer.y0)) * math.sin(pose.light)) / radius
    fg = np.asarray(layer.rgb) * (pose.gain * 255.0)[None, None, :] * ramp[..., None]
    a = layer.alpha[..., None]
    roi[...] = np.clip(roi * (1.0 - a) + fg * a + 0.5, 0, 255).astype(np.uint8)


def _stamp(labels: np.ndarray, layer: _Layer, value: int) -> None:
    h, w = layer.alpha.shape
    roi = labels[layer.y0:layer.y0 + h, layer.x0:layer.x0 + w]
    roi[layer.alpha >= 0.5] = value


def _visible_ok(labels: np.ndarray, value: int, own: int) -> bool:
    """The object shows enough of itself: most of its pixels, 1.5% of the frame, a 16-pixel box."""
    sel = labels == value
    n = int(np.count_nonzero(sel))
    if n < max(0.7 * own, 0.015 * labels.size):
        return False
    return all(np.ptp(np.flatnonzero(sel.any(axis=axis))) + 1 >= MIN_BOX for axis in (0, 1))


@dataclass(frozen=True)
class Actor:
    """An object of a clip: its sprite and one pose (or None: absent) per frame."""

    sprite: Sprite
    poses: list[Pose | None]


def plan_tracks(rng: np.random.Generator, sprites: Sequence[Sprite], specs: Sequence[TrackSpec], size: Size,
          n: int, attempts: int = 24) -> list[Actor]:
    """Tracks for all objects (painting order = list order) such that none hides another much."""
    actors: list[Actor] = []
    for _ in range(attempts):
        actors = [Actor(sp, _track(rng, sp, spec, size, n)) for sp, spec in zip(sprites, specs)]
        if all(_frame_ok(actors, t, size) for t in range(n)):
            break
    return actors


def _compose(actors: Sequence[Actor], t: int, size: Size,
             frame: np.ndarray | None = None) -> tuple[np.ndarray, dict[int, int]]:
    """Frame ``t``'s label map (label ``i + 1`` = actor ``i``'s visible pixels) and each present
    actor's own pixel count; with ``frame`` (uint8 RGB) the actors are also painted on it."""
    labels = np.zeros((size[1], size[0]), np.uint8)
    own: dict[int, int] = {}
    for i, actor in enumerate(actors):
        pose = actor.poses[t]
        if pose is None:
            continue
        layer = _layer(actor.sprite, pose, size, with_rgb=frame is not None)
        if frame is not None:
            _paint(frame, layer, pose)
        _stamp(labels, layer, i + 1)
        own[i + 1] = int(np.count_nonzero(layer.alpha >= 0.5))
    return labels, own


def _frame_ok(actors: Sequence[Actor], t: int, size: Size) -> bool:
    labels, own = _compose(actors, t, size)
    return all(_visible_ok(labels, v, n) for v, n in own.items())


def render_frame(background: np.ndarray, actors: Sequence[Actor], t: int, scene_gain: np.ndarray,
            strict: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One frame: the actors over ``background`` (uint8 RGB, not changed), lit by ``scene_gain``,
    and their label map. With ``strict`` an actor that shows too little of itself (hidden by
    another) is left out of the label map."""
    frame = background.copy()
    labels, own = _compose(actors, t, (background.shape[1], background.shape[0]), frame)
    if strict:
        for value, n in own.items():
            if not _visible_ok(labels, value, n):
                labels[labels == value] = 0
    return apply_gain(frame, scene_gain), labels


# --------------------------------------------------------------------------- cameras and light


def camera_path(rng: np.random.Generator, canvas: Size, size: Size, n: int,
                 zoom: float = 0.08) -> list[np.ndarray]:
    """Canvas-to-frame 2x3 maps of a camera that pans and zooms a little over the clip."""
    cw, ch = canvas
    w, h = size
    z0, z1 = 1.0, 1.0 + rng.uniform(0.0, zoom)
    if rng.random() < 0.5:
        z0, z1 = z1, z0
    c0 = np.array([rng.uniform(w / 2, cw - w / 2), rng.uniform(h / 2, ch - h / 2)])
    c1 = np.array([rng.uniform(w / 2, cw - w / 2), rng.uniform(h / 2, ch - h / 2)])
    maps = []
    for i in range(n):
        t = smoothstep(frac(i, n))
        z = float(lerp(z0, z1, t))
        cx, cy = lerp(c0, c1, t)
        maps.append(np.array([[z, 0.0, w / 2 - z * cx], [0.0, z, h / 2 - z * cy]]))
    return maps


def camera_view(canvas: np.ndarray, cam: np.ndarray, size: Size, nearest: bool = False) -> np.ndarray:
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(canvas, cam, size, flags=flags, borderMode=cv2.BORDER_REFLECT)


def scene_gains(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Slowly drifting global light (brightness and white balance) over a clip."""
    g0, g1 = rng.uniform(0.88, 1.12, (2, 3))
    return [lerp(g0, g1, frac(i, n)).astype(np.float32) for i in range(n)]
