"""The scores: per record (computed once, at ingest) and per pair (at pairs time, on the un-augmented crops).

Record scores, from the frame (greyscale, decoded once, possibly reduced) and the object's full-frame mask:

- ``sharpness`` in [0, 1] (1 = sharp): one minus the blur effect of Crété-Roffet et al. (2007) over the
  object region's edges: the share of the strongest 15 % of its pixel-to-pixel differences that a 9-pixel
  re-blur takes away. A sharp edge loses most of its contrast when blurred again, a defocused one almost
  none; taking the edges (not every pixel) keeps a smooth object with a crisp outline sharp. It is measured at
  the object's scale: its box brought down to ``WORK_SIDE`` (128) pixels, so for any object larger than that
  a defocus relative to the object's size scores the same at 720p and at 4K. A smaller object is measured
  as it is (never enlarged: enlarging would make every small object look blurry).
- mask quality, on the mask inside its box at full resolution: ``mask_components`` (8-connected pieces),
  ``mask_largest_share`` (the largest piece's share of the mask's pixels), ``mask_solidity`` (mask pixels /
  pixels of their convex hull) and ``mask_fill`` (mask pixels / box pixels).
- ``appearance_hash``: a 256-bit difference hash (dHash, 16 x 17 samples) of the object's box, for
  near-duplicate detection: two records whose hashes differ in few bits show (nearly) the same picture of the
  object. (The common 64-bit dHash is too coarse here: consecutive frames of a slowly moving object often
  share all 64 bits.)

Pair scores, from the two un-augmented object crops (background filled, the same window factor):

- ``identity``: how alike the two objects are, from an identity backend (:mod:`imprint.quality.features`);
- ``change``: the mean absolute difference of the two crops over the union of their masks, in [0, 1]; near
  0 for a static shot or a repeated frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from imprint.geometry import Box

WORK_SIDE = 128  # the box's longer side (pixels) at which sharpness and the hash are measured; only reduced
SHARPNESS_MARGIN = 0.1  # the region: the box grown by this share of its side on every side
REBLUR = 9  # the re-blur kernel of the sharpness measure, in working pixels
EDGE_SHARE = 0.15  # sharpness is measured on this share of the region's strongest pixel-to-pixel differences
HASH_SIDE = 16  # dHash: 16 x 17 samples -> 256 bits
CHANGE_SIDE = 64  # the side at which two crops are compared for `change`
REDUCTIONS = (8, 4, 2, 1)  # JPEG decode reductions OpenCV offers (IMREAD_REDUCED_*)
_REDUCED_GREY = {1: cv2.IMREAD_GRAYSCALE, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
                 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}

HASH_BITS = HASH_SIDE * HASH_SIDE
HASH_BYTES = HASH_BITS // 8
RECORD_SCORES = ("sharpness", "mask_components", "mask_largest_share", "mask_solidity", "mask_fill",
                 "appearance_hash")
PAIR_SCORES = ("identity", "change")


@dataclass(frozen=True, slots=True)
class RecordScores:
    """The quality scores of one record (module docstring)."""

    sharpness: float
    mask_components: int
    mask_largest_share: float
    mask_solidity: float
    mask_fill: float
    appearance_hash: bytes  # HASH_BITS bits


# --- decoding ------------------------------------------------------------------------------------------------


def reduction_for(smallest_box_side: int, work_side: int = WORK_SIDE) -> int:
    """The largest JPEG decode reduction that keeps the smallest box's longer side at ``work_side`` or more."""
    for r in REDUCTIONS:
        if smallest_box_side // r >= work_side:
            return r
    return 1


def read_grey(path: str | Path, reduction: int = 1) -> np.ndarray | None:
    """The frame in greyscale, decoded at 1/``reduction`` of its size (JPEG: by the DCT, far cheaper than a
    full decode); None when it cannot be read."""
    grey: np.ndarray | None = cv2.imread(str(path), _REDUCED_GREY[reduction])
    return grey


# --- record scores -------------------------------------------------------------------------------------------


