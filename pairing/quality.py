"""Data quality in ``imprint pairs``: record filters when pairs are planned, pair scores and filters when built.

- :func:`gate_instance` runs the record filters (``fragmented_mask``, ``blurry``, ``near_duplicate``) over one
  instance's records in frame order, on the scores ingest stored; a removed record makes no pair.
- :func:`score_views` cuts the two un-augmented object crops a pair is scored on (square, box side x
  ``SCORE_PAD``, background filled, at the identity backend's side: 64 px for ``classic``), from the frames
  the pair builder just decoded (its cache holds them).
- :class:`PairScorer` scores the pairs of a shard a batch at a time (``identity`` from the configured
  backend, features cached per record; ``change``), runs the pair filters (``identity_mismatch``,
  ``static_pair``), adds the ``quality`` column to the rows it keeps and turns the others into counted drops
  and rows of ``excluded/`` (with the two crops, so a user sees what was removed).

The scores are computed with or without filters (``--filters none`` keeps every pair and still measures
them), so the card and the preview show their distributions either way.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from imprint.geometry import crop_window, remove_background, resize_crop, resize_labels, square_window
from imprint.pairing.build import FrameCache, encode_image
from imprint.pairing.plan import PairSpec
from imprint.quality.excluded import records_key
from imprint.quality.features import IdentityBackend
from imprint.quality.filters import (FiltersConfig, PairItem, RecordItem, Removal, first_removal, pair_filters,
                                     record_filters)
from imprint.quality.histograms import ScoreHistograms
from imprint.quality.scores import change, hash_distances, hash_matrix
from imprint.io import parquet_schema, read_parquet
from imprint.stats import Stats
from imprint.storage import Where

SCORE_PAD = 1.1  # the crops pairs are scored on: box side x this (fixed, so a record's features are reused)
RECORD_SCORE_COLUMNS = ["sharpness", "mask_components", "mask_largest_share", "appearance_hash"]
QUALITY_RECORD_SCORES = ("sharpness", "mask_components", "mask_largest_share")


# --- planning: the record filters ---------------------------------------------------------------------------


@dataclass
class RecordGate:
    """The record filters of one planning run (:func:`imprint.pairing.plan.plan_part`), with what they
    removed: counted in ``stats``, binned in ``hist``, listed per records part in ``excluded``."""

    filters: FiltersConfig
    stage: int
    stats: Stats = field(default_factory=Stats)
    hist: ScoreHistograms = field(default_factory=ScoreHistograms)
    excluded: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)  # (source, part) -> rows

    def columns(self, part: Where) -> list[str]:
        """The score columns to read from ``part`` (none from records that have no scores)."""
        names = set(parquet_schema(part).names)
        return [c for c in RECORD_SCORE_COLUMNS if c in names]

    def instance(self, source: str, part: Where, table: dict[str, list[Any]], rows: list[int]) -> list[int]:
        """The ``rows`` of one instance (sorted by frame index) that the filters keep. Every record is counted
        and its scores binned; the removed ones are listed for ``excluded/``."""
        if not all(c in table for c in RECORD_SCORE_COLUMNS):
            return rows  # records without scores: nothing to judge them by
        chain = record_filters(self.filters)
        kept: list[int] = []
        hashes: list[bytes] = []
        removed: list[tuple[int, Removal]] = []
        for r in rows:
            item = RecordItem(table["frame_index"][r], table["sharpness"][r], table["mask_components"][r],
                              table["mask_largest_share"][r], table["appearance_hash"][r])
            removal = first_removal(chain, item)
            self._bin(item, removal, hashes)
            if removal is None:
                kept.append(r)
                hashes.append(item.appearance_hash)
                self.stats.keep()
            else:
                removed.append((r, removal))
                self.stats.drop(removal.reason)
        if removed:
            self._list(source, part, table, removed)
        return kept

    def _bin(self, item: RecordItem, removal: Removal | None, hashes: list[bytes]) -> None:
        score = removal.score if removal else None
        self.hist.add("sharpness", item.sharpness, score == "sharpness")
        self.hist.add("mask_components", item.mask_components, score == "mask_components")
        self.hist.add("mask_largest_share", item.mask_largest_share, score == "mask_largest_share")
        if hashes and score not in ("sharpness", "mask_components", "mask_largest_share"):
            nearest = int(hash_distances(item.appearance_hash, hash_matrix(hashes)).min())
            self.hist.add("hash_distance", nearest, score == "hash_distance")

    def _list(self, source: str, part: Where, table: dict[str, list[Any]], removed: list[tuple[int, Removal]]
              ) -> None:
        where = read_parquet(part, ["image_uri", "bbox"]).take([r for r, _ in removed]).to_pydict()
        rows = self.excluded.setdefault((source, str(part)), [])
        for k, (r, removal) in enumerate(removed):
            rows.append({"kind": "record", "stage": self.stage, "source": source, "group_id": table["group_id"][r],
                         "instance_id": table["instance_id"][r], "src_frame": table["frame_index"][r],
                         "reason": removal.reason, "score": removal.score, "value": float(removal.value),
                         "threshold": float(removal.threshold), "detail": removal.detail or None,
                         "records": records_key(part), "src_row": r, "image_uri": where["image_uri"][k],
                         "bbox": list(where["bbox"][k])})


# --- building: the pair scores and filters ------------------------------------------------------------------


@dataclass(slots=True)
class ScoreViews:
    """The two un-augmented object crops of a pair (RGB, background filled) and their masks."""

    src_key: tuple[str, int]  # (records part, row): features are cached per record
    tgt_key: tuple[str, int]
    src: np.ndarray
    src_mask: np.ndarray
    tgt: np.ndarray
    tgt_mask: np.ndarray
    self_pair: bool


def score_view(frame: np.ndarray, mask: np.ndarray, box: list[int], side: int, fill: tuple[int, int, int]
               ) -> tuple[np.ndarray, np.ndarray]:
    """The object cut square around ``box`` (side x ``SCORE_PAD``), ``side`` pixels, background filled.

    Resampled for speed, not for training: bilinear to twice the side, then an exact 2x area reduction (a
    single area resize from a large window costs 20x more), the mask by nearest neighbour.
    """
    win = square_window(box, SCORE_PAD, frame.shape[1], frame.shape[0])
    crop = crop_window(frame, win, fill)
    if crop.shape[0] > 2 * side:
        crop = cv2.resize(crop, (2 * side, 2 * side), interpolation=cv2.INTER_LINEAR)
    crop = resize_crop(crop, side)
    m = resize_labels(crop_window(mask, win, False), side)
    return remove_background(crop, m, fill), m


def score_views(spec: PairSpec, src: dict[str, Any], tgt: dict[str, Any], frames: FrameCache, side: int,
                fill: tuple[int, int, int]) -> ScoreViews:
    """The crops ``spec`` is scored on (:func:`score_view`), cut from the frames and masks ``frames`` holds
    (decoded by the pair builder just before: nothing is decoded twice)."""
    crops = []
    for rec, row in ((src, spec.src_row), (tgt, spec.tgt_row)):
        frame, mask = frames.get(rec["image_uri"]), frames.mask((spec.records, row), rec["mask"])
        crops.append(score_view(frame, mask, rec["bbox"], side, fill))
    return ScoreViews((spec.records, spec.src_row), (spec.records, spec.tgt_row), crops[0][0], crops[0][1],
                      crops[1][0], crops[1][1], spec.src_row == spec.tgt_row)


def _jpeg(image: np.ndarray, name: str) -> dict[str, Any]:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return {"bytes": buf.tobytes() if ok else b"", "path": name}


def quality_column(src: dict[str, Any], tgt: dict[str, Any], identity: float | None,
                   change_: float | None) -> dict[str, Any]:
    """The shard row's ``quality`` struct: the pair's scores and both records' (null where not measured)."""
    out: dict[str, Any] = {"identity": identity, "change": change_}
    for side, rec in (("src", src), ("tgt", tgt)):
        for name in QUALITY_RECORD_SCORES:
            out[f"{side}_{name}"] = rec.get(name)
    return out


