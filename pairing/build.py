"""Building one pair's images: crops, background removal, ``P(T(.))``, encoding.

Every random draw comes from the pair's own generator (seeded by the run seed and
the pair id), so a pair is the same bytes whichever worker builds it.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from imprint.augment.affine import apply_affine, is_degenerate, sample_affine
from imprint.augment.color import apply_color, list_cubes, sample_color
from imprint.masks import decode_mask_png, encode_mask_png, mask_bbox
from imprint.pairing.config import PairsConfig
from imprint.pairing.plan import PairSpec, instance_rng
from imprint.stats import Drop


@dataclass(frozen=True, slots=True)
class Window:
    """A square window in frame pixels; it may extend past the frame (then ``padded``)."""

    x0: int
    y0: int
    side: int
    context: float
    padded: bool

    def to_dict(self) -> dict[str, Any]:
        return {"x0": self.x0, "y0": self.y0, "side": self.side, "context": self.context, "padded": self.padded}


def square_window(bbox: tuple[int, int, int, int] | list[int], context: float, width: int, height: int,
                  fit: bool = False) -> Window:
    """A square of side ``max(box w, h) * context`` centred on the box, moved inside the frame when it fits.

    With ``fit`` the side is first shrunk to the frame's shorter side (never below the box's),
    so a target is padded only when the object itself is larger than the frame is wide.
    """
    x0, y0, x1, y1 = bbox
    box_side = max(1, x1 - x0, y1 - y0)
    side = max(1, int(round(box_side * context)))
    if fit:
        side = max(box_side, min(side, width, height))
        context = side / box_side
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    wx, wy = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    if side <= width:
        wx = min(max(wx, 0), width - side)
    if side <= height:
        wy = min(max(wy, 0), height - side)
    padded = wx < 0 or wy < 0 or wx + side > width or wy + side > height
    return Window(wx, wy, side, float(context), padded)


def crop_window(image: np.ndarray, win: Window, fill: tuple[int, ...] | int) -> np.ndarray:
    """The window's pixels (a view when it lies inside the frame); outside the frame filled with ``fill``."""
    h, w = image.shape[:2]
    sx0, sy0 = max(win.x0, 0), max(win.y0, 0)
    sx1, sy1 = min(win.x0 + win.side, w), min(win.y0 + win.side, h)
    if (sx0, sy0, sx1, sy1) == (win.x0, win.y0, win.x0 + win.side, win.y0 + win.side):
        return image[sy0:sy1, sx0:sx1]
    out = np.empty((win.side, win.side, *image.shape[2:]), dtype=image.dtype)
    out[...] = fill
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - win.y0:sy1 - win.y0, sx0 - win.x0:sx1 - win.x0] = image[sy0:sy1, sx0:sx1]
    return out


def _interpolation(src: int, size: int) -> int:
    """Area averaging for strong reductions (no aliasing), bilinear up to 2x down, bicubic up."""
    if src > 2 * size:
        return cv2.INTER_AREA
    return cv2.INTER_LINEAR if src >= size else cv2.INTER_CUBIC


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size and image.shape[1] == size:
        return np.ascontiguousarray(image)
    return cv2.resize(image, (size, size), interpolation=_interpolation(image.shape[0], size))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resample a boolean mask like the image and threshold at one half (keeps thin parts better than nearest)."""
    if mask.shape[0] == size and mask.shape[1] == size:
        return np.ascontiguousarray(mask)
    # 0/1 in uint8: the resampled value rounds to 1 where the covered fraction is >= 1/2
    soft = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=_interpolation(mask.shape[0], size))
    return soft >= 1


@lru_cache(maxsize=16)
def _fill_image(shape: tuple[int, ...], fill: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape, np.uint8)
    out[...] = fill
    out.flags.writeable = False
    return out


def remove_background(image: np.ndarray, mask: np.ndarray, fill: tuple[int, int, int]) -> np.ndarray:
    """``I ⊗ M``: object pixels kept, the rest set to ``fill``."""
    image = np.ascontiguousarray(image)
    m = mask.astype(np.uint8)
    if not any(fill):
        return cv2.bitwise_and(image, image, mask=m)
    return cv2.copyTo(image, m, _fill_image(image.shape, tuple(fill)).copy())


def encode_image(image: np.ndarray, cfg: PairsConfig) -> bytes:
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if cfg.image_format == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
    if not ok:  # pragma: no cover - OpenCV only fails on invalid arrays
        raise RuntimeError("image encoding failed")
    return buf.tobytes()


class FrameCache:
    """The last few decoded frames and masks: consecutive pairs share the frames of one instance."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._frames: OrderedDict[str, np.ndarray] = OrderedDict()
        self._masks: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()

    def mask(self, key: tuple[str, int], png: bytes) -> np.ndarray:
        if key in self._masks:
            self._masks.move_to_end(key)
            return self._masks[key]
        mask = decode_mask_png(png)
        self._masks[key] = mask
        if len(self._masks) > 2 * self.size:
            self._masks.popitem(last=False)
        return mask

    def get(self, uri: str) -> np.ndarray:
        if uri in self._frames:
            self._frames.move_to_end(uri)
            return self._frames[uri]
        bgr = cv2.imread(uri, cv2.IMREAD_COLOR)
        if bgr is None:
            raise Drop("unreadable_frame", f"{uri} cannot be read or decoded (moved, deleted or corrupt?)")
        frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        self._frames[uri] = frame
        if len(self._frames) > self.size:
            self._frames.popitem(last=False)
        return frame


