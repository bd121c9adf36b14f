"""The MVImgNet layout of the sample: a textured box or cylinder turning on a turntable, soft masks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from imprint.ingest.sample.common import Size, check_args, frac, hex_id, prepare_root, rng_for, save_jpeg, save_png
from imprint.ingest.sample.scenes import camera_view, scene_gains
from imprint.ingest.sample.sprites import aa_points
from imprint.ingest.sample.textures import apply_gain, flat_colour, object_texture, tinted_texture, to_u8, value_noise


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
        sides = [object_texture(rng, tex_side, tex_side) for _ in range(4)]
        top = object_texture(rng, tex_side, tex_side)
    else:
        r = rng.uniform(0.45, 0.7)
        k = 16
        ang = np.linspace(0, 2 * np.pi, k, endpoint=False)
        ring = np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)
        height = rng.uniform(1.1, 2.0)
        wrap = object_texture(rng, tex_side * 4, tex_side)
        band = rng.uniform(0.2, 0.95, 3).astype(np.float32)
        y0, y1 = sorted(rng.uniform(0.1, 0.9, 2))
        wrap[int(y0 * tex_side):int(y1 * tex_side)] = 0.4 * wrap[int(y0 * tex_side):int(y1 * tex_side)] + 0.6 * band
        step = wrap.shape[1] / k
        sides = [np.ascontiguousarray(wrap[:, int(i * step):max(int((i + 1) * step), int(i * step) + 2)])
                 for i in range(k)]
        top = flat_colour(rng, tex_side, tex_side, rng.uniform(0.4, 0.9, 3), 0.2)
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
    src = np.array([[0, 0], [tw - 1, 0], [tw - 1, th - 1], [0, th - 1]], np.float32)
    hom = cv2.getPerspectiveTransform(src, (quad - (x0, y0)).astype(np.float32))
    warped = cv2.warpPerspective(tex, hom, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
    cover = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(cover, aa_points(poly - (x0, y0)), 255, cv2.LINE_AA, 4)
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
    wall = flat_colour(rng, cw, ch, rng.uniform(0.65, 0.92) * (1 + rng.uniform(-0.06, 0.06, 3)), 0.15)
    wall *= np.linspace(1.05, 0.9, ch, dtype=np.float32)[:, None, None]
    if rng.random() < 0.6:
        grain = value_noise(rng, ch, cw, 1, cells=10, octaves=3, aspect=8.0)
        table = np.clip((0.8 + 0.4 * grain) * np.array([0.6, 0.42, 0.26]) * rng.uniform(0.7, 1.3), 0, 1)
    else:
        table = tinted_texture(rng, "gravel", cw, ch, rng.uniform(0.6, 0.85) * np.ones(3), contrast=0.3)
    rows = np.arange(ch)[:, None, None] >= table_y
    return np.where(rows, table, wall).astype(np.float32)


def _shadow(canvas: np.ndarray, centre: tuple[float, float], axes: tuple[float, float]) -> None:
    """Darken a soft ellipse under the object, in place."""
    mask: np.ndarray = np.zeros(canvas.shape[:2], np.float32)
    cv2.ellipse(mask, (round(centre[0]), round(centre[1])), (max(1, round(axes[0])), max(1, round(axes[1]))),
                0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, axes[1] / 2))
    canvas *= (1.0 - 0.45 * mask)[..., None]


#: where the masks go (``generate_mvimgnet(mask_layout=...)``)
MASK_LAYOUTS = ("instance", "tree", "beside")


def generate_mvimgnet(root: Path, seed: int = 0, *, n_classes: int = 2, n_instances: int = 2, n_frames: int = 12,
                      size: Size = (192, 192), mask_layout: str = "instance", padded: bool = True) -> Path:
    """Write an MVImgNet2.0-layout sample under ``root/mvimgnet`` and return that folder.

    ``<class>/<instance>/images/001.jpg ...`` (a textured box or cylinder turning on a
    turntable in a plain room), 8-bit soft masks with a blurred edge, like CarveKit's, and
    ``mvimgnet_category.txt`` (``id,name`` lines). ``n_instances`` captures per class; instance ids
    are 8 hex characters. ``mask_layout`` says where the masks sit:

    - ``instance``: ``<class>/<instance>/masks/001.png`` (MVImgNet2.0's ``masks/`` folder);
    - ``tree``: ``masks/<class>/<instance>/001.jpg.png`` beside the classes (the separate mask download);
    - ``beside``: RGBA images ``<class>/<instance>/images/001_rgba.png`` beside the JPEGs, the mask in their
      alpha (AnyDoor's copy).

    ``padded=False`` names the frames ``1.jpg``, ``2.jpg``, ... (no zero padding).
    """
    size = check_args(seed, size)
    if mask_layout not in MASK_LAYOUTS:
        raise ValueError(f"mask_layout must be one of {MASK_LAYOUTS}, got {mask_layout!r}")
    out = prepare_root(Path(root) / "mvimgnet")
    table = _mv_classes(n_classes)
    for cid, _, kind in _pick_classes(rng_for(seed, "mvimgnet", "classes"), table, n_classes):
        seen: set[str] = set()
        for j in range(n_instances):
            rng = rng_for(seed, "mvimgnet", cid, j)
            inst = hex_id(rng, 8)
            while inst in seen:
                inst = hex_id(rng, 8)
            seen.add(inst)
            _write_capture(rng, out / str(cid) / inst, kind, n_frames, size,
                           _MaskPlace(mask_layout, out / "masks" / str(cid) / inst, padded))
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


@dataclass(frozen=True)
class _MaskPlace:
    layout: str
    tree_dir: Path  # masks/<class>/<instance>/ for the tree layout
    padded: bool

    def write(self, inst_dir: Path, t: int, rgb: np.ndarray, soft: np.ndarray) -> None:
        stem = f"{t + 1:03d}" if self.padded else str(t + 1)
        save_jpeg(inst_dir / "images" / f"{stem}.jpg", rgb)
        if self.layout == "instance":
            save_png(inst_dir / "masks" / f"{stem}.png", soft)
        elif self.layout == "tree":
            save_png(self.tree_dir / f"{stem}.jpg.png", soft)
        else:
            save_png(inst_dir / "images" / f"{stem}_rgba.png", np.dstack([rgb, soft]))


def _write_capture(rng: np.random.Generator, inst_dir: Path, kind: str, n_frames: int, size: Size,
                   place: _MaskPlace) -> None:
    w, h = size
    tex_side = int(np.clip(round(min(size) * 0.4 / 8) * 8, 32, 512))
    solid = _solid(rng, kind, tex_side)
    start = rng.uniform(0, 2 * np.pi)
    sweep = math.radians(rng.uniform(150, 220)) * (1 if rng.random() < 0.5 else -1)
    azimuths = [start + sweep * frac(t, n_frames) for t in range(n_frames)]
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
    canvas_u8 = to_u8(canvas)
    exposure = scene_gains(rng, n_frames)
    sigma = max(0.8, min(size) / 220)
    for t, az in enumerate(azimuths):
        jitter = rng.uniform(-0.01, 0.01, 2) * (w, h)
        view = _Camera(cam.elevation, cam.distance, cam.focal,
                       (cam.principal[0] + jitter[0], cam.principal[1] + jitter[1]))
        move = np.array([[1.0, 0.0, jitter[0] - off[0]], [0.0, 1.0, jitter[1] - off[1]]])
        bg = camera_view(canvas_u8, move, size).astype(np.float32) / 255.0
        layer, alpha = _render_solid(solid, az, view, size)
        a = cv2.GaussianBlur(alpha, (0, 0), 0.6)[..., None]
        rgb = apply_gain(to_u8(bg * (1 - a) + layer * a), exposure[t])
        soft = to_u8(cv2.GaussianBlur(alpha, (0, 0), sigma))
        place.write(inst_dir, t, rgb, soft)
