"""The quality filters: one class per reason, each ``filter(item)`` -> None (keep) or a :class:`Removal`.

Record filters run when pairs are planned, over each instance's records in frame order (a removed record
makes no pair); pair filters run when a pair is built, on its un-augmented crops. Every removal is counted
under its reason in ``report.json`` and written as a row of ``excluded/`` (:mod:`imprint.quality.excluded`).

| reason | level | removed when | default |
|---|---|---|---|
| ``fragmented_mask`` | record | ``mask_components > max_mask_components`` or ``mask_largest_share < min_mask_largest_share`` | 12, 0.8 |
| ``blurry`` | record | ``sharpness < min_sharpness`` | 0.45 |
| ``near_duplicate`` | record | ``appearance_hash`` within ``max_hash_distance`` bits of an earlier kept record of the instance | 3 |
| ``identity_mismatch`` | pair | ``identity < min_identity`` (stage 2) / ``min_identity_views`` (stage 1, view change) | classic 0.6 / 0.6; dinov2: set them |
| ``static_pair`` | pair | ``change < min_change`` (not for self-pairs) | 0.006 |

The defaults come from measurements on generated clean and faulty data (README, "Data quality").
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from imprint.quality.features import IdentityConfig
from imprint.quality.scores import hash_distances, hash_matrix

RECORD_FILTERS = ("fragmented_mask", "blurry", "near_duplicate")
PAIR_FILTERS = ("identity_mismatch", "static_pair")
FILTER_NAMES = RECORD_FILTERS + PAIR_FILTERS

# min_identity / min_identity_views when not set, per backend: stage 2 (frames of a video), stage 1 (views).
# Measured for `classic` (README, "Data quality"): clean view pairs score lower than clean frame pairs, but the
# wrong object of a switched capture scores higher too (the same kind of object, seen from a similar angle),
# and the cut that removes >= 95 % of switched view pairs is the same 0.6. No DINOv2 weights can be had
# offline, so `dinov2` has no measured default: its thresholds must be set (FiltersConfig says so).
IDENTITY_DEFAULTS: dict[str, dict[int, float]] = {"classic": {2: 0.6, 1: 0.6}}


@dataclass(frozen=True)
class FiltersConfig:
    """The quality filters and their thresholds (``imprint pairs --filters none|default|FILE``; a recipe's
    ``pairs: filters:``; ``--set filters.min_sharpness=0.4``). ``enabled``: which filters run (none: ``[]``)."""

    enabled: tuple[str, ...] = FILTER_NAMES
    min_sharpness: float = 0.45
    max_mask_components: int = 12
    min_mask_largest_share: float = 0.8
    max_hash_distance: int = 3
    min_identity: float | None = None  # stage 2 (frames of a video); None: the backend's default (IDENTITY_DEFAULTS)
    min_identity_views: float | None = None  # stage 1 (views of an object); None: the backend's default
    min_change: float = 0.006
    identity: IdentityConfig = field(default_factory=IdentityConfig)

    def __post_init__(self) -> None:
        unknown = [n for n in self.enabled if n not in FILTER_NAMES]
        if unknown:
            raise ValueError(f"unknown filter(s) {unknown} in enabled; known: {', '.join(FILTER_NAMES)}")
        for name in ("min_sharpness", "min_mask_largest_share", "min_change", "min_identity", "min_identity_views"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.max_mask_components < 1 or self.max_hash_distance < 0:
            raise ValueError("max_mask_components must be >= 1 and max_hash_distance >= 0")
        unmeasured = self.identity.backend not in IDENTITY_DEFAULTS and "identity_mismatch" in self.enabled and (
            self.min_identity is None or self.min_identity_views is None)
        if unmeasured:
            raise ValueError(f"the {self.identity.backend} identity backend has no measured default threshold: set "
                             f"filters.min_identity (frames of a video) and filters.min_identity_views (views of an "
                             f"object), e.g. from a run with --filters none and `imprint preview --worst identity`")

    def identity_threshold(self, stage: int) -> float | None:
        """``min_identity`` (stage 2) or ``min_identity_views`` (stage 1), else the backend's measured default
        (None: none measured, and the filter is off)."""
        value = self.min_identity_views if stage == 1 else self.min_identity
        if value is None:
            return IDENTITY_DEFAULTS.get(self.identity.backend, {}).get(1 if stage == 1 else 2)
        return value

    def thresholds(self, stage: int) -> dict[str, float | None]:
        """Every threshold as it applies to ``stage`` (for reports and cards)."""
        return {"min_sharpness": self.min_sharpness, "max_mask_components": self.max_mask_components,
                "min_mask_largest_share": self.min_mask_largest_share, "max_hash_distance": self.max_hash_distance,
                "min_identity": self.identity_threshold(stage), "min_change": self.min_change}


NO_FILTERS = FiltersConfig(enabled=())


@dataclass(frozen=True, slots=True)
class Removal:
    """Why an item was removed: the reason, the score that decided and its threshold."""

    reason: str
    score: str
    value: float
    threshold: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RecordItem:
    """A record's scores (a row of the records table), in its instance's frame order."""

    frame_index: int
    sharpness: float
    mask_components: int
    mask_largest_share: float
    appearance_hash: bytes


@dataclass(frozen=True, slots=True)
class PairItem:
    """A pair's scores, measured on its un-augmented crops."""

    stage: int
    identity: float
    change: float
    self_pair: bool = False  # image sources: the object comes from the target itself