def mask_scores(mask: np.ndarray) -> tuple[int, float, float, float]:
    """(components, largest share, solidity, fill) of a bool mask cut to its box."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    total = int(np.count_nonzero(m))
    if total == 0:
        return 0, 0.0, 0.0, 0.0
    # counting is cheap; the areas (WithStats, 7x slower) only where there is more than one piece
    # (16-bit labels while even a checkerboard of specks, size / 4 pieces, cannot overflow them)
    ltype = cv2.CV_16U if m.size < 4 * 65535 else cv2.CV_32S
    n = cv2.connectedComponents(m, connectivity=8, ltype=ltype)[0] - 1
    largest = total if n == 1 else int(cv2.connectedComponentsWithStats(m, connectivity=8)[2][1:, cv2.CC_STAT_AREA].max())
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.convexHull(np.concatenate(contours))
    canvas = np.zeros_like(m)
    cv2.fillConvexPoly(canvas, hull, 1)
    hull_area = max(int(np.count_nonzero(canvas)), total)
    return int(n), largest / total, total / hull_area, total / float(m.size)


def _grown(box: Box, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (int(v) for v in box)
    mx, my = int(round((x1 - x0) * margin)), int(round((y1 - y0) * margin))
    return max(0, x0 - mx), max(0, y0 - my), min(width, x1 + mx), min(height, y1 + my)


def _to_work(image: np.ndarray, longest: int, work_side: int) -> np.ndarray:
    if longest <= work_side:
        return image
    k = work_side / longest
    size = (max(1, round(image.shape[1] * k)), max(1, round(image.shape[0] * k)))
    out: np.ndarray = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return out


def sharpness(grey: np.ndarray, weight: np.ndarray) -> float:
    """1 - the blur effect (Crété-Roffet et al.) of ``grey`` over the pixels where ``weight`` is true, measured
    on the ``EDGE_SHARE`` strongest pixel-to-pixel differences of each direction (the edges: a smooth texture
    inside a crisp outline is sharp; defocus softens every edge)."""
    f = grey.astype(np.float32)
    worst = 0.0
    for axis, ksize in ((0, (1, REBLUR)), (1, (REBLUR, 1))):
        blurred = cv2.blur(f, ksize, borderType=cv2.BORDER_REFLECT)
        inside = weight[1:, :] if axis == 0 else weight[:, 1:]
        d_f = np.abs(np.diff(f, axis=axis))[inside]
        d_b = np.abs(np.diff(blurred, axis=axis))[inside]
        k = max(1, int(d_f.size * EDGE_SHARE))
        if d_f.size > k:
            top = np.argpartition(d_f, d_f.size - k)[d_f.size - k:]
            d_f, d_b = d_f[top], d_b[top]
        s_f = float(d_f.sum())
        if s_f <= 1e-6:
            return 0.0  # nothing varies in the region: no detail to measure
        s_v = float(np.maximum(d_f - d_b, 0.0).sum())
        worst = max(worst, (s_f - s_v) / s_f)
    return 1.0 - worst


def dhash(grey: np.ndarray) -> bytes:
    """The ``HASH_BITS``-bit difference hash of a greyscale image: is each sample brighter than its left
    neighbour, on a ``HASH_SIDE x (HASH_SIDE + 1)`` area-averaged grid."""
    small = cv2.resize(grey, (HASH_SIDE + 1, HASH_SIDE), interpolation=cv2.INTER_AREA).astype(np.int16)
    return np.packbits(small[:, 1:] > small[:, :-1]).tobytes()


def hash_matrix(hashes: list[bytes]) -> np.ndarray:
    """``N x HASH_BYTES`` uint8 rows of hashes, for :func:`hash_distances`."""
    return np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(len(hashes), HASH_BYTES)


def hash_distances(h: bytes, others: np.ndarray) -> np.ndarray:
    """Bits in which ``h`` differs from each row of ``others`` (from :func:`hash_matrix`)."""
    x = np.bitwise_xor(others, np.frombuffer(h, dtype=np.uint8)[None, :])
    distances: np.ndarray = np.bitwise_count(x).sum(axis=1, dtype=np.int64)
    return distances


def record_scores(grey: np.ndarray, reduction: int, mask: np.ndarray, box: Box,
                  work_side: int = WORK_SIDE) -> RecordScores:
    """The scores of one record: ``grey`` is its frame decoded at 1/``reduction``, ``mask`` its full-frame bool
    mask (full resolution) and ``box`` its ``[x0, y0, x1, y1)`` in full-resolution pixels."""
    x0, y0, x1, y1 = (int(v) for v in box)
    components, share, solidity, fill = mask_scores(mask[y0:y1, x0:x1])
    r = reduction
    h, w = grey.shape[:2]
    rbox = (x0 // r, y0 // r, max(x0 // r + 1, -(-x1 // r)), max(y0 // r + 1, -(-y1 // r)))
    gx0, gy0, gx1, gy1 = _grown(rbox, SHARPNESS_MARGIN, w, h)
    longest = max(gx1 - gx0, gy1 - gy0)
    region = _to_work(grey[gy0:gy1, gx0:gx1], longest, work_side)
    # the mask on the same grid (nearest neighbour: it only says where to look), grown by a band so
    # that the object's outline, usually its sharpest edge, is measured too
    full = mask[gy0 * r:gy1 * r, gx0 * r:gx1 * r].view(np.uint8)
    weight = cv2.resize(full, (region.shape[1], region.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    band = max(1, round(0.03 * max(region.shape)))
    weight = cv2.dilate(weight.astype(np.uint8), np.ones((2 * band + 1, 2 * band + 1), np.uint8)) > 0
    bx0, by0 = rbox[0] - gx0, rbox[1] - gy0
    k = region.shape[1] / float(gx1 - gx0)
    inner = region[int(by0 * k):max(int(by0 * k) + 1, int(round((rbox[3] - gy0) * k))),
                   int(bx0 * k):max(int(bx0 * k) + 1, int(round((rbox[2] - gx0) * k)))]
    return RecordScores(sharpness=round(sharpness(region, weight), 6), mask_components=components,
                        mask_largest_share=round(share, 6), mask_solidity=round(solidity, 6),
                        mask_fill=round(fill, 6), appearance_hash=dhash(inner))


# --- pair scores ---------------------------------------------------------------------------------------------


def change(a: np.ndarray, a_mask: np.ndarray, b: np.ndarray, b_mask: np.ndarray, side: int = CHANGE_SIDE) -> float:
    """Mean absolute difference (in [0, 1]) of two object crops over the union of their masks, compared at
    ``side`` pixels; 0 for identical crops."""
    if a.shape[0] != side:
        a = cv2.resize(a, (side, side), interpolation=cv2.INTER_AREA)
        b = cv2.resize(b, (side, side), interpolation=cv2.INTER_AREA)
        a_mask = cv2.resize(a_mask.astype(np.uint8), (side, side), interpolation=cv2.INTER_AREA) > 0
        b_mask = cv2.resize(b_mask.astype(np.uint8), (side, side), interpolation=cv2.INTER_AREA) > 0
    union = a_mask | b_mask
    if not union.any():
        return 0.0
    diff = cv2.absdiff(a, b).astype(np.float32).mean(axis=2)
    return float(diff[union].mean()) / 255.0
