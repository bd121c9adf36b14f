"""Which pairs to build: sampled from record metadata only (no image is decoded here).

Sampling is deterministic per (seed, source, group, instance): the same records and
seed always give the same pairs, in the same order, whatever the executor.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from imprint.io import sha256_bytes
from imprint.pairing.config import PairsConfig, source_kind

PLAN_COLUMNS = ["group_id", "instance_id", "frame_index", "frame_name"]


@dataclass(frozen=True, slots=True)
class PairSpec:
    """One pair to build: two rows of one records part (``src_row`` gives the object)."""

    pair_id: str
    stage: int
    source: str
    records: str  # the records part both rows come from
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


def candidate_pairs(frames: list[int], kind: str, stage: int, cfg: PairsConfig) -> list[tuple[int, int]]:
    """Ordered (src, tgt) positions in ``frames`` (frame_index values) that the rules allow.

    stage 1: ``1 <= |i - j| <= window``; stage 2 videos: ``min_gap <= |i - j| <= max_gap``
    (two different frames); stage 2 images: the self-pair.
    """
    if kind == "image":
        return [(a, a) for a in range(len(frames))]
    if stage == 1:
        lo, hi = 1, cfg.window
    else:
        lo, hi = cfg.min_gap, (cfg.max_gap or 10**9)
    return [(a, b) for a in range(len(frames)) for b in range(len(frames))
            if a != b and lo <= abs(frames[a] - frames[b]) <= hi]


def sample_pairs(cands: list[tuple[int, int]], cap: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    if len(cands) <= cap:
        return cands
    picked = np.sort(rng.choice(len(cands), size=cap, replace=False))
    return [cands[i] for i in picked]


def plan_part(part: Path, source: str, stage: int, cfg: PairsConfig, cap: int) -> Iterator[PairSpec]:
    """The pairs of one records part (whole groups live in one part)."""
    kind = source_kind(source)
    table = pq.read_table(part, columns=PLAN_COLUMNS).to_pydict()
    instances: dict[tuple[str, str], list[int]] = {}
    for row, key in enumerate(zip(table["group_id"], table["instance_id"])):
        instances.setdefault(key, []).append(row)
    for (group, instance), rows in instances.items():
        rows.sort(key=lambda r: table["frame_index"][r])
        frames = [table["frame_index"][r] for r in rows]
        cands = candidate_pairs(frames, kind, stage, cfg)
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


def record_parts(records_dir: Path, source: str) -> list[Path]:
    return sorted((Path(records_dir) / source).glob("part-*.parquet"))


def plan_pairs(records_dir: Path, sources: dict[str, int], stage: int, cfg: PairsConfig,
               split: str = "all") -> Iterator[PairSpec]:
    """Every pair of ``stage`` from ``sources`` ({source: pairs per instance}), in a fixed order.

    ``split``: ``all``, or ``train`` / ``holdout`` by :func:`in_holdout` with ``cfg.holdout``.
    """
    if split not in ("all", "train", "holdout"):
        raise ValueError(f"split must be all, train or holdout, got {split!r}")
    for source in sorted(sources):
        for part in record_parts(records_dir, source):
            for spec in plan_part(part, source, stage, cfg, sources[source]):
                if split == "all" or in_holdout(source, spec.group_id, cfg.holdout) == (split == "holdout"):
                    yield spec
