"""Building one pair's images: crops, background removal, ``P(T(.))``, encoding.

Every random draw comes from the pair's own generator (seeded by the run seed and
the pair id), so a pair is the same bytes whichever worker builds it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import cv2
import numpy as np

from imprint.augment.affine import apply_affine, is_degenerate, sample_affine
from imprint.augment.color import ColorParams, apply_color, list_cubes, sample_color
from imprint.geometry import Window, object_crop, remove_background, target_crop
from imprint.masks import decode_mask_png, encode_mask_png, mask_bbox
from imprint.pairing.config import PairsConfig
from imprint.pairing.plan import PairSpec, instance_rng
from imprint.stats import Drop


def encode_image(image: np.ndarray, cfg: PairsConfig) -> bytes:
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if cfg.image_format == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
    if not ok:  # pragma: no cover - OpenCV only fails on invalid arrays
        raise RuntimeError("image encoding failed")
    return buf.tobytes()


# RGB straight from the decoder (libjpeg converts to RGB as cheaply as to BGR): no full-frame cvtColor.
# OpenCV before 4.11 has no IMREAD_COLOR_RGB: decode BGR and convert (the same pixels).
_IMREAD_RGB: int | None = getattr(cv2, "IMREAD_COLOR_RGB", None)


def read_rgb(uri: str) -> np.ndarray | None:
    """A frame decoded to RGB uint8 ``H x W x 3`` (the pixels of ``imread`` + ``BGR2RGB``); None if unreadable."""
    if _IMREAD_RGB is not None:
        rgb: np.ndarray | None = cv2.imread(uri, _IMREAD_RGB)
        return rgb
    bgr = cv2.imread(uri, cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


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
        frame = read_rgb(uri)
        if frame is None:
            raise Drop("unreadable_frame", f"{uri} cannot be read or decoded (moved, deleted or corrupt?)")
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


def _target_view(frame: np.ndarray, mask: np.ndarray, bbox: list[int], context: float, cfg: PairsConfig,
                 background: bool) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int], Window]:
    target, tmask, win = target_crop(frame, mask, bbox, context, cfg.resolution, cfg.fill)
    if not background:
        target = remove_background(target, tmask, cfg.fill)
    box = mask_bbox(tmask)
    if box is None or tmask.mean() < cfg.min_target_area:
        raise Drop("vanished_after_crop", f"object covers {tmask.mean():.4f} of the target after the crop "
                                          f"(min_target_area={cfg.min_target_area})")
    return target, tmask, box, win


def _color_on_object(image: np.ndarray, mask: np.ndarray, params: ColorParams, cfg: PairsConfig) -> np.ndarray:
    """``P`` applied inside the object's box only: P acts on each pixel alone and everything outside the mask
    is filled right after, so the object's pixels are those of ``apply_color`` on the whole crop."""
    box = mask_bbox(mask)
    if box is None:
        return apply_color(image, params, cfg.color)
    x0, y0, x1, y1 = box
    out = image.copy()
    out[y0:y1, x0:x1] = apply_color(image[y0:y1, x0:x1], params, cfg.color)
    return out


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
    obj, obj_mask, obj_win = object_crop(src_frame, src_mask, src["bbox"], pad, cfg.object_resolution, cfg.fill)
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
            obj = remove_background(_color_on_object(moved, moved_mask, cparams, cfg), moved_mask, cfg.fill)
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


__all__ = ["FrameCache", "build_pair", "cubes_for", "encode_image", "read_rgb"]
