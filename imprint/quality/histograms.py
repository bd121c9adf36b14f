"""Score distributions with their thresholds, as the report, the dataset card and the preview show them.

Each score has fixed bins (so the histograms of shard tasks merge by adding counts); a value outside the
range counts in the first or the last bin. Every item a filter looked at is counted, split into the items
that filter removed and the ones it let through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# score -> (low, high, bins); mask_components (one bin per value) and hash_distance (two) are whole numbers
SCORE_BINS: dict[str, tuple[float, float, int]] = {
    "sharpness": (0.0, 1.0, 20),
    "mask_components": (0.5, 16.5, 16),
    "mask_largest_share": (0.0, 1.0, 20),
    "hash_distance": (-0.5, 63.5, 32),
    "identity": (0.0, 1.0, 20),
    "change": (0.0, 0.1, 25),
}
# score -> (the FiltersConfig threshold that applies to it, when an item is removed: value "<", ">" or "<="
# the threshold, the reason it gives)
SCORE_RULES: dict[str, tuple[str, str, str]] = {
    "sharpness": ("min_sharpness", "<", "blurry"),
    "mask_components": ("max_mask_components", ">", "fragmented_mask"),
    "mask_largest_share": ("min_mask_largest_share", "<", "fragmented_mask"),
    "hash_distance": ("max_hash_distance", "<=", "near_duplicate"),
    "identity": ("min_identity", "<", "identity_mismatch"),
    "change": ("min_change", "<", "static_pair"),
}
SYMBOLS = {"<": "<", ">": ">", "<=": "≤"}
RECORD_LEVEL = ("sharpness", "mask_components", "mask_largest_share", "hash_distance")
PAIR_LEVEL = ("identity", "change")


def edges(score: str) -> np.ndarray:
    low, high, bins = SCORE_BINS[score]
    out: np.ndarray = np.linspace(low, high, bins + 1)
    return out


def bin_of(score: str, value: float) -> int:
    low, high, bins = SCORE_BINS[score]
    return int(min(bins - 1, max(0, np.floor((value - low) / (high - low) * bins))))


@dataclass
class ScoreHistograms:
    """Counts per score and bin, of the items kept and removed by the filter that reads the score."""

    kept: dict[str, list[int]] = field(default_factory=dict)
    removed: dict[str, list[int]] = field(default_factory=dict)

    def add(self, score: str, value: float, removed: bool = False) -> None:
        side = self.removed if removed else self.kept
        counts = side.setdefault(score, [0] * SCORE_BINS[score][2])
        counts[bin_of(score, value)] += 1

    def merge(self, other: ScoreHistograms) -> None:
        for mine, theirs in ((self.kept, other.kept), (self.removed, other.removed)):
            for score, counts in theirs.items():
                mine[score] = [a + b for a, b in zip(mine.get(score, [0] * len(counts)), counts)]

    def scores(self) -> list[str]:
        return [s for s in SCORE_BINS if s in self.kept or s in self.removed]

    def to_dict(self) -> dict[str, Any]:
        return {"kept": {k: list(v) for k, v in sorted(self.kept.items())},
                "removed": {k: list(v) for k, v in sorted(self.removed.items())}}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ScoreHistograms:
        d = d or {}
        return cls({k: list(v) for k, v in d.get("kept", {}).items()},
                   {k: list(v) for k, v in d.get("removed", {}).items()})


def describe(hist: ScoreHistograms, thresholds: dict[str, float | None], enabled: tuple[str, ...]) -> dict[str, Any]:
    """Per score: bin edges, kept and removed counts, the threshold, the rule (an item is removed when its value
    is ``rule`` the threshold) and whether its filter ran (report.json)."""
    out: dict[str, Any] = {}
    for score in hist.scores():
        key, direction, reason = SCORE_RULES[score]
        n = SCORE_BINS[score][2]
        out[score] = {"edges": [round(float(e), 6) for e in edges(score)],
                      "kept": hist.kept.get(score, [0] * n), "removed": hist.removed.get(score, [0] * n),
                      "threshold": thresholds.get(key), "rule": direction, "reason": reason,
                      "filter_on": reason in enabled}
    return out


def quantile(counts: list[int], score: str, q: float) -> float | None:
    """The ``q`` quantile of binned values (the bin's midpoint); None without values."""
    total = sum(counts)
    if total == 0:
        return None
    e = edges(score)
    cum = np.cumsum(counts)
    i = int(np.searchsorted(cum, q * total, side="left"))
    i = min(i, len(counts) - 1)
    return float((e[i] + e[i + 1]) / 2)
