"""Deterministic synthetic sample data in the official on-disk layouts of four datasets.

Used by ``imprint ingest sample``, ``make demo``, the benchmarks and the tests. Every
file is a pure function of ``seed`` and the arguments: two runs with the same seed
write byte-identical trees, and writing the same root again overwrites it identically.

Content: short videos of textured objects (ellipses, polygons, stars, the scikit-image
horse silhouette, halves of the scikit-image logo, stick-figure people and cars) that
move, turn, scale and change lighting over natural backgrounds (photos that ship
inside the scikit-image wheel, mixed with procedural noise); multi-view captures of a
textured box or cylinder turning on a turntable; groups of portrait photos.

Layouts (``generate_*`` returns the folder a reader takes as ``--root``):

* ``ytvos``: YouTube-VOS 2019, ``train/meta.json``, ``train/JPEGImages/<vid>/00000.jpg``
  (step 5) and ``train/Annotations/<vid>/00000.png`` (palette PNG, value = object id).
* ``vipseg``: ``VIPSeg_720P/images/<video>/00000001.jpg``, ``VIPSeg_720P/panomasks/<video>/
  00000001.png`` (16-bit raw panoptic values), ``panoVIPSeg_categories.json``,
  ``train.txt`` and ``val.txt``.
* ``ppr10k``: ``source/<g>_<i>.tif`` (16-bit), ``target_a/<g>_<i>.tif`` (8-bit) and
  ``masks/<g>_<i>.png`` (0 / 255).
* ``mvimgnet``: ``<class>/<instance>/images/001.jpg``, ``<class>/<instance>/masks/001.png``
  (soft 0..255) and ``mvimgnet_category.txt`` (``id,name``).

Each written source folder holds a small marker file; a folder without it is never
overwritten (:class:`FileExistsError`), so a real dataset cannot be replaced by mistake.
"""

from __future__ import annotations

import json
import math
import shutil
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

__all__ = ["SOURCES", "generate", "generate_ytvos", "generate_vipseg", "generate_ppr10k", "generate_mvimgnet"]

SOURCES = ("ytvos", "vipseg", "ppr10k", "mvimgnet")

Size = tuple[int, int]  # (width, height)

_JPEG_QUALITY = 90
_MARKER = ".imprint-sample"
_MARGIN = 3  # pixels kept free between every object and the frame border
_MIN_BOX = 16  # smallest box side of an annotated object, pixels
_MIN_SIDE = 64  # smallest accepted frame side

_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")
_GENERIC_SHAPES = ("ellipse", "polygon", "star", "logo")
# nominal alpha fill of each shape in its square sprite (sizes the sprite before drawing)
_FILL = {"ellipse": 0.5, "polygon": 0.45, "star": 0.3, "logo": 0.3, "horse": 0.3, "person": 0.13, "car": 0.3}


# --------------------------------------------------------------------------- randomness


def _rng(seed: int, *keys: int | str) -> np.random.Generator:
    """An independent generator for ``seed`` and a path of keys (source name, item index...)."""
    if seed < 0:
        raise ValueError("seed must be >= 0")
    words = [int(seed)] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng(words)


