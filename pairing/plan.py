"""Which pairs to build: sampled from record metadata only (no image is decoded here).

Sampling is deterministic per (seed, source, group, instance): the same records and
seed always give the same pairs, in the same order, whatever the executor.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from imprint.io import read_parquet, sha256_bytes
from imprint.pairing.config import PairsConfig, source_frame_rate, source_kind
from imprint.parts import finished_parts
from imprint.storage import Location, Where

if TYPE_CHECKING:  # pragma: no cover
    from imprint.pairing.quality import RecordGate

PLAN_COLUMNS = ["group_id", "instance_id", "frame_index", "frame_name", "frame_number"]


@dataclass(frozen=True, slots=True)
class PairSpec:
    """One pair to build: two rows of one records part (``src_row`` gives the object)."""

    pair_id: str
    stage: int
    source: str
    records: str  # the records part both rows come from (a path or a URI)
    group_id: str
    instance_id: str
    src_row: int
    tgt_row: int
    src_frame: int
    tgt_frame: int


def stable_hash(*parts: object) -> str:
    return sha256_bytes("\x1f".join(str(p) for p in parts).encode())


def instance_rng(seed: int, *key: object) -> np.random.Generator:
    """A generator seeded from the seed and a key (source, group, instance, …), independent of order."""
    return np.random.default_rng([seed, int(stable_hash(*key)[:16], 16)])


def candidate_pairs(numbers: list[int], kind: str, stage: int, cfg: PairsConfig,
                    frame_rate: float | None = None) -> list[tuple[int, int]]:
    """Ordered (src, tgt) positions in ``numbers`` (an instance's ``frame_number`` values, in frame order) that
    the rules allow (:func:`pair_rule` says them in words).

    stage 1, the view window: ``1 <= |n_a - n_b| <= window`` in the capture's frame numbers; stage 2 videos, a
    time gap: two different frames with ``min_gap_s <= |n_a - n_b| / frame_rate <= max_gap_s`` (no bound
    without a frame rate); stage 2 images: the self-pair.
    """
    n = len(numbers)
    if kind == "image":
        return [(a, a) for a in range(n)]
    if stage == 1:
        return [(a, b) for a in range(n) for b in range(n) if 1 <= abs(numbers[a] - numbers[b]) <= cfg.window]
    lo, hi = (cfg.min_gap_s, cfg.max_gap_s or float("inf")) if frame_rate else (0.0, float("inf"))
    rate = frame_rate or 1.0
    return [(a, b) for a in range(n) for b in range(n)
            if numbers[a] != numbers[b] and lo <= abs(numbers[a] - numbers[b]) / rate <= hi]


def pair_rule(source: str, stage: int, cfg: PairsConfig) -> str:
    """Which rule ``source``'s pairs follow in ``stage``, and over what (frame numbers, time), in words."""
    kind, rate = source_kind(source), source_frame_rate(source)
    if kind == "image":
        return "self-pairs: each image is its own target"
    if stage == 1:
        return f"view window: 1 <= |n1 - n2| <= {cfg.window} in the capture's frame numbers"
    if not rate:
        bounded = " (min_gap_s / max_gap_s do not apply)" if cfg.min_gap_s or cfg.max_gap_s else ""
        return f"any two different frames: no frame rate, so no time{bounded}"
    hi = f"{cfg.max_gap_s:g} s" if cfg.max_gap_s else "unbounded"
    return f"time gap: {cfg.min_gap_s:g} s <= |n1 - n2| / {rate:g} fps <= {hi}, two different frames"


def sample_pairs(cands: list[tuple[int, int]], cap: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    if len(cands) <= cap:
        return cands
    picked = np.sort(rng.choice(len(cands), size=cap, replace=False))
    return [cands[i] for i in picked]


def plan_part(part: Where, source: str, stage: int, cfg: PairsConfig, cap: int, split: str = "all",
              gate: RecordGate | None = None) -> Iterator[PairSpec]:
    """The pairs of one records part (whole groups live in one part), of the groups in ``split``.

    ``gate``: the record filters; a record they remove makes no pair (they see each instance's records in
    frame order, before any pair is drawn).
    """
    kind, rate = source_kind(source), source_frame_rate(source)
    columns = PLAN_COLUMNS + (gate.columns(part) if gate is not None else [])
    table = read_parquet(part, columns).to_pydict()
    instances: dict[tuple[str, str], list[int]] = {}
    for row, key in enumerate(zip(table["group_id"], table["instance_id"])):
        instances.setdefault(key, []).append(row)
    for (group, instance), rows in instances.items():
        if not in_split(source, group, cfg.holdout, split):
            continue
        rows.sort(key=lambda r: table["frame_index"][r])
        if gate is not None:
            rows = gate.instance(source, part, table, rows)
        numbers = [table["frame_number"][r] for r in rows]
        cands = candidate_pairs(numbers, kind, stage, cfg, rate)
        rng = instance_rng(cfg.seed, stage, source, group, instance)
        for a, b in sample_pairs(cands, cap, rng):
            src, tgt = rows[a], rows[b]
            pair_id = stable_hash(stage, source, group, instance, table["frame_name"][src],
                                  table["frame_name"][tgt], cfg.seed)[:20]
            yield PairSpec(pair_id, stage, source, str(part), group, instance, src, tgt,
                           table["frame_index"][src], table["frame_index"][tgt])


def in_holdout(source: str, group_id: str, fraction: float) -> bool:
    """Whether a group is held out: a hash of (source, group), so the split never depends on the seed
    or on which other groups exist, and no group is on both sides."""
    return fraction > 0 and int(stable_hash("holdout", source, group_id)[:8], 16) / 0xFFFFFFFF < fraction


def in_split(source: str, group_id: str, fraction: float, split: str) -> bool:
    """Whether the group belongs to ``split`` (``all``, ``train`` or ``holdout``)."""
    return split == "all" or in_holdout(source, group_id, fraction) == (split == "holdout")


def record_parts(records_dir: Where, source: str) -> list[Location]:
    """The finished records parts of ``source`` (those with a marker: a part being written is not read)."""
    return finished_parts(Location.of(records_dir) / source)


def plan_pairs(records_dir: Where, sources: dict[str, int], stage: int, cfg: PairsConfig,
               split: str = "all", gate: RecordGate | None = None) -> Iterator[PairSpec]:
    """Every pair of ``stage`` from ``sources`` ({source: pairs per instance}), in a fixed order.

    ``split``: ``all``, or ``train`` / ``holdout`` by :func:`in_holdout` with ``cfg.holdout``. ``gate``: the
    record filters (:func:`plan_part`).
    """
    if split not in ("all", "train", "holdout"):
        raise ValueError(f"split must be all, train or holdout, got {split!r}")
    for source in sorted(sources):
        for part in record_parts(records_dir, source):
            yield from plan_part(part, source, stage, cfg, sources[source], split, gate)