T = TypeVar("T", RecordItem, PairItem)


class Filter(ABC, Generic[T]):
    """One reason to remove an item. ``reset()`` is called before each instance's records."""

    name: str  # the reason it reports
    score: str  # the score it reads

    @abstractmethod
    def filter(self, item: T) -> Removal | None:
        """None to keep ``item``; a :class:`Removal` to remove it."""

    def reset(self) -> None:
        """Forget what the previous instance left (only stateful filters hold anything)."""


class FragmentedMask(Filter[RecordItem]):
    name, score = "fragmented_mask", "mask_components"

    def __init__(self, max_components: int, min_largest_share: float) -> None:
        self.max_components, self.min_largest_share = max_components, min_largest_share

    def filter(self, item: RecordItem) -> Removal | None:
        if item.mask_components > self.max_components:
            return Removal(self.name, "mask_components", item.mask_components, self.max_components,
                           f"{item.mask_components} pieces (largest {item.mask_largest_share:.0%})")
        if item.mask_largest_share < self.min_largest_share:
            return Removal(self.name, "mask_largest_share", item.mask_largest_share, self.min_largest_share,
                           f"the largest of {item.mask_components} pieces holds {item.mask_largest_share:.0%}")
        return None


class Blurry(Filter[RecordItem]):
    name, score = "blurry", "sharpness"

    def __init__(self, min_sharpness: float) -> None:
        self.min_sharpness = min_sharpness

    def filter(self, item: RecordItem) -> Removal | None:
        if item.sharpness < self.min_sharpness:
            return Removal(self.name, self.score, item.sharpness, self.min_sharpness)
        return None


class NearDuplicate(Filter[RecordItem]):
    """Removes a record whose hash is within ``max_distance`` bits of an earlier kept record of its instance.

    Stateful: it remembers the records it kept since the last ``reset()``, so it must run last among the
    record filters (what it keeps is kept)."""

    name, score = "near_duplicate", "hash_distance"

    def __init__(self, max_distance: int) -> None:
        self.max_distance = max_distance
        self._hashes: list[bytes] = []
        self._frames: list[int] = []

    def reset(self) -> None:
        self._hashes, self._frames = [], []

    def filter(self, item: RecordItem) -> Removal | None:
        if self._hashes:
            distances = hash_distances(item.appearance_hash, hash_matrix(self._hashes))
            nearest = int(np.argmin(distances))
            if distances[nearest] <= self.max_distance:
                return Removal(self.name, self.score, float(distances[nearest]), self.max_distance,
                               f"repeats frame {self._frames[nearest]}")
        self._hashes.append(item.appearance_hash)
        self._frames.append(item.frame_index)
        return None


class IdentityMismatch(Filter[PairItem]):
    name, score = "identity_mismatch", "identity"

    def __init__(self, min_identity: float) -> None:
        self.min_identity = min_identity

    def filter(self, item: PairItem) -> Removal | None:
        if not item.self_pair and item.identity < self.min_identity:
            return Removal(self.name, self.score, item.identity, self.min_identity)
        return None


class StaticPair(Filter[PairItem]):
    name, score = "static_pair", "change"

    def __init__(self, min_change: float) -> None:
        self.min_change = min_change

    def filter(self, item: PairItem) -> Removal | None:
        if not item.self_pair and item.change < self.min_change:
            return Removal(self.name, self.score, item.change, self.min_change)
        return None


def record_filters(cfg: FiltersConfig) -> list[Filter[RecordItem]]:
    """The enabled record filters, in the order they run (near_duplicate last)."""
    made: dict[str, Filter[RecordItem]] = {
        "fragmented_mask": FragmentedMask(cfg.max_mask_components, cfg.min_mask_largest_share),
        "blurry": Blurry(cfg.min_sharpness), "near_duplicate": NearDuplicate(cfg.max_hash_distance)}
    return [made[n] for n in RECORD_FILTERS if n in cfg.enabled]


def pair_filters(cfg: FiltersConfig, stage: int) -> list[Filter[PairItem]]:
    """The enabled pair filters for ``stage`` (its identity threshold), in the order they run."""
    made: dict[str, Filter[PairItem]] = {"static_pair": StaticPair(cfg.min_change)}
    identity = cfg.identity_threshold(stage)
    if identity is not None:
        made["identity_mismatch"] = IdentityMismatch(identity)
    return [made[n] for n in PAIR_FILTERS if n in cfg.enabled and n in made]


def first_removal(filters: Sequence[Filter[T]], item: T) -> Removal | None:
    """The first filter's verdict that removes ``item``, or None when every filter keeps it."""
    for f in filters:
        removal = f.filter(item)
        if removal is not None:
            return removal
    return None
