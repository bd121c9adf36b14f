"""What every source reader provides, and the shared frame -> object-records step.

A reader (one per official layout) only lists groups and decodes one frame's
annotation into per-instance masks; everything else (image checks, boxes, quality
filters, frame order, mask encoding, counting) is :func:`process_group`, the same
for every source.
"""

from __future__ import annotations

import traceback
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from imprint.errors import ImprintError
from imprint.ingest.config import IngestConfig
from imprint.masks import encode_packed_png, pack_mask, packed_bbox
from imprint.media import probe_image
from imprint.quality.scores import RecordScores, read_grey, reduction_for, record_scores
from imprint.records import ObjectRecord, frame_number_of, frame_sort_key
from imprint.stats import Drop, Stats


class LayoutError(ImprintError, ValueError):
    """The root is not the expected official layout; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of a group: its image and (if any) its annotation file.

    ``expected`` lists the ``(instance_id, category)`` the annotation should hold
    (from meta files); None means "whatever instances the annotation holds".
    ``number`` is the frame's number in its source's own unit (a video frame index at the
    source's frame rate, a view of a capture, a photo of a group): the records' ``frame_number``.
    :func:`sorted_frames` sets it from the name; None takes the frame's position in its group.
    """

    name: str
    image: str
    annotation: str | None
    expected: tuple[tuple[str, str | None], ...] | None = None
    number: int | None = None

    @property
    def annotation_file(self) -> str:
        """The annotation's path (the shared step asks a reader only about frames that have one)."""
        if self.annotation is None:
            raise Drop("missing_annotation", f"no annotation for frame {self.image}")
        return self.annotation


@dataclass(frozen=True, slots=True)
class Group:
    """A video, a capture or a photo group: the frames that pairs may combine.

    ``licence`` and ``attribution`` are this group's own (an Objaverse object's licence and author);
    None takes the source's (:class:`~imprint.ingest.sources.SourceDef`), filled in when the job is planned.
    """

    group_id: str
    frames: tuple[Frame, ...]
    missing_reason: str = "missing_annotation"  # reason for a frame without annotation
    licence: str | None = None
    attribution: str | None = None


InstanceMasks = dict[str, tuple[np.ndarray, str | None]]


class Source(ABC):
    """A reader of one layout: it lists groups and decodes annotations, nothing else.

    Everything else about a source (name, kind, licence, settings) is its
    :class:`~imprint.ingest.sources.SourceDef`.
    """

    @abstractmethod
    def discover(self, root: Path, cfg: IngestConfig) -> list[Group]:
        """List the groups under ``root`` (cheap: no decoding). Raise LayoutError if it is not the layout."""

    @abstractmethod
    def instances(self, frame: Frame, size: tuple[int, int], cfg: IngestConfig) -> InstanceMasks:
        """Decode ``frame``'s annotation into ``{instance_id: (bool mask HxW, category)}``.

        ``size`` is the image's (width, height) as displayed (its EXIF orientation applied, as every
        later stage decodes it); raise :class:`Drop` for a bad annotation.
        """

    def read_notes(self) -> dict[str, Any]:
        """What the last :meth:`discover` read (folders, split lists, mask variants): ``report.json``'s
        ``read``. A reader that chooses between places sets ``self._read`` in ``discover``."""
        return dict(getattr(self, "_read", {}))


def sorted_frames(frames: list[Frame]) -> tuple[Frame, ...]:
    """Frames in the order of the number in their names, each with that number (``Frame.number``)."""
    numbered = [f if f.number is not None else replace(f, number=frame_number_of(f.name)) for f in frames]
    return tuple(sorted(numbered, key=lambda f: frame_sort_key(f.name)))


def _n_items(frame: Frame) -> int:
    return len(frame.expected) if frame.expected else 1


def _border_sides(bbox: tuple[int, int, int, int], w: int, h: int) -> int:
    x0, y0, x1, y1 = bbox
    return int(x0 == 0) + int(y0 == 0) + int(x1 == w) + int(y1 == h)


def filter_reason(bbox: tuple[int, int, int, int], area: int, w: int, h: int, cfg: IngestConfig) -> str | None:
    """The quality-filter reason that drops this object, or None to keep it."""
    frac = area / float(w * h)
    if frac < cfg.min_area_frac:
        return "area_too_small"
    if frac > cfg.max_area_frac:
        return "area_too_large"
    if min(bbox[2] - bbox[0], bbox[3] - bbox[1]) < cfg.min_box_side:
        return "box_too_small"
    if _border_sides(bbox, w, h) > cfg.max_border_sides:
        return "cut_by_border"
    return None


