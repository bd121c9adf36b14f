"""Identity feature backends: how alike two un-augmented object crops are (the pair score ``identity``).

A backend turns object crops (``side x side`` RGB, background filled, and their bool masks) into features,
a batch at a time, and scores two features in [0, 1] (1 = the same object, as far as it can tell):

- ``classic`` (the default; needs no weights): colour statistics, keypoint matching and shape, with OpenCV.
  The colour part is the Bhattacharyya coefficient of the two objects' hue-saturation histograms (16 hues x
  4 saturations, plus 4 grey levels for unsaturated pixels; gain changes of the light move neither hue nor
  saturation); the keypoint part is the share of ORB keypoints with a distinctive match (Lowe's ratio test,
  0.8); the shape part is the IoU of the two silhouettes, each in its own square crop around its box.
  ``identity`` is their mean (without the keypoint part when either crop has fewer than 4 keypoints). On
  generated faults the three together separate identity switches from clean pairs better than any one of
  them (README, "Data quality").
- ``dinov2``: the cosine similarity of the DINOv2 CLS embeddings of the two crops (negative values, which
  unrelated images do not reach in practice, read as 0). The model is named by hub id or folder (:func:`imprint.hub.load_pretrained`) and is
  loaded once per process (a cache keyed by model and device), so each Ray worker loads it once.

The thresholds differ per backend (``FiltersConfig.min_identity``), since the two scales differ.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from imprint.geometry import resize_crop, resize_mask

BACKENDS = ("classic", "dinov2")
HUE_BINS, SAT_BINS, GREY_BINS = 16, 4, 4
MIN_SATURATION, MIN_VALUE = 0.2, 0.15  # below either, a pixel counts as grey
RATIO = 0.8  # Lowe's ratio test
MIN_KEYPOINTS = 4
DINO_SIDE = 224  # DINOv2 sees crops at 224 px (its usual input; fewer where the model's image size is smaller)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class IdentityConfig:
    """Which backend scores identity: ``classic`` (no weights) or ``dinov2`` (``model``: hub id or folder)."""

    backend: str = "classic"
    model: str = "facebook/dinov2-small"  # dinov2 only
    side: int = 64  # classic: the crops' side in pixels (dinov2 uses the model's image size)
    batch_size: int = 32  # dinov2: crops per forward pass
    device: str = "cpu"  # dinov2: cpu, cuda, cuda:1, ...

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"identity.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.side < 32:
            raise ValueError(f"identity.side must be >= 32 pixels, got {self.side}")
        if self.batch_size < 1:
            raise ValueError(f"identity.batch_size must be >= 1, got {self.batch_size}")


class IdentityBackend(ABC):
    """Features of object crops, and the identity score of two of them."""

    name: str
    side: int  # the crop side the backend wants

    @abstractmethod
    def embed(self, crops: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> list[Any]:
        """One feature per square crop (uint8 RGB, background filled; resized to ``side``) and its bool mask."""

    @abstractmethod
    def similarity(self, a: Any, b: Any) -> float:
        """The identity score of two features, in [0, 1]."""


# --- classic: colour statistics + ORB keypoints --------------------------------------------------------------


def hs_histogram(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The normalised hue-saturation histogram of the masked pixels (module docstring), float32."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    h = hsv[..., 0][mask].astype(np.int32)
    s = hsv[..., 1][mask].astype(np.float32) / 255.0
    v = hsv[..., 2][mask].astype(np.float32) / 255.0
    chroma = (s >= MIN_SATURATION) & (v >= MIN_VALUE)
    hi = np.minimum(h[chroma] * HUE_BINS // 180, HUE_BINS - 1)
    si = np.minimum(((s[chroma] - MIN_SATURATION) / (1.0 - MIN_SATURATION) * SAT_BINS).astype(np.int32),
                    SAT_BINS - 1)
    colour = np.bincount(hi * SAT_BINS + si, minlength=HUE_BINS * SAT_BINS)
    grey = np.bincount(np.minimum((v[~chroma] * GREY_BINS).astype(np.int32), GREY_BINS - 1), minlength=GREY_BINS)
    hist = np.concatenate([colour, grey]).astype(np.float32)
    total = float(hist.sum())
    out: np.ndarray = hist / total if total > 0 else hist
    return out


def bhattacharyya(p: np.ndarray, q: np.ndarray) -> float:
    """The Bhattacharyya coefficient of two normalised histograms, in [0, 1]."""
    return float(np.sqrt(p * q).sum())


def silhouette_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks of one size (1 for two empty masks)."""
    union = int(np.count_nonzero(a | b))
    return float(np.count_nonzero(a & b)) / union if union else 1.0


