"""Objects of the sample as sprites: a textured shape (ellipse, polygon, star, horse, logo, person, car)
in its own square frame, with its coverage, area and box."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from imprint.ingest.sample.textures import (flat_colour, logo_parts, object_texture, photo_rgb, random_crop,
                                            skimage_image, value_noise)


# --------------------------------------------------------------------------- shapes (alpha in [0, 1])


def _draw_aa(s: int, draw: Callable[[np.ndarray], object]) -> np.ndarray:
    canvas = np.zeros((s, s), np.uint8)
    draw(canvas)
    return canvas.astype(np.float32) / 255.0


def aa_points(points: np.ndarray) -> list[np.ndarray]:
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
    return _draw_aa(s, lambda cv: cv2.fillPoly(cv, aa_points(pts), 255, cv2.LINE_AA, 4))


def _shape_star(rng: np.random.Generator, s: int) -> np.ndarray:
    n = int(rng.integers(5, 8))
    ang = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False) + rng.uniform(0, np.pi)
    rad = np.where(np.arange(2 * n) % 2 == 0, 0.47, 0.47 * rng.uniform(0.45, 0.62)) * s
    pts = (s - 1) / 2 + np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
    return _draw_aa(s, lambda cv: cv2.fillPoly(cv, aa_points(pts), 255, cv2.LINE_AA, 4))


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
    horse = ~skimage_image("horse")  # the silhouette is False on white
    horse = horse[:, ::-1] if rng.random() < 0.5 else horse
    return _fit(horse, horse, s)


# --------------------------------------------------------------------------- sprites


@dataclass(frozen=True)
class Sprite:
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


def _sprite(rgb: np.ndarray, alpha: np.ndarray) -> Sprite:
    """A sprite from colour and coverage, rim-shaded, with its area and box measured."""
    s = alpha.shape[0]
    ys, xs = np.nonzero(alpha > 0.01)
    c = (s - 1) / 2
    box = (float(xs.min() - c - 1), float(xs.max() - c + 1), float(ys.min() - c - 1), float(ys.max() - c + 1))
    return Sprite(np.ascontiguousarray(_shaded(rgb, alpha), np.float32), np.ascontiguousarray(alpha, np.float32),
                   float(np.count_nonzero(alpha >= 0.5)), box)


def _parts_sprite(s: int, prims: Sequence[tuple], colours: dict[int, np.ndarray]) -> Sprite:
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
                cv2.fillPoly(canvas, aa_points(np.asarray(prim[1]) * s), value, aa, 4)
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


def person_sprite(rng: np.random.Generator, s: int) -> Sprite:
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
    skin = _SKIN[rng.integers(len(_SKIN))] * (0.9 + 0.15 * value_noise(rng, s, s, 1, cells=6))
    colours = {
        1: np.clip(skin, 0, 1),
        2: object_texture(rng, s, s),
        3: flat_colour(rng, s, s, rng.uniform(0.1, 0.5, 3), 0.4),
        4: flat_colour(rng, s, s, _HAIR[rng.integers(len(_HAIR))], 0.5),
        5: flat_colour(rng, s, s, (0.08, 0.08, 0.1), 0.3),
    }
    return _parts_sprite(s, prims, colours)


def _car_sprite(rng: np.random.Generator, s: int) -> Sprite:
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
    paint = flat_colour(rng, s, s, rng.uniform(0.15, 0.95, 3), 0.2)
    paint = 0.75 * paint + 0.25 * object_texture(rng, s, s)
    colours = {1: paint, 2: flat_colour(rng, s, s, (0.55, 0.65, 0.75), 0.5),
               3: flat_colour(rng, s, s, (0.07, 0.07, 0.08), 0.3), 4: flat_colour(rng, s, s, (0.7, 0.7, 0.72), 0.2)}
    sprite = _parts_sprite(s, prims, colours)
    return _mirrored(sprite) if rng.random() < 0.5 else sprite


def _mirrored(sprite: Sprite) -> Sprite:
    """The sprite flipped left-right."""
    x0, x1, y0, y1 = sprite.box
    return Sprite(np.ascontiguousarray(sprite.rgb[:, ::-1]), np.ascontiguousarray(sprite.alpha[:, ::-1]),
                   sprite.area, (-x1, -x0, y0, y1))


def _logo_sprite(rng: np.random.Generator, s: int) -> Sprite:
    """The scikit-image logo's disc or one of its halves, with the logo's own snake texture."""
    rgb, shapes = logo_parts()
    mask = shapes[str(rng.choice(sorted(shapes)))]
    alpha = _fit(mask, mask, s)
    tex = _fit(rgb.astype(np.float32) / 255.0, mask, s)
    mix = rng.uniform(0.1, 0.3)
    tex = (1 - mix) * tex + mix * value_noise(rng, s, s, 3, cells=4)
    return _sprite(np.clip(tex * rng.uniform(0.75, 1.15, 3).astype(np.float32), 0, 1), alpha)


_PLAIN_SHAPES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "ellipse": _shape_ellipse, "polygon": _shape_polygon, "star": _shape_star, "horse": _shape_horse,
}


def make_sprite(rng: np.random.Generator, shape: str, s: int, texture: str | None = None) -> Sprite:
    """A sprite of ``shape`` with side ``s``; ``texture`` names a photo to texture it from."""
    if shape == "person":
        return person_sprite(rng, s)
    if shape == "car":
        return _car_sprite(rng, s)
    if shape == "logo":
        return _logo_sprite(rng, s)
    alpha = _PLAIN_SHAPES[shape](rng, s)
    if texture is None:
        rgb = object_texture(rng, s, s)
    else:
        rgb = random_crop(rng, photo_rgb(texture), s, s, 0.3).astype(np.float32) / 255.0
    return _sprite(rgb, alpha)