@dataclass
class _Pending:
    spec: PairSpec
    row: dict[str, Any]
    src: dict[str, Any]
    tgt: dict[str, Any]
    views: ScoreViews


class PairScorer:
    """Scores and filters the pairs of one shard, ``batch`` at a time (module docstring).

    ``add`` queues a built row with its views and returns the rows a full batch let through, in plan order;
    ``finish`` flushes the rest. Removed pairs are counted in ``stats`` and listed in ``excluded``.
    """

    def __init__(self, filters: FiltersConfig, stage: int, backend: IdentityBackend, stats: Stats,
                 batch: int = 32, cache: int = 256) -> None:
        self.chain = pair_filters(filters, stage)
        self.stage = stage
        self.backend = backend
        self.stats = stats
        self.batch = batch
        self.hist = ScoreHistograms()
        self.excluded: list[dict[str, Any]] = []
        self._pending: list[_Pending] = []
        self._features: OrderedDict[tuple[str, int], Any] = OrderedDict()
        self._cache = cache

    def add(self, spec: PairSpec, row: dict[str, Any], src: dict[str, Any], tgt: dict[str, Any],
            views: ScoreViews) -> list[dict[str, Any]]:
        self._pending.append(_Pending(spec, row, src, tgt, views))
        return self.flush() if len(self._pending) >= self.batch else []

    def finish(self) -> list[dict[str, Any]]:
        return self.flush()

    def _embed(self, pending: list[_Pending]) -> None:
        """Features of every record in ``pending`` not in the cache, one batch through the backend."""
        todo: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        for p in pending:
            if p.views.self_pair:
                continue
            for key, img, m in ((p.views.src_key, p.views.src, p.views.src_mask),
                                (p.views.tgt_key, p.views.tgt, p.views.tgt_mask)):
                if key not in self._features and key not in todo:
                    todo[key] = (img, m)
        if todo:
            feats = self.backend.embed([v[0] for v in todo.values()], [v[1] for v in todo.values()])
            for key, feat in zip(todo, feats):
                self._features[key] = feat
        while len(self._features) > max(self._cache, 2 * len(pending)):
            self._features.popitem(last=False)

    def flush(self) -> list[dict[str, Any]]:
        pending, self._pending = self._pending, []
        self._embed(pending)
        kept: list[dict[str, Any]] = []
        for p in pending:
            v = p.views
            identity = change_ = None
            if not v.self_pair:
                identity = round(self.backend.similarity(self._features[v.src_key], self._features[v.tgt_key]), 6)
                change_ = round(change(v.src, v.src_mask, v.tgt, v.tgt_mask), 6)
            removal = None if v.self_pair else first_removal(
                self.chain, PairItem(self.stage, float(identity or 0.0), float(change_ or 0.0)))
            if identity is not None and change_ is not None:
                self.hist.add("identity", identity, removal is not None and removal.reason == "identity_mismatch")
                self.hist.add("change", change_, removal is not None and removal.reason == "static_pair")
            if removal is None:
                p.row["quality"] = quality_column(p.src, p.tgt, identity, change_)
                kept.append(p.row)
                continue
            self.stats.drop(removal.reason)
            self.excluded.append(self._excluded_row(p, removal))
        return kept

    def _excluded_row(self, p: _Pending, removal: Removal) -> dict[str, Any]:
        s = p.spec
        return {"kind": "pair", "stage": s.stage, "source": s.source, "group_id": s.group_id,
                "instance_id": s.instance_id, "pair_id": s.pair_id, "src_frame": s.src_frame,
                "tgt_frame": s.tgt_frame, "reason": removal.reason, "score": removal.score,
                "value": float(removal.value), "threshold": float(removal.threshold),
                "detail": removal.detail or None, "records": records_key(s.records), "src_row": s.src_row,
                "tgt_row": s.tgt_row, "image_uri": p.src["image_uri"], "tgt_image_uri": p.tgt["image_uri"],
                "bbox": list(p.src["bbox"]), "tgt_bbox": list(p.tgt["bbox"]), "object": _jpeg(p.views.src, f"{s.pair_id}_object.jpg"),
                "target": _jpeg(p.views.tgt, f"{s.pair_id}_target.jpg")}