def _record_view(record: dict, frames: FrameCache, key: tuple[str, int]) -> tuple[np.ndarray, np.ndarray]:
    frame = frames.get(record["image_uri"])
    mask = frames.mask(key, record["mask"])
    if mask.shape != frame.shape[:2]:
        raise Drop("size_mismatch", f"mask {mask.shape} and frame {frame.shape[:2]} of {record['image_uri']} differ")
    return frame, mask


def _draw(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1])) if lo_hi[1] > lo_hi[0] else float(lo_hi[0])


def object_view(frame: np.ndarray, mask: np.ndarray, win: Window, cfg: PairsConfig) -> tuple[np.ndarray, np.ndarray]:
    """The object cut from ``win``, background removed, at ``object_resolution`` (image, mask)."""
    crop_mask = resize_mask(crop_window(mask, win, False), cfg.object_resolution)
    crop = resize_image(crop_window(frame, win, cfg.fill), cfg.object_resolution)
    return remove_background(crop, crop_mask, cfg.fill), crop_mask


def _target_view(frame: np.ndarray, mask: np.ndarray, bbox: list[int], context: float, cfg: PairsConfig,
                 background: bool):
    win = square_window(bbox, context, frame.shape[1], frame.shape[0], fit=True)
    target = resize_image(crop_window(frame, win, cfg.fill), cfg.resolution)
    tmask = resize_mask(crop_window(mask, win, False), cfg.resolution)
    if not background:
        target = remove_background(target, tmask, cfg.fill)
    box = mask_bbox(tmask)
    if box is None or tmask.mean() < cfg.min_target_area:
        raise Drop("vanished_after_crop", f"object covers {tmask.mean():.4f} of the target after the crop "
                                          f"(min_target_area={cfg.min_target_area})")
    return target, tmask, box, win


def build_pair(spec: PairSpec, src: dict, tgt: dict, frames: FrameCache, cfg: PairsConfig,
               cubes: list[str]) -> dict[str, Any]:
    """One shard row (see ``imprint.shards.schema``); raises :class:`Drop` for a pair that cannot be made.

    The object: its square window (box side x ``object_pad``) cut, background removed and resized to
    ``object_resolution``; in stage 2 then ``T`` (affine) and ``P`` (colour LUT), background filled
    again. Both act on the resized crop, so their cost does not grow with the frame.
    """
    rng = instance_rng(cfg.seed, "pair", spec.pair_id)
    src_frame, src_mask = _record_view(src, frames, (spec.records, spec.src_row))
    tgt_frame, tgt_mask = _record_view(tgt, frames, (spec.records, spec.tgt_row))
    pad, context = _draw(rng, cfg.object_pad), _draw(rng, cfg.target_context)
    obj_win = square_window(src["bbox"], pad, src_frame.shape[1], src_frame.shape[0])
    obj, obj_mask = object_view(src_frame, src_mask, obj_win, cfg)
    affine = color = None
    if spec.stage == 1:
        # Stage 1: view 2 with its background removed, cropped around its own box.
        target, tmask, box, tgt_win = _target_view(tgt_frame, tgt_mask, tgt["bbox"], pad, cfg, background=False)
    else:
        target, tmask, box, tgt_win = _target_view(tgt_frame, tgt_mask, tgt["bbox"], context, cfg, background=True)
        if cfg.augment:
            params = sample_affine(rng, cfg.affine)
            moved, moved_mask = apply_affine(obj, obj_mask, params, fill=cfg.fill)
            if is_degenerate(moved_mask, obj_mask, cfg.min_object_keep):
                raise Drop("degenerate_affine", f"the affine draw {params.to_dict()} left "
                                                f"{moved_mask.sum()}/{obj_mask.sum()} object pixels")
            cparams = sample_color(rng, cfg.color, cubes)
            obj = remove_background(apply_color(moved, cparams, cfg.color), moved_mask, cfg.fill)
            affine, color = params.to_dict(), cparams.to_dict()
    return {
        "pair_id": spec.pair_id, "stage": spec.stage, "source": spec.source, "group_id": spec.group_id,
        "instance_id": spec.instance_id, "src_frame": spec.src_frame, "tgt_frame": spec.tgt_frame,
        "object": {"bytes": encode_image(obj, cfg), "path": f"{spec.pair_id}_object.{_ext(cfg)}"},
        "target": {"bytes": encode_image(target, cfg), "path": f"{spec.pair_id}_target.{_ext(cfg)}"},
        "mask": {"bytes": encode_mask_png(tmask), "path": f"{spec.pair_id}_mask.png"},
        "bbox": list(box),
        "aug": {"affine": affine, "color": color, "object_crop": obj_win.to_dict(),
                "target_crop": tgt_win.to_dict(), "fill": list(cfg.fill)},
        "seed": cfg.seed, "category": src.get("category"),
    }


def _ext(cfg: PairsConfig) -> str:
    return "jpg" if cfg.image_format == "jpeg" else "png"


def cubes_for(cfg: PairsConfig) -> list[str]:
    return list_cubes(cfg.color.cube_dir) if cfg.color.cube_dir else []


__all__ = ["FrameCache", "Window", "build_pair", "crop_window", "cubes_for", "square_window"]