def process_group(source: Source, name: str, group: Group, cfg: IngestConfig, stats: Stats) -> list[ObjectRecord]:
    """Turn one group into object records of source ``name``, counting every item kept or dropped.

    An item is a (frame, object) pair, or a frame when its objects cannot be known
    (its annotation is missing or broken and no meta file lists them).
    """
    frames = group.frames
    if not frames:
        return []
    if len(frames) == 1 and cfg.min_frames_per_instance > 1:
        stats.drop("single_frame_group", _n_items(frames[0]))
        return []
    if all(not Path(f.image).exists() for f in frames):
        stats.drop("no_files", sum(_n_items(f) for f in frames), item=group.group_id,
                   error=f"no image file of group {group.group_id} exists (e.g. {frames[0].image})")
        return []
    index = {f.name: i for i, f in enumerate(frames)}
    candidates: list[ObjectRecord] = []
    for frame in frames:
        item = f"{group.group_id}/{frame.name}"
        try:
            candidates.extend(_frame_records(source, name, group, frame, index[frame.name], cfg, stats))
        except Drop as drop:
            stats.drop(drop.reason, _n_items(frame), item=item, error=drop.detail or drop.reason)
        except Exception:  # noqa: BLE001 - a bug or an unforeseen input: counted, never fatal
            stats.drop("error", _n_items(frame), item=item, error=traceback.format_exc())
    return _keep_multi_frame(candidates, cfg, stats)


def _frame_records(source: Source, name: str, group: Group, frame: Frame, frame_index: int, cfg: IngestConfig,
                   stats: Stats) -> list[ObjectRecord]:
    if frame.annotation is None or not Path(frame.annotation).exists():
        raise Drop(group.missing_reason, f"no annotation for frame {frame.image}")
    w, h = probe_image(frame.image, cfg.max_image_pixels, full=cfg.verify == "full")
    found = source.instances(frame, (w, h), cfg)
    expected = frame.expected if frame.expected is not None else tuple(
        (iid, cat) for iid, (_, cat) in sorted(found.items(), key=lambda kv: frame_sort_key(kv[0])))
    kept = []
    for instance_id, category in expected:
        mask, found_category = found.get(instance_id, (None, None))
        category = category or found_category
        packed = pack_mask(mask) if mask is not None else None
        bbox = packed_bbox(packed) if packed is not None else None
        if mask is None or packed is None or bbox is None:
            stats.drop("empty_mask", item=f"{group.group_id}/{frame.name}/{instance_id}",
                       error=f"instance {instance_id} has no pixels in {frame.annotation}")
            continue
        area = int(np.count_nonzero(mask[bbox[1]:bbox[3], bbox[0]:bbox[2]]))
        reason = filter_reason(bbox, area, w, h, cfg)
        if reason is not None:
            stats.drop(reason)
            continue
        kept.append((instance_id, category, mask, packed, bbox, area))
    scores = _quality_scores(frame, [(k[2], k[4]) for k in kept])
    return [ObjectRecord(
        source=name, group_id=group.group_id, instance_id=instance_id,
        frame_index=frame_index, frame_name=frame.name,
        frame_number=frame.number if frame.number is not None else frame_index, image_uri=frame.image,
        annotation_uri=frame.annotation, width=w, height=h,
        mask=encode_packed_png(packed, w, cfg.png_level), bbox=bbox,
        area_frac=area / float(w * h), category=category,
        licence=group.licence or "", attribution=group.attribution, sharpness=score.sharpness,
        mask_components=score.mask_components, mask_largest_share=score.mask_largest_share,
        mask_solidity=score.mask_solidity, mask_fill=score.mask_fill, appearance_hash=score.appearance_hash)
        for (instance_id, category, mask, packed, bbox, area), score in zip(kept, scores)]


def _quality_scores(frame: Frame, objects: list[tuple[np.ndarray, tuple[int, int, int, int]]]) -> list[RecordScores]:
    """The quality scores of a frame's objects ((mask, box) each), from one greyscale decode of the frame at
    the largest reduction that leaves the smallest box at least ``WORK_SIDE`` pixels (imprint.quality.scores)."""
    if not objects:
        return []
    reduction = reduction_for(min(max(b[2] - b[0], b[3] - b[1]) for _, b in objects))
    grey = read_grey(frame.image, reduction)
    if grey is None:
        raise Drop("corrupt_image", f"{frame.image} cannot be decoded")
    return [record_scores(grey, reduction, mask, box) for mask, box in objects]


def _keep_multi_frame(candidates: list[ObjectRecord], cfg: IngestConfig, stats: Stats) -> list[ObjectRecord]:
    """Drop instances seen in fewer than ``min_frames_per_instance`` frames; count the rest kept."""
    counts: dict[str, int] = {}
    for rec in candidates:
        counts[rec.instance_id] = counts.get(rec.instance_id, 0) + 1
    kept = []
    for rec in candidates:
        if counts[rec.instance_id] < cfg.min_frames_per_instance:
            stats.drop("single_frame_instance")
        else:
            stats.keep()
            kept.append(rec)
    kept.sort(key=lambda r: (frame_sort_key(r.instance_id), r.frame_index))
    return kept