def _hex_id(rng: np.random.Generator, n_chars: int) -> str:
    return bytes(rng.integers(0, 256, size=(n_chars + 1) // 2, dtype=np.uint8)).hex()[:n_chars]


def _lerp(a: np.ndarray | float, b: np.ndarray | float, t: float) -> np.ndarray | float:
    return a + (b - a) * t


def _smoothstep(t: float) -> float:
    return t * t * (3.0 - 2.0 * t)


def _frac(t: int, n: int) -> float:
    return t / (n - 1) if n > 1 else 0.0


# --------------------------------------------------------------------------- assets


@lru_cache(maxsize=None)
def _skimage(name: str) -> np.ndarray:
    """An image shipped inside the scikit-image wheel (loads offline), read-only."""
    from skimage import data

    img = np.ascontiguousarray(getattr(data, name)())
    img.setflags(write=False)
    return img


def _photo(name: str) -> np.ndarray:
    return _skimage(name)[..., :3]


@lru_cache(maxsize=None)
def _logo_parts() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The logo's RGB and three shapes from it: the disc and its green and orange halves.

    The logo's alpha channel is fully opaque, so its shapes come from its colours.
    """
    rgb = _skimage("logo")[..., :3].astype(np.int16)
    white = rgb.min(axis=2) > 225
    r, g = rgb[..., 0], rgb[..., 1]
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    close = lambda m: cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_CLOSE, kernel) > 0  # noqa: E731
    disc = np.zeros(white.shape, np.uint8)
    cv2.circle(disc, (white.shape[1] // 2, white.shape[0] // 2), min(white.shape) // 2 - 4, 1, -1)
    shapes = {"disc": close(~white) & (disc > 0), "green": close(~white & (g > r)), "orange": close(~white & (r > g))}
    return _skimage("logo")[..., :3], shapes


# --------------------------------------------------------------------------- procedural images


def _noise(rng: np.random.Generator, h: int, w: int, channels: int = 1, cells: float = 5.0,
           octaves: int = 3, aspect: float = 1.0) -> np.ndarray:
    """Smooth value noise in [0, 1], float32 (h, w, channels); ``aspect`` > 1 stretches it along x."""
    out = np.zeros((h, w, channels), np.float32)
    total = 0.0
    for octave in range(octaves):
        n = cells * 2**octave
        gw = max(2, round(n * w / max(h, w) / aspect)) + 1
        gh = max(2, round(n * h / max(h, w))) + 1
        grid = rng.random((gh, gw, channels), dtype=np.float32)
        up = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, channels)
        amp = 0.5**octave
        out += amp * up
        total += amp
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def _crop(rng: np.random.Generator, img: np.ndarray, w: int, h: int, min_frac: float = 0.4) -> np.ndarray:
    """A random crop of ``img`` with the aspect of (w, h), resized to it, maybe mirrored."""
    ih, iw = img.shape[:2]
    cw_max = min(iw, ih * w / h)
    cw = cw_max * rng.uniform(min_frac, 1.0)
    ch = cw * h / w
    x = int(rng.uniform(0, iw - cw))
    y = int(rng.uniform(0, ih - ch))
    part = img[y:y + max(1, int(ch)), x:x + max(1, int(cw))]
    interp = cv2.INTER_AREA if part.shape[1] > w else cv2.INTER_CUBIC
    out = cv2.resize(part, (w, h), interpolation=interp)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def _texture(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """An object texture: a photo crop mixed with coloured noise and a tint, float32 RGB in [0, 1]."""
    base = _crop(rng, _photo(str(rng.choice(_PHOTOS))), w, h, 0.2).astype(np.float32) / 255.0
    noise = _noise(rng, h, w, 3, cells=rng.uniform(2, 8))
    mix = rng.uniform(0.25, 0.5)
    tex = (1.0 - mix) * base + mix * noise
    if rng.random() < 0.35:  # stripes
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        phi = rng.uniform(0, np.pi)
        period = rng.uniform(0.08, 0.25) * max(w, h)
        tex *= (0.8 + 0.2 * np.sin(2 * np.pi * (xx * np.cos(phi) + yy * np.sin(phi)) / period))[..., None]
    tex = 0.5 + (tex - 0.5) * rng.uniform(1.0, 1.5)  # contrast
    return np.clip(tex * rng.uniform(0.6, 1.3, 3).astype(np.float32), 0.0, 1.0)


def _tinted(rng: np.random.Generator, name: str, w: int, h: int, colour: Sequence[float],
            contrast: float = 0.5) -> np.ndarray:
    """A grayscale scikit-image texture (brick, grass, gravel) tinted with ``colour``, float32 RGB."""
    gray = _crop(rng, _skimage(name), w, h, 0.5).astype(np.float32) / 255.0
    gray = 1.0 + (gray - float(gray.mean())) * contrast
    return np.clip(gray[..., None] * np.asarray(colour, np.float32), 0.0, 1.0)


def _flat(rng: np.random.Generator, w: int, h: int, colour: Sequence[float], amount: float = 0.12) -> np.ndarray:
    """A flat colour with a little low-frequency variation, float32 RGB."""
    var = 1.0 + amount * (_noise(rng, h, w, 1, cells=3) - 0.5)
    return np.clip(var * np.asarray(colour, np.float32), 0.0, 1.0)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _gain_lut(gain: np.ndarray) -> np.ndarray:
    ramp = np.arange(256, dtype=np.float32)[:, None] * gain[None, :].astype(np.float32)
    return np.clip(ramp + 0.5, 0, 255).astype(np.uint8).reshape(256, 1, 3)


def _apply_gain(rgb: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Per-channel gain of a uint8 RGB image (global lighting), through a lookup table."""
    return cv2.LUT(rgb, _gain_lut(gain))


# --------------------------------------------------------------------------- shapes (alpha in [0, 1])


def _draw_aa(s: int, draw: Callable[[np.ndarray], None]) -> np.ndarray:
    canvas = np.zeros((s, s), np.uint8)
    draw(canvas)
    return canvas.astype(np.float32) / 255.0


def _pts(points: np.ndarray) -> list[np.ndarray]:
    """Polygon points for cv2 drawing with 4 fractional bits."""
    return [np.round(np.asarray(points) * 16).astype(np.int32).reshape(-1, 1, 2)]


def _shape_ellipse(rng: np.random.Generator, s: int) -> np.ndarray:
    c = (s - 1) / 2
    axes = (0.46 * s, 0.46 * s * rng.uniform(0.45, 0.95))
    return _draw_aa(s, lambda cv: cv2.ellipse(cv, (round(c * 16), round(c * 16)),
                                              (round(axes[0] * 16), round(axes[1] * 16)),
                                              0, 0, 360, 255, -1, cv2.LINE_AA, 4))


def _shape_polygon(rng: np.random.Generator, s: int) -> np.ndarray:
    n = int(rng.integers(5, 9))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    ang = 0.5 * ang + 0.5 * np.linspace(0, 2 * np.pi, n, endpoint=False)  # spread the corners out
    rad = s * rng.uniform(0.3, 0.47, n)
    pts = (s - 1) / 2 + np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
    return _draw_aa(s, lambda cv: cv2.fillPoly(cv, _pts(pts), 255, cv2.LINE_AA, 4))


def _shape_star(rng: np.random.Generator, s: int) -> np.ndarray:
    n = int(rng.integers(5, 8))
    ang = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False) + rng.uniform(0, np.pi)
    rad = np.where(np.arange(2 * n) % 2 == 0, 0.47, 0.47 * rng.uniform(0.45, 0.62)) * s
    pts = (s - 1) / 2 + np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
    return _draw_aa(s, lambda cv: cv2.fillPoly(cv, _pts(pts), 255, cv2.LINE_AA, 4))


def _fit(img: np.ndarray, mask: np.ndarray, s: int, fill: float = 0.92) -> np.ndarray:
    """``img`` cropped to ``mask``'s box, resized (aspect kept) to fit ``fill * s``, centred in
    an s x s float32 canvas; the same call with the mask itself gives the matching alpha."""
    ys, xs = np.nonzero(mask)
    crop = img[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32)
    k = fill * s / max(crop.shape[:2])
    w, h = max(1, round(crop.shape[1] * k)), max(1, round(crop.shape[0] * k))
    small = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
    out = np.zeros((s, s, *img.shape[2:]), np.float32)
    y0, x0 = (s - h) // 2, (s - w) // 2
    out[y0:y0 + h, x0:x0 + w] = small
    return out


def _shape_horse(rng: np.random.Generator, s: int) -> np.ndarray:
    horse = ~_skimage("horse")  # the silhouette is False on white
    horse = horse[:, ::-1] if rng.random() < 0.5 else horse
    return _fit(horse, horse, s)


# --------------------------------------------------------------------------- sprites


@dataclass(frozen=True)
class _Sprite:
    """A textured object in its own square frame: colour, coverage, area and box."""

    rgb: np.ndarray  # (s, s, 3) float32 in [0, 1]
    alpha: np.ndarray  # (s, s) float32 in [0, 1]
    area: float  # pixels with alpha >= 0.5
    box: tuple[float, float, float, float]  # xmin, xmax, ymin, ymax of alpha > 0, from the centre

    @property
    def size(self) -> int:
        return self.alpha.shape[0]


def _shaded(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Darken towards the silhouette's rim so the flat shape reads as a solid object."""
    s = alpha.shape[0]
    inner = cv2.GaussianBlur(alpha, (0, 0), max(1.0, s / 40))
    return (rgb * (0.55 + 0.45 * np.sqrt(np.clip(inner, 0, 1)))[..., None]).astype(np.float32)


def _sprite(rgb: np.ndarray, alpha: np.ndarray) -> _Sprite:
    """A sprite from colour and coverage, rim-shaded, with its area and box measured."""
    s = alpha.shape[0]
    ys, xs = np.nonzero(alpha > 0.01)
    c = (s - 1) / 2
    box = (float(xs.min() - c - 1), float(xs.max() - c + 1), float(ys.min() - c - 1), float(ys.max() - c + 1))
    return _Sprite(np.ascontiguousarray(_shaded(rgb, alpha), np.float32), np.ascontiguousarray(alpha, np.float32),
                   float(np.count_nonzero(alpha >= 0.5)), box)


def _parts_sprite(s: int, prims: Sequence[tuple], colours: dict[int, np.ndarray]) -> _Sprite:
    """A sprite from drawing primitives, each with a part id that picks its texture.

    A primitive is ``("poly", points, part)``, ``("ellipse", centre, axes, part)`` or
    ``("line", p0, p1, thickness, part)``, in units of the sprite side.
    """
    parts = np.zeros((s, s), np.uint8)
    cover = np.zeros((s, s), np.uint8)
    for prim in prims:
        kind, part = prim[0], prim[-1]
        for canvas, value, aa in ((parts, part, cv2.LINE_8), (cover, 255, cv2.LINE_AA)):
            if kind == "poly":
                cv2.fillPoly(canvas, _pts(np.asarray(prim[1]) * s), value, aa, 4)
            elif kind == "ellipse":
                (cx, cy), (ax, ay) = prim[1], prim[2]
                cv2.ellipse(canvas, (round(cx * s * 16), round(cy * s * 16)),
                            (round(ax * s * 16), round(ay * s * 16)), 0, 0, 360, value, -1, aa, 4)
            else:
                p0, p1, thick = prim[1], prim[2], max(1, round(prim[3] * s))
                cv2.line(canvas, (round(p0[0] * s * 16), round(p0[1] * s * 16)),
                         (round(p1[0] * s * 16), round(p1[1] * s * 16)), value, thick, aa, 4)
    rgb = np.zeros((s, s, 3), np.float32)
    for part, tex in colours.items():
        sel = parts == part
        rgb[sel] = tex[sel]
    # anti-aliased edge pixels outside every part take the nearest part's colour
    edge = (cover > 0) & (parts == 0)
    if edge.any():
        dilated = cv2.dilate(rgb, np.ones((3, 3), np.uint8))
        rgb[edge] = dilated[edge]
    return _sprite(rgb, cover.astype(np.float32) / 255.0)


_SKIN = np.array([[0.95, 0.80, 0.69], [0.88, 0.67, 0.53], [0.78, 0.53, 0.26], [0.55, 0.35, 0.17]], np.float32)
_HAIR = np.array([[0.10, 0.07, 0.05], [0.35, 0.22, 0.10], [0.75, 0.60, 0.35], [0.05, 0.05, 0.05]], np.float32)


def _person_sprite(rng: np.random.Generator, s: int) -> _Sprite:
    """A standing figure: head, hair, torso, arms, legs; skin, shirt and trousers textured."""
    j = lambda a: a * rng.uniform(0.85, 1.15)  # noqa: E731
    sh = j(0.115)  # half shoulder width
    hip_y = j(0.55)
    la, ra = rng.uniform(-0.5, 0.35, 2)  # arm swing (radians from vertical)
    ll, rl = rng.uniform(-0.25, 0.25, 2)  # leg swing
    arm, leg = j(0.26), 0.93 - hip_y

    def limb(x: float, y: float, length: float, angle: float) -> tuple[float, float]:
        return x + length * math.sin(angle), y + length * math.cos(angle)

    lh, rh = limb(0.5 - sh, 0.26, arm, -abs(la)), limb(0.5 + sh, 0.26, arm, abs(ra))
    lf, rf = limb(0.46, hip_y, leg, -abs(ll) * 0.6), limb(0.54, hip_y, leg, abs(rl) * 0.6)
    prims = [
        ("line", (0.46, hip_y), lf, 0.075, 3), ("line", (0.54, hip_y), rf, 0.075, 3),
        ("ellipse", (lf[0] - 0.015, lf[1]), (0.04, 0.02), 5), ("ellipse", (rf[0] + 0.015, rf[1]), (0.04, 0.02), 5),
        ("line", (0.5 - sh, 0.27), lh, 0.055, 2), ("line", (0.5 + sh, 0.27), rh, 0.055, 2),
        ("ellipse", lh, (0.028, 0.028), 1), ("ellipse", rh, (0.028, 0.028), 1),
        ("poly", [(0.5 - sh, 0.24), (0.5 + sh, 0.24), (0.5 + sh * 0.8, hip_y + 0.02),
                  (0.5 - sh * 0.8, hip_y + 0.02)], 2),
        ("line", (0.5, 0.17), (0.5, 0.25), 0.05, 1),
        ("ellipse", (0.5, 0.135), (0.058, 0.072), 1),
        ("ellipse", (0.5, 0.105), (0.062, 0.045), 4),
    ]
    skin = _SKIN[rng.integers(len(_SKIN))] * (0.9 + 0.15 * _noise(rng, s, s, 1, cells=6))
    colours = {
        1: np.clip(skin, 0, 1),
        2: _texture(rng, s, s),
        3: _flat(rng, s, s, rng.uniform(0.1, 0.5, 3), 0.4),
        4: _flat(rng, s, s, _HAIR[rng.integers(len(_HAIR))], 0.5),
        5: _flat(rng, s, s, (0.08, 0.08, 0.1), 0.3),
    }
    return _parts_sprite(s, prims, colours)


def _car_sprite(rng: np.random.Generator, s: int) -> _Sprite:
    """A side view of a car: body, cabin, windows and wheels."""
    top = rng.uniform(0.26, 0.33)
    prims = [
        ("poly", [(0.05, 0.48), (0.2, 0.45), (0.3, top), (0.7, top), (0.82, 0.45), (0.95, 0.5), (0.96, 0.7),
                  (0.04, 0.7)], 1),
        ("poly", [(0.33, top + 0.03), (0.49, top + 0.03), (0.49, 0.45), (0.25, 0.45)], 2),
        ("poly", [(0.52, top + 0.03), (0.68, top + 0.03), (0.77, 0.45), (0.52, 0.45)], 2),
        ("ellipse", (0.25, 0.7), (0.1, 0.1), 3), ("ellipse", (0.75, 0.7), (0.1, 0.1), 3),
        ("ellipse", (0.25, 0.7), (0.045, 0.045), 4), ("ellipse", (0.75, 0.7), (0.045, 0.045), 4),
    ]
    paint = _flat(rng, s, s, rng.uniform(0.15, 0.95, 3), 0.2)
    paint = 0.75 * paint + 0.25 * _texture(rng, s, s)
    colours = {1: paint, 2: _flat(rng, s, s, (0.55, 0.65, 0.75), 0.5), 3: _flat(rng, s, s, (0.07, 0.07, 0.08), 0.3),
               4: _flat(rng, s, s, (0.7, 0.7, 0.72), 0.2)}
    sprite = _parts_sprite(s, prims, colours)
    return _mirrored(sprite) if rng.random() < 0.5 else sprite


def _mirrored(sprite: _Sprite) -> _Sprite:
    """The sprite flipped left-right."""
    x0, x1, y0, y1 = sprite.box
    return _Sprite(np.ascontiguousarray(sprite.rgb[:, ::-1]), np.ascontiguousarray(sprite.alpha[:, ::-1]),
                   sprite.area, (-x1, -x0, y0, y1))


def _logo_sprite(rng: np.random.Generator, s: int) -> _Sprite:
    """The scikit-image logo's disc or one of its halves, with the logo's own snake texture."""
    rgb, shapes = _logo_parts()
    mask = shapes[str(rng.choice(sorted(shapes)))]
    alpha = _fit(mask, mask, s)
    tex = _fit(rgb.astype(np.float32) / 255.0, mask, s)
    mix = rng.uniform(0.1, 0.3)
    tex = (1 - mix) * tex + mix * _noise(rng, s, s, 3, cells=4)
    return _sprite(np.clip(tex * rng.uniform(0.75, 1.15, 3).astype(np.float32), 0, 1), alpha)


_PLAIN_SHAPES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "ellipse": _shape_ellipse, "polygon": _shape_polygon, "star": _shape_star, "horse": _shape_horse,
}


def _make_sprite(rng: np.random.Generator, shape: str, s: int, texture: str | None = None) -> _Sprite:
    """A sprite of ``shape`` with side ``s``; ``texture`` names a photo to texture it from."""
    if shape == "person":
        return _person_sprite(rng, s)
    if shape == "car":
        return _car_sprite(rng, s)
    if shape == "logo":
        return _logo_sprite(rng, s)
    alpha = _PLAIN_SHAPES[shape](rng, s)
    if texture is None:
        rgb = _texture(rng, s, s)
    else:
        rgb = _crop(rng, _photo(texture), s, s, 0.3).astype(np.float32) / 255.0
    return _sprite(rgb, alpha)


# --------------------------------------------------------------------------- motion


@dataclass(frozen=True)
class _Pose:
    """Where a sprite is drawn in one frame, and how it is lit."""

    cx: float
    cy: float
    angle: float  # degrees, counter-clockwise on screen
    scale: float
    gain: np.ndarray  # per-channel light gain
    light: float  # direction of the light ramp across the object, radians


def _affine(sprite: _Sprite, pose: _Pose) -> np.ndarray:
    """The 2x3 map from sprite pixels to frame pixels."""
    a = math.radians(pose.angle)
    cos, sin = pose.scale * math.cos(a), pose.scale * math.sin(a)
    c = (sprite.size - 1) / 2
    return np.array([[cos, sin, pose.cx - (cos + sin) * c],
                     [-sin, cos, pose.cy - (cos - sin) * c]], np.float64)


def _extent(sprite: _Sprite, angle: float, scale: float) -> tuple[float, float, float, float]:
    """xmin, xmax, ymin, ymax of the sprite's rotated, scaled box, relative to its centre."""
    a = math.radians(angle)
    cos, sin = scale * math.cos(a), scale * math.sin(a)
    x0, x1, y0, y1 = sprite.box
    corners = np.array([(x0, y0), (x1, y0), (x0, y1), (x1, y1)])
    xs = cos * corners[:, 0] + sin * corners[:, 1]
    ys = -sin * corners[:, 0] + cos * corners[:, 1]
    return float(xs.min()), float(xs.max()), float(ys.min()), float(ys.max())


@dataclass(frozen=True)
class _TrackSpec:
    """How one object moves in a clip."""

    shape: str
    area: float  # target fraction of the frame
    turn: float  # most rotation over the clip, degrees
    tilt: float  # most rotation at the start, degrees
    lane: tuple[float, float] = (0.0, 1.0)  # part of the free width its centre travels in
    first: int = 0  # first frame it is in


def _track(rng: np.random.Generator, sprite: _Sprite, spec: _TrackSpec, size: Size, n: int) -> list[_Pose | None]:
    """Poses for ``n`` frames: moving, turning, scaling and re-lit, always inside the frame."""
    w, h = size
    base = math.sqrt(spec.area * w * h / max(sprite.area, 1.0))
    k0, k1 = np.exp(rng.uniform(np.log(0.82), np.log(1.22), 2))
    a0 = rng.uniform(-spec.tilt, spec.tilt)
    a1 = a0 + rng.uniform(-spec.turn, spec.turn)
    ts = [_smoothstep(_frac(t, n)) for t in range(n)]
    angles = [float(_lerp(a0, a1, t)) for t in ts]
    scales = []
    for t, ang in zip(ts, angles):
        sc = base * float(_lerp(k0, k1, t))
        x0, x1, y0, y1 = _extent(sprite, ang, sc)
        fit = min((w - 1 - 2 * _MARGIN) / (x1 - x0), (h - 1 - 2 * _MARGIN) / (y1 - y0), 1.0)
        scales.append(sc * fit * (0.98 if fit < 1 else 1.0))
    ext = [_extent(sprite, a, s) for a, s in zip(angles, scales)]
    lo_x = max(_MARGIN - e[0] for e in ext)
    hi_x = min(w - 1 - _MARGIN - e[1] for e in ext)
    lo_y = max(_MARGIN - e[2] for e in ext)
    hi_y = min(h - 1 - _MARGIN - e[3] for e in ext)
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
    poses: list[_Pose | None] = []
    for i, (t, ang, sc, e) in enumerate(zip(ts, angles, scales, ext)):
        if i < spec.first:
            poses.append(None)
            continue
        p = _lerp(p0, p1, t) + wobble * np.array([math.sin(phase + 3 * t), math.cos(phase + 2 * t)])
        cx = float(np.clip(p[0], _MARGIN - e[0], w - 1 - _MARGIN - e[1]))
        cy = float(np.clip(p[1], _MARGIN - e[2], h - 1 - _MARGIN - e[3]))
        gain = (float(_lerp(b0, b1, t)) * _lerp(c0, c1, t)).astype(np.float32)
        poses.append(_Pose(cx, cy, ang, sc, gain, float(_lerp(l0, l1, t))))
    return poses


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class _Layer:
    """A sprite warped into its box in the frame."""

    x0: int
    y0: int
    rgb: np.ndarray | None
    alpha: np.ndarray


def _layer(sprite: _Sprite, pose: _Pose, size: Size, with_rgb: bool = True) -> _Layer:
    w, h = size
    e = _extent(sprite, pose.angle, pose.scale)
    x0, x1 = max(0, math.floor(pose.cx + e[0]) - 2), min(w, math.ceil(pose.cx + e[1]) + 3)
    y0, y1 = max(0, math.floor(pose.cy + e[2]) - 2), min(h, math.ceil(pose.cy + e[3]) + 3)
    m = _affine(sprite, pose)
    m[:, 2] -= (x0, y0)
    dsize = (x1 - x0, y1 - y0)
    warp = lambda img: cv2.warpAffine(img, m, dsize, flags=cv2.INTER_LINEAR,  # noqa: E731
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return _Layer(x0, y0, warp(sprite.rgb) if with_rgb else None, warp(sprite.alpha))


def _paint(frame: np.ndarray, layer: _Layer, pose: _Pose) -> None:
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
    return all(np.ptp(np.flatnonzero(sel.any(axis=axis))) + 1 >= _MIN_BOX for axis in (0, 1))


@dataclass(frozen=True)
class _Actor:
    """An object of a clip: its sprite and one pose (or None: absent) per frame."""

    sprite: _Sprite
    poses: list[_Pose | None]


def _plan(rng: np.random.Generator, sprites: Sequence[_Sprite], specs: Sequence[_TrackSpec], size: Size,
          n: int, attempts: int = 24) -> list[_Actor]:
    """Tracks for all objects (painting order = list order) such that none hides another much."""
    actors: list[_Actor] = []
    for _ in range(attempts):
        actors = [_Actor(sp, _track(rng, sp, spec, size, n)) for sp, spec in zip(sprites, specs)]
        if all(_frame_ok(actors, t, size) for t in range(n)):
            break
    return actors


def _compose(actors: Sequence[_Actor], t: int, size: Size,
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


def _frame_ok(actors: Sequence[_Actor], t: int, size: Size) -> bool:
    labels, own = _compose(actors, t, size)
    return all(_visible_ok(labels, v, n) for v, n in own.items())


def _render(background: np.ndarray, actors: Sequence[_Actor], t: int, scene_gain: np.ndarray,
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
    return _apply_gain(frame, scene_gain), labels


# --------------------------------------------------------------------------- backgrounds and cameras


def _camera_path(rng: np.random.Generator, canvas: Size, size: Size, n: int,
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
        t = _smoothstep(_frac(i, n))
        z = float(_lerp(z0, z1, t))
        cx, cy = _lerp(c0, c1, t)
        maps.append(np.array([[z, 0.0, w / 2 - z * cx], [0.0, z, h / 2 - z * cy]]))
    return maps


def _view(canvas: np.ndarray, cam: np.ndarray, size: Size, nearest: bool = False) -> np.ndarray:
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(canvas, cam, size, flags=flags, borderMode=cv2.BORDER_REFLECT)


def _photo_canvas(rng: np.random.Generator, canvas: Size) -> np.ndarray:
    """A natural background: a photo crop, colour-graded and mixed with coloured noise (uint8 RGB)."""
    cw, ch = canvas
    img = _crop(rng, _photo(str(rng.choice(_PHOTOS))), cw, ch, 0.45).astype(np.float32) / 255.0
    img = np.power(img, rng.uniform(0.8, 1.25)) * rng.uniform(0.8, 1.15, 3).astype(np.float32)
    mix = rng.uniform(0.1, 0.3)
    tint = _noise(rng, ch, cw, 3, cells=rng.uniform(1.5, 4), octaves=2)
    return _to_u8((1.0 - mix) * img + mix * tint)


def _scene_gains(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Slowly drifting global light (brightness and white balance) over a clip."""
    g0, g1 = rng.uniform(0.88, 1.12, (2, 3))
    return [_lerp(g0, g1, _frac(i, n)).astype(np.float32) for i in range(n)]


# --------------------------------------------------------------------------- file writing


def _prepare(out: Path) -> Path:
    """Empty ``out`` for a fresh write; refuse a non-empty folder this module did not write."""
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / _MARKER).is_file()):
            raise FileExistsError(f"{out} exists and was not written by imprint.ingest.sample; not overwriting it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / _MARKER).write_text("synthetic sample written by imprint.ingest.sample; safe to delete\n")
    return out


def _save_jpeg(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format="JPEG", quality=_JPEG_QUALITY)


def _save_png(path: Path, arr: np.ndarray, palette: list[int] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr)
    if palette is not None:
        im.putpalette(palette)
    im.save(path, format="PNG")


def _save_tiff(path: Path, rgb: np.ndarray) -> None:
    """An RGB TIFF (8- or 16-bit) through OpenCV, which takes BGR."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f"could not write {path}")


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


# --------------------------------------------------------------------------- YouTube-VOS


_YTVOS_CATEGORIES = {"person": "person", "horse": "horse", "car": "car", "cat": None, "dog": None,
                     "skateboard": None, "duck": None, "turtle": None, "frisbee": None}


def _ytvos_specs(rng: np.random.Generator, n_objects: int, late: bool, n_frames: int) -> list[tuple[str, _TrackSpec]]:
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
        spec = _TrackSpec(shape, float(area), turn=15.0 if upright else 80.0, tilt=8.0 if upright else 40.0,
                          lane=lanes[k], first=first)
        out.append((cat, spec))
    return out


def _sprite_side(spec: _TrackSpec, size: Size) -> int:
    """A sprite side that puts the object at about its own resolution (scale near 1)."""
    side = math.sqrt(spec.area * size[0] * size[1] / _FILL[spec.shape])
    return int(np.clip(round(side / 8) * 8, 48, 1024))


def generate_ytvos(root: Path, seed: int = 0, *, n_videos: int = 3, n_frames: int = 8,
                   size: Size = (256, 144)) -> Path:
    """Write a YouTube-VOS 2019 train split under ``root/ytvos`` and return that folder.

    ``train/meta.json`` lists each video's objects (category, annotated frames);
    ``train/JPEGImages/<vid>/<00000>.jpg`` (stems step 5) and ``train/Annotations/<vid>/
    <00000>.png`` (palette PNG, value = object id, VOC colours). One or two objects per
    video; in every third video (the second, fifth, ...) the second object enters late.
    """
    size = _check_args(seed, size)
    out = _prepare(Path(root) / "ytvos")
    split = out / "train"
    videos: dict[str, dict] = {}
    for v in range(n_videos):
        rng = _rng(seed, "ytvos", v)
        vid = _hex_id(rng, 10)
        while vid in videos:
            vid = _hex_id(rng, 10)
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
    sprites = [_make_sprite(rng, spec.shape, _sprite_side(spec, size)) for _, spec in specs]
    order = rng.permutation(n_objects)  # back to front
    actors = _plan(rng, [sprites[i] for i in order], [specs[i][1] for i in order], size, n_frames)
    canvas_size = (round(w * 1.25), round(h * 1.2))
    canvas = _photo_canvas(rng, canvas_size)
    cams = _camera_path(rng, canvas_size, size, n_frames)
    gains = _scene_gains(rng, n_frames)
    frames: dict[int, list[str]] = {k + 1: [] for k in range(n_objects)}
    for t in range(n_frames):
        stem = f"{5 * t:05d}"
        rgb, labels = _render(_view(canvas, cams[t], size), actors, t, gains[t])
        ids = np.zeros_like(labels)
        for paint_index, obj in enumerate(order):
            ids[labels == paint_index + 1] = obj + 1
        counts = np.bincount(ids.ravel(), minlength=n_objects + 1)
        for obj_id in frames:
            if counts[obj_id]:
                frames[obj_id].append(stem)
        _save_jpeg(split / "JPEGImages" / vid / f"{stem}.jpg", rgb)
        _save_png(split / "Annotations" / vid / f"{stem}.png", ids, list(_voc_palette()))
    return {"objects": {str(k): {"category": specs[k - 1][0], "frames": frames[k]}
                        for k in frames if frames[k]}}


# --------------------------------------------------------------------------- VIPSeg


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
    wave = _noise(rng, 1, width, 1, cells=rng.uniform(2, 6), octaves=2)[0, :, 0]
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
        clouds = np.clip(_noise(rng, h, w, 1, cells=3, octaves=4, aspect=2.5) * 1.6 - 0.7, 0, 1)
        return np.broadcast_to(sky, (h, w, 3)) * (1 - clouds) + 0.95 * clouds
    if label == _WALL:
        if rng.random() < 0.5:
            return _tinted(rng, "brick", w, h, rng.uniform(0.55, 0.9, 3), contrast=0.5)
        return _flat(rng, w, h, rng.uniform(0.6, 0.92, 3), 0.15)
    if label == _CEILING:
        return _flat(rng, w, h, rng.uniform(0.8, 0.95) * np.ones(3), 0.1)
    if label == _FLOOR:
        grain = _noise(rng, h, w, 1, cells=8, octaves=3, aspect=6.0)
        wood = np.array([0.55, 0.38, 0.22], np.float32) * rng.uniform(0.7, 1.2)
        return np.clip((0.75 + 0.5 * grain) * wood, 0, 1)
    if label == _BUILDING:
        tex = _tinted(rng, "brick", w, h, rng.uniform(0.4, 0.75, 3), contrast=0.6)
        yy, xx = np.mgrid[0:h, 0:w]
        cell = max(8, int(min(w, h) * rng.uniform(0.06, 0.1)))
        windows = ((xx % cell) < cell * 0.5) & ((yy % cell) < cell * 0.55)
        tex[windows] *= 0.45
        return tex
    if label == _TREE:
        leaves = _tinted(rng, "grass", w, h, (0.2, 0.42, 0.15), contrast=1.2)
        return leaves * (0.7 + 0.6 * _noise(rng, h, w, 1, cells=6))
    if label == _GRASS:
        return _tinted(rng, "grass", w, h, (0.35, 0.6, 0.22), contrast=0.9)
    if label == _ROAD:
        return _tinted(rng, "gravel", w, h, rng.uniform(0.35, 0.5) * np.ones(3), contrast=0.6)
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
    return _to_u8(rgb), labels, bands[-1][1]


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
    left = rng.uniform(x0 + 2 * _MARGIN, max(x0 + 2 * _MARGIN, x1 - 2 * _MARGIN - dw))
    cols = slice(int(left), int(left + dw))
    bottom = min(float(floor_y[cols].min()) - 1, y1 - 2 * _MARGIN)
    top = max(bottom - size[1] * rng.uniform(0.45, 0.6), y0 + 2 * _MARGIN)
    rows = slice(int(top), int(bottom))
    h, w = rows.stop - rows.start, cols.stop - cols.start
    if h < _MIN_BOX or w < _MIN_BOX:
        return
    wood = _flat(rng, w, h, rng.uniform(0.3, 0.6) * np.array([1.0, 0.75, 0.5]), 0.3)
    wood[int(h * 0.08):int(h * 0.45), int(w * 0.15):int(w * 0.85)] *= 0.85  # panels
    wood[int(h * 0.55):int(h * 0.92), int(w * 0.15):int(w * 0.85)] *= 0.85
    cv2.circle(wood, (int(w * 0.8), int(h * 0.52)), max(1, w // 14), (0.85, 0.75, 0.3), -1)
    rgb[rows, cols] = _to_u8(wood)
    labels[rows, cols] = _DOOR * 100


def _vip_name(rng: np.random.Generator) -> str:
    ytid = "".join(_YT_CHARS[i] for i in rng.integers(0, len(_YT_CHARS), 11))
    return f"{int(rng.integers(1, 3600))}_{ytid}"


def generate_vipseg(root: Path, seed: int = 0, *, n_videos: int = 2, n_frames: int = 6,
                    size: Size = (256, 144)) -> Path:
    """Write a VIPSeg (``VIPSeg_720P``) sample under ``root/vipseg`` and return that folder.

    ``VIPSeg_720P/images/<video>/<8 digits>.jpg`` with irregular frame numbers,
    ``VIPSeg_720P/panomasks/<video>/<same>.png`` (16-bit raw values: 0 void, a stuff label
    ``< 125``, a thing ``label * 100 + k`` with ``k`` counted per class in the video, and a
    few invalid ``200`` pixels), ``panoVIPSeg_categories.json`` (124 entries, 0-based ids),
    ``train.txt`` (the ``n_videos`` videos) and ``val.txt`` (one more video per five train
    videos, at least one).
    """
    size = _check_args(seed, size)
    out = _prepare(Path(root) / "vipseg")
    vip = out / "VIPSeg_720P"
    vip.mkdir()
    n_val = max(1, round(n_videos / 5)) if n_videos > 0 else 0
    splits: dict[str, list[str]] = {"train": [], "val": []}
    names: set[str] = set()
    for split, count in (("train", n_videos), ("val", n_val)):
        for v in range(count):
            rng = _rng(seed, "vipseg", split, v)
            name = _vip_name(rng)
            while name in names:
                name = _vip_name(rng)
            names.add(name)
            splits[split].append(name)
            _write_vipseg_video(rng, vip, name, n_frames, size)
    (vip / "panoVIPSeg_categories.json").write_text(json.dumps(_vipseg_categories()))
    for split, videos in splits.items():
        (vip / f"{split}.txt").write_text("".join(f"{n}\n" for n in sorted(videos)))
    return out


def _write_vipseg_video(rng: np.random.Generator, vip: Path, name: str, n_frames: int, size: Size) -> None:
    w, h = size
    indoor = bool(rng.random() < 0.5)
    canvas_size = (round(w * 1.3), round(h * 1.15))
    canvas, stuff, floor_y = _stuff_canvas(rng, canvas_size, indoor)
    cams = _camera_path(rng, canvas_size, size, n_frames, zoom=0.05)
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
        spec = _TrackSpec(shape, float(rng.uniform(0.03, 0.08)), turn=10.0, tilt=5.0,
                          lane=(max(0.0, lanes[order[k]][0]), min(1.0, lanes[order[k]][1])))
        specs.append(spec)
        sprites.append(_make_sprite(rng, shape, _sprite_side(spec, size), texture))
        codes.append(cls * 100 + per_class.get(cls, 0))
        per_class[cls] = per_class.get(cls, 0) + 1
    actors = _plan(rng, sprites, specs, size, n_frames)
    gains = _scene_gains(rng, n_frames)
    for t, number in enumerate(_vip_numbers(rng, n_frames)):
        stem = f"{number:08d}"
        rgb, labels = _render(_view(canvas, cams[t], size), actors, t, gains[t], strict=False)
        pano = _view(stuff, cams[t], size, nearest=True)
        for k, code in enumerate(codes):
            pano[labels == k + 1] = code
        _mark_invalid(rng, pano)
        _save_jpeg(vip / "images" / name / f"{stem}.jpg", rgb)
        _save_png(vip / "panomasks" / name / f"{stem}.png", pano)


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


# --------------------------------------------------------------------------- PPR10K


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


def _portrait_pose(rng: np.random.Generator, sprite: _Sprite, size: Size, height: float) -> _Pose:
    """The person standing near the middle, ``height`` of the frame tall, slightly tilted, inside."""
    w, h = size
    angle = rng.uniform(-5, 5)
    scale = height * h / (sprite.box[3] - sprite.box[2])
    x0, x1, y0, y1 = _extent(sprite, angle, scale)
    fit = min((w - 1 - 2 * _MARGIN) / (x1 - x0), (h - 1 - 2 * _MARGIN) / (y1 - y0), 1.0)
    scale *= fit
    x0, x1, y0, y1 = _extent(sprite, angle, scale)
    cx = np.clip(w / 2 + rng.uniform(-0.1, 0.1) * w, _MARGIN - x0, w - 1 - _MARGIN - x1)
    cy = np.clip(h / 2 + rng.uniform(-0.05, 0.05) * h, _MARGIN - y0, h - 1 - _MARGIN - y1)
    return _Pose(float(cx), float(cy), angle, scale, rng.uniform(0.9, 1.1, 3).astype(np.float32),
                 rng.uniform(0, 2 * np.pi))


def generate_ppr10k(root: Path, seed: int = 0, *, n_groups: int = 3, n_photos: int = 3,
                    size: Size = (144, 216)) -> Path:
    """Write a PPR10K (360p set) sample under ``root/ppr10k`` and return that folder.

    ``source/<g>_<i>.tif`` (16-bit RGB, flat and colour-cast like the raw exports),
    ``target_a/<g>_<i>.tif`` (8-bit RGB, retouched) and ``masks/<g>_<i>.png`` (0 / 255),
    one person per photo; the photos of a group share the person and the scene with a
    slightly different framing, pose and exposure.
    """
    size = _check_args(seed, size)
    w, h = size
    out = _prepare(Path(root) / "ppr10k")
    for g in range(n_groups):
        rng = _rng(seed, "ppr10k", g)
        canvas_size = (round(w * 1.2), round(h * 1.15))
        canvas = _photo_canvas(rng, canvas_size)
        canvas = cv2.GaussianBlur(canvas, (0, 0), max(1.0, min(w, h) / 90))  # shallow depth of field
        sprite = _person_sprite(rng, max(48, round(h / 8) * 8))  # the figure spans ~0.86 of it
        look = _retouch(rng)
        cams = _camera_path(rng, canvas_size, size, max(2, n_photos), zoom=0.04)
        height = rng.uniform(0.72, 0.88)
        for i in range(n_photos):
            pose = _portrait_pose(rng, sprite, size, height * rng.uniform(0.95, 1.05))
            actor = _Actor(sprite, [pose])
            rgb, labels = _render(_view(canvas, cams[i], size), [actor], 0, np.ones(3, np.float32), strict=False)
            scene = rgb.astype(np.float32) / 255.0
            cast = np.array([1.0, 1.0, 1.0], np.float32) + rng.uniform(-0.08, 0.08, 3).astype(np.float32)
            source = _raw(scene, float(rng.uniform(0.55, 0.95)), cast)
            _save_tiff(out / "source" / f"{g}_{i}.tif", np.round(source * 65535).astype(np.uint16))
            _save_tiff(out / "target_a" / f"{g}_{i}.tif", _to_u8(look(scene)))
            _save_png(out / "masks" / f"{g}_{i}.png", np.where(labels > 0, 255, 0).astype(np.uint8))
    return out


# --------------------------------------------------------------------------- MVImgNet


# id, name, solid ("box" or "cylinder")
_MV_CLASSES = ((7, "bottle", "cylinder"), (12, "box", "box"), (23, "cup", "cylinder"), (31, "book", "box"),
               (46, "can", "cylinder"), (58, "tissue_box", "box"), (64, "vase", "cylinder"), (77, "speaker", "box"))


def _mv_classes(n: int) -> list[tuple[int, str, str]]:
    extra = [(100 + j, f"class_{100 + j}", ("box", "cylinder")[j % 2]) for j in range(max(0, n - len(_MV_CLASSES)))]
    return [*_MV_CLASSES, *extra]


@dataclass(frozen=True)
class _Solid:
    """A prism standing on the table: its base outline, height and face textures."""

    ring: np.ndarray  # (k, 2) base corners, counter-clockwise, world units
    height: float
    sides: list[np.ndarray]  # one float32 RGB texture per side face
    top: np.ndarray  # texture of the top face (over the ring's bounding square)


def _solid(rng: np.random.Generator, kind: str, tex_side: int) -> _Solid:
    if kind == "box":
        a, b = rng.uniform(0.45, 0.95, 2)
        ring = np.array([(a, -b), (a, b), (-a, b), (-a, -b)])
        height = rng.uniform(0.7, 1.6)
        sides = [_texture(rng, tex_side, tex_side) for _ in range(4)]
        top = _texture(rng, tex_side, tex_side)
    else:
        r = rng.uniform(0.45, 0.7)
        k = 16
        ang = np.linspace(0, 2 * np.pi, k, endpoint=False)
        ring = np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)
        height = rng.uniform(1.1, 2.0)
        wrap = _texture(rng, tex_side * 4, tex_side)
        band = rng.uniform(0.2, 0.95, 3).astype(np.float32)
        y0, y1 = sorted(rng.uniform(0.1, 0.9, 2))
        wrap[int(y0 * tex_side):int(y1 * tex_side)] = 0.4 * wrap[int(y0 * tex_side):int(y1 * tex_side)] + 0.6 * band
        step = wrap.shape[1] / k
        sides = [np.ascontiguousarray(wrap[:, int(i * step):max(int((i + 1) * step), int(i * step) + 2)])
                 for i in range(k)]
        top = _flat(rng, tex_side, tex_side, rng.uniform(0.4, 0.9, 3), 0.2)
    return _Solid(ring, float(height), sides, top)


@dataclass(frozen=True)
class _Camera:
    """A pinhole camera looking at the object's middle from ``elevation`` degrees."""

    elevation: float
    distance: float
    focal: float = 1.0
    principal: tuple[float, float] = (0.0, 0.0)

    def basis(self, target_z: float) -> tuple[np.ndarray, np.ndarray]:
        e = math.radians(self.elevation)
        eye = np.array([0.0, -self.distance * math.cos(e), target_z + self.distance * math.sin(e)])
        fwd = np.array([0.0, 0.0, target_z]) - eye
        fwd /= np.linalg.norm(fwd)
        right = np.cross(fwd, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, fwd)
        return eye, np.stack([right, -up, fwd])

    def project(self, pts: np.ndarray, target_z: float) -> np.ndarray:
        eye, rot = self.basis(target_z)
        cam = (pts - eye) @ rot.T
        return self.focal * cam[:, :2] / cam[:, 2:3] + np.asarray(self.principal)


def _turned(solid: _Solid, azimuth: float) -> tuple[np.ndarray, np.ndarray]:
    """Bottom and top corners (k, 3) of the solid turned by ``azimuth`` radians."""
    c, s = math.cos(azimuth), math.sin(azimuth)
    xy = solid.ring @ np.array([[c, s], [-s, c]])
    bottom = np.column_stack([xy, np.zeros(len(xy))])
    top = np.column_stack([xy, np.full(len(xy), solid.height)])
    return bottom, top


def _warp_face(layer: np.ndarray, alpha: np.ndarray, tex: np.ndarray, quad: np.ndarray, shade: float,
               polygon: np.ndarray | None = None) -> None:
    """Warp ``tex`` onto the image quad (corners: tex top-left, top-right, bottom-right,
    bottom-left) inside its bounding box, in place; ``polygon`` clips it (default: the quad)."""
    h, w = alpha.shape
    poly = quad if polygon is None else polygon
    x0, y0 = max(0, int(np.floor(poly[:, 0].min())) - 1), max(0, int(np.floor(poly[:, 1].min())) - 1)
    x1, y1 = min(w, int(np.ceil(poly[:, 0].max())) + 2), min(h, int(np.ceil(poly[:, 1].max())) + 2)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    th, tw = tex.shape[:2]
    src = np.float32([[0, 0], [tw - 1, 0], [tw - 1, th - 1], [0, th - 1]])
    hom = cv2.getPerspectiveTransform(src, np.float32(quad - (x0, y0)))
    warped = cv2.warpPerspective(tex, hom, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
    cover = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(cover, _pts(poly - (x0, y0)), 255, cv2.LINE_AA, 4)
    a = cover.astype(np.float32)[..., None] / 255.0
    roi = layer[y0:y1, x0:x1]
    roi[...] = roi * (1 - a) + warped * shade * a
    alpha[y0:y1, x0:x1] = np.maximum(alpha[y0:y1, x0:x1], a[..., 0])


_LIGHT = np.array([-0.5, -0.6, 0.62]) / np.linalg.norm([-0.5, -0.6, 0.62])


def _render_solid(solid: _Solid, azimuth: float, cam: _Camera, size: Size) -> tuple[np.ndarray, np.ndarray]:
    """The solid's colour layer (float32 RGB) and coverage (float32) in a frame of ``size``."""
    w, h = size
    layer = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    bottom, top = _turned(solid, azimuth)
    tz = solid.height / 2
    eye, _ = cam.basis(tz)
    pb, pt = cam.project(bottom, tz), cam.project(top, tz)
    k = len(bottom)
    for i in range(k):
        j = (i + 1) % k
        mid = (bottom[i] + bottom[j]) / 2 + np.array([0, 0, tz])
        edge = bottom[j] - bottom[i]
        normal = np.array([edge[1], -edge[0], 0.0])
        normal /= np.linalg.norm(normal)
        if normal @ (eye - mid) <= 0:
            continue
        shade = 0.45 + 0.6 * max(0.0, float(normal @ _LIGHT))
        _warp_face(layer, alpha, solid.sides[i], np.array([pt[i], pt[j], pb[j], pb[i]]), shade)
    # the top: the texture spans the ring's bounding square, clipped to the ring
    half = float(np.abs(solid.ring).max())
    c, s = math.cos(azimuth), math.sin(azimuth)
    square = np.array([(-half, half), (half, half), (half, -half), (-half, -half)]) @ np.array([[c, s], [-s, c]])
    square3 = np.column_stack([square, np.full(4, solid.height)])
    shade = 0.45 + 0.6 * max(0.0, float(_LIGHT[2]))
    _warp_face(layer, alpha, solid.top, cam.project(square3, tz), shade, polygon=pt)
    return layer, alpha


def _fit_camera(rng: np.random.Generator, solid: _Solid, azimuths: Sequence[float], size: Size) -> _Camera:
    """A camera whose view keeps the turning object centred and about 55% of the frame across."""
    cam = _Camera(elevation=float(rng.uniform(12, 30)), distance=float(rng.uniform(5.0, 7.0)))
    tz = solid.height / 2
    pts = np.concatenate([cam.project(np.concatenate(_turned(solid, a)), tz) for a in azimuths])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    focal = rng.uniform(0.5, 0.62) * min(size) / float((hi - lo).max())
    centre = (lo + hi) / 2 * focal
    return _Camera(cam.elevation, cam.distance, focal, (size[0] / 2 - centre[0], size[1] / 2 - centre[1]))


def _table_canvas(rng: np.random.Generator, canvas: Size, table_y: float) -> np.ndarray:
    """A plain room: a painted wall above a table top (wood grain or stone), float32 RGB."""
    cw, ch = canvas
    wall = _flat(rng, cw, ch, rng.uniform(0.65, 0.92) * (1 + rng.uniform(-0.06, 0.06, 3)), 0.15)
    wall *= np.linspace(1.05, 0.9, ch, dtype=np.float32)[:, None, None]
    if rng.random() < 0.6:
        grain = _noise(rng, ch, cw, 1, cells=10, octaves=3, aspect=8.0)
        table = np.clip((0.8 + 0.4 * grain) * np.array([0.6, 0.42, 0.26]) * rng.uniform(0.7, 1.3), 0, 1)
    else:
        table = _tinted(rng, "gravel", cw, ch, rng.uniform(0.6, 0.85) * np.ones(3), contrast=0.3)
    rows = np.arange(ch)[:, None, None] >= table_y
    return np.where(rows, table, wall).astype(np.float32)


def _shadow(canvas: np.ndarray, centre: tuple[float, float], axes: tuple[float, float]) -> None:
    """Darken a soft ellipse under the object, in place."""
    mask = np.zeros(canvas.shape[:2], np.float32)
    cv2.ellipse(mask, (round(centre[0]), round(centre[1])), (max(1, round(axes[0])), max(1, round(axes[1]))),
                0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, axes[1] / 2))
    canvas *= (1.0 - 0.45 * mask)[..., None]


def generate_mvimgnet(root: Path, seed: int = 0, *, n_classes: int = 2, n_instances: int = 2, n_frames: int = 12,
                      size: Size = (192, 192)) -> Path:
    """Write an MVImgNet2.0-layout sample under ``root/mvimgnet`` and return that folder.

    ``<class>/<instance>/images/001.jpg ...`` (a textured box or cylinder turning on a
    turntable in a plain room), ``<class>/<instance>/masks/001.png`` (8-bit soft masks with
    a blurred edge, like CarveKit's) and ``mvimgnet_category.txt`` (``id,name`` lines).
    ``n_instances`` captures per class; instance ids are 8 hex characters.
    """
    size = _check_args(seed, size)
    out = _prepare(Path(root) / "mvimgnet")
    table = _mv_classes(n_classes)
    for cid, _, kind in _pick_classes(_rng(seed, "mvimgnet", "classes"), table, n_classes):
        seen: set[str] = set()
        for j in range(n_instances):
            rng = _rng(seed, "mvimgnet", cid, j)
            inst = _hex_id(rng, 8)
            while inst in seen:
                inst = _hex_id(rng, 8)
            seen.add(inst)
            _write_capture(rng, out / str(cid) / inst, kind, n_frames, size)
    (out / "mvimgnet_category.txt").write_text("".join(f"{cid},{name}\n" for cid, name, _ in table))
    return out


def _pick_classes(rng: np.random.Generator, table: Sequence[tuple[int, str, str]],
                  n: int) -> list[tuple[int, str, str]]:
    """``n`` classes, boxes and cylinders alternating, in id order."""
    kinds = [[c for c in table if c[2] == kind] for kind in ("box", "cylinder")]
    pools = [[group[i] for i in rng.permutation(len(group))] for group in kinds]
    if rng.random() < 0.5:
        pools.reverse()
    merged = [c for pair in zip(*pools) for c in pair] + pools[0][len(pools[1]):] + pools[1][len(pools[0]):]
    return sorted(merged[:n])


def _write_capture(rng: np.random.Generator, inst_dir: Path, kind: str, n_frames: int, size: Size) -> None:
    w, h = size
    tex_side = int(np.clip(round(min(size) * 0.4 / 8) * 8, 32, 512))
    solid = _solid(rng, kind, tex_side)
    start = rng.uniform(0, 2 * np.pi)
    sweep = math.radians(rng.uniform(150, 220)) * (1 if rng.random() < 0.5 else -1)
    azimuths = [start + sweep * _frac(t, n_frames) for t in range(n_frames)]
    cam = _fit_camera(rng, solid, azimuths, size)
    # the table edge sits above the object's base; a shadow under it
    base = cam.project(np.concatenate(_turned(solid, start)), solid.height / 2)[: len(solid.ring)]
    margin = 0.08
    canvas_size = (round(w * (1 + 2 * margin)), round(h * (1 + 2 * margin)))
    off = np.array([w * margin, h * margin])
    table_y = float(base[:, 1].min() + off[1] - rng.uniform(0.08, 0.2) * h)
    canvas = _table_canvas(rng, canvas_size, table_y)
    foot = base.mean(axis=0) + off
    spread = float(np.ptp(base[:, 0]))
    _shadow(canvas, (foot[0] + 0.05 * w, foot[1] + 0.01 * h), (0.6 * spread, 0.12 * spread + 2))
    canvas_u8 = _to_u8(canvas)
    exposure = _scene_gains(rng, n_frames)
    sigma = max(0.8, min(size) / 220)
    for t, az in enumerate(azimuths):
        jitter = rng.uniform(-0.01, 0.01, 2) * (w, h)
        view = _Camera(cam.elevation, cam.distance, cam.focal,
                       (cam.principal[0] + jitter[0], cam.principal[1] + jitter[1]))
        move = np.array([[1.0, 0.0, jitter[0] - off[0]], [0.0, 1.0, jitter[1] - off[1]]])
        bg = _view(canvas_u8, move, size).astype(np.float32) / 255.0
        layer, alpha = _render_solid(solid, az, view, size)
        a = cv2.GaussianBlur(alpha, (0, 0), 0.6)[..., None]
        rgb = _apply_gain(_to_u8(bg * (1 - a) + layer * a), exposure[t])
        soft = _to_u8(cv2.GaussianBlur(alpha, (0, 0), sigma))
        _save_jpeg(inst_dir / "images" / f"{t + 1:03d}.jpg", rgb)
        _save_png(inst_dir / "masks" / f"{t + 1:03d}.png", soft)


# --------------------------------------------------------------------------- all sources


def _check_args(seed: int, size: Sequence[int]) -> Size:
    """Validate a seed and a (width, height); return the size as ints."""
    if int(seed) < 0:
        raise ValueError("seed must be >= 0")
    w, h = int(size[0]), int(size[1])
    if min(w, h) < _MIN_SIDE:
        raise ValueError(f"size {w}x{h} is too small: each side must be at least {_MIN_SIDE} pixels")
    return w, h


def _scaled(size: Size, k: float) -> Size:
    return max(_MIN_SIDE, round(size[0] * k / 2) * 2), max(_MIN_SIDE, round(size[1] * k / 2) * 2)


def generate(root: Path, seed: int = 0, *, sources: Sequence[str] = SOURCES, size: tuple[int, int] = (256, 144),
             scale: int = 1) -> dict[str, Path]:
    """Write every requested source under root/<source>/ and return {source: path to pass as --root}.

    ``size`` is the (width, height) of the video frames (YouTube-VOS, VIPSeg); the
    portraits (PPR10K, 144x216) and the multi-view captures (MVImgNet, 192x192) are
    scaled by the same factor over 144 rows. ``scale`` multiplies the number of videos,
    photo groups and captures, for bigger benchmark sets.
    """
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown sample source(s) {unknown}; choose from {SOURCES}")
    if scale < 1:
        raise ValueError("scale must be >= 1")
    size = _check_args(seed, size)
    k = size[1] / 144
    root = Path(root)
    writers: dict[str, Callable[[], Path]] = {
        "ytvos": lambda: generate_ytvos(root, seed, n_videos=3 * scale, size=size),
        "vipseg": lambda: generate_vipseg(root, seed, n_videos=2 * scale, size=size),
        "ppr10k": lambda: generate_ppr10k(root, seed, n_groups=3 * scale, size=_scaled((144, 216), k)),
        "mvimgnet": lambda: generate_mvimgnet(root, seed, n_instances=2 * scale, size=_scaled((192, 192), k)),
    }
    return {name: writers[name]() for name in dict.fromkeys(sources)}