@dataclass(frozen=True, slots=True)
class ClassicFeatures:
    histogram: np.ndarray
    descriptors: np.ndarray | None  # ORB, N x 32 uint8; None with fewer than MIN_KEYPOINTS keypoints
    silhouette: np.ndarray  # the crop's bool mask


class ClassicBackend(IdentityBackend):
    """Colour statistics + ORB keypoint matching (module docstring); no weights."""

    name = "classic"

    def __init__(self, side: int = 64) -> None:
        self.side = side
        self._orb = cv2.ORB.create(nfeatures=100, edgeThreshold=8, patchSize=15, fastThreshold=10)
        self._matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        self._grow = np.ones((5, 5), np.uint8)

    def embed(self, crops: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> list[Any]:
        out: list[Any] = []
        for rgb, mask in zip(crops, masks):
            rgb, mask = resize_crop(rgb, self.side), resize_mask(mask, self.side)
            grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            # keypoints on the object and its outline (a little outside the mask)
            _, desc = self._orb.detectAndCompute(grey, cv2.dilate(mask.astype(np.uint8), self._grow))
            usable = desc is not None and len(desc) >= MIN_KEYPOINTS
            out.append(ClassicFeatures(hs_histogram(rgb, mask), desc if usable else None, mask))
        return out

    def keypoint_similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        """The share of the smaller set's keypoints that have a distinctive match in the other set."""
        matches = self._matcher.knnMatch(a, b, k=2)
        good = sum(1 for m in matches if len(m) == 2 and m[0].distance < RATIO * m[1].distance)
        return min(1.0, good / float(min(len(a), len(b))))

    def similarity(self, a: Any, b: Any) -> float:
        parts = [bhattacharyya(a.histogram, b.histogram), silhouette_iou(a.silhouette, b.silhouette)]
        if a.descriptors is not None and b.descriptors is not None:
            parts.append(self.keypoint_similarity(a.descriptors, b.descriptors))
        return float(sum(parts)) / len(parts)


# --- dinov2 --------------------------------------------------------------------------------------------------


class Dinov2Backend(IdentityBackend):
    """DINOv2 CLS embeddings (module docstring); build it with :func:`get_backend` to load the model once."""

    name = "dinov2"

    def __init__(self, model: Any, device: str, batch_size: int) -> None:
        import torch

        self.model = model.eval().to(device)
        self.device = device
        self.batch_size = batch_size
        self.side = min(int(model.config.image_size), DINO_SIDE)
        self._mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def embed(self, crops: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> list[Any]:
        import torch

        from imprint.geometry import object_pixels

        out: list[Any] = []
        with torch.inference_mode():
            for i in range(0, len(crops), self.batch_size):
                chunk = [resize_crop(c, self.side) for c in crops[i:i + self.batch_size]]
                batch = torch.from_numpy(np.stack(chunk)).to(self.device)
                pixels = (object_pixels(batch) - self._mean) / self._std
                cls = self.model(pixel_values=pixels).last_hidden_state[:, 0].float()
                cls = torch.nn.functional.normalize(cls, dim=1)
                out.extend(cls.cpu().numpy())
        return out

    def similarity(self, a: Any, b: Any) -> float:
        return float(np.clip(float(np.dot(a, b)), 0.0, 1.0))


@lru_cache(maxsize=4)
def _dinov2(model: str, device: str, batch_size: int) -> Dinov2Backend:
    from transformers import Dinov2Model

    from imprint.hub import load_pretrained

    loaded = load_pretrained(Dinov2Model.from_pretrained, model, "the DINOv2 identity model")
    return Dinov2Backend(loaded, device, batch_size)


def get_backend(cfg: IdentityConfig) -> IdentityBackend:
    """The configured backend; a DINOv2 model is loaded once per process and reused by every later call."""
    if cfg.backend == "dinov2":
        return _dinov2(cfg.model, cfg.device, cfg.batch_size)
    return ClassicBackend(cfg.side)
