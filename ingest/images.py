"""Single images materialised with their object masks: the pieces URL lists and Pixabay share.

A materialised image folder holds ``images/<item_id><ext>``, ``masks/<item_id>/<k>.png``
(1-bit full-image masks) with ``masks/<item_id>/objects.json``, an index file (one JSON
line per image: ``item_id``, ``group_id``, ``image``, and its ``licence`` / ``attribution``
where known) and the status ledger ``status/`` (:mod:`imprint.ingest.ledger`).
:class:`ImageJob` is the ledger step that fills it; :class:`MaterialisedImages` the
reader of it.
"""

from __future__ import annotations

import json
import time
import traceback
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imprint.ingest.base import Frame, Group, InstanceMasks, LayoutError, Source
from imprint.geometry import resize_labels
from imprint.ingest.config import IngestConfig
from imprint.ingest.download import DownloadConfig, Fetcher, ItemStatus
from imprint.ingest.ledger import failed_items
from imprint.ingest.segment import (OBJECTS_FILE, Segment, SegmentConfig, load_segmenter, read_object_mask,
                                    read_objects, write_objects)
from imprint.ingest.sources import Option
from imprint.io import write_text_atomic
from imprint.media import DEFAULT_MAX_PIXELS, mask_for_frame, read_image, read_label_map
from imprint.stats import Drop

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
DEFAULT_SEGMENTER = "facebook/mask2former-swin-large-coco-panoptic"

#: ``--segmenter``, shared by every source that segments images without masks.
SEGMENTER = Option(("--segmenter",), f"segmentation model, hub id or folder (see docs/sources-remote.md; "
                                     f"default: {DEFAULT_SEGMENTER})")


def url_ext(url: str, default: str = ".img") -> str:
    """The URL path's image extension (lower case), or ``default``."""
    suffix = Path(urllib.parse.urlsplit(url).path).suffix.lower()
    return suffix if suffix in IMAGE_EXTS else default


def write_jsonl_atomic(path: Path, entries: Sequence[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries))


def read_mask(path: str, size: tuple[int, int], max_pixels: int = DEFAULT_MAX_PIXELS,
              image: str | None = None) -> np.ndarray:
    """A served mask as a boolean array of ``size`` (w, h): object where the value is over half its maximum.

    Read like any annotation (:func:`imprint.media.read_label_map`: palette indices, the alpha of RGBA or grey +
    alpha, the first channel of RGB), resized nearest-neighbour when its size differs from the image's. With
    ``image`` (its photo), placed on it as displayed (:func:`imprint.media.mask_for_frame`: turned with the
    photo's EXIF orientation when made from its stored pixels; another aspect ratio is a ``size_mismatch``).
    """
    arr = read_label_map(path, max_pixels)
    if arr.dtype == bool:
        arr = arr.view(np.uint8)
    top = int(arr.max()) if arr.size else 0
    mask = ((arr > top / 2.0) if top > 0 else np.zeros(arr.shape, bool)).astype(np.uint8)
    if image is not None:
        return mask_for_frame(mask, size, image, path).astype(bool)
    return resize_labels(mask, size).astype(bool)


def _short_traceback(limit: int = 2000) -> str:
    text = traceback.format_exc()
    return text if len(text) <= limit else "…" + text[-limit:]


@dataclass(frozen=True)
class ImageItem:
    """One image to materialise: fetch ``url`` to ``dest``; masks from ``mask_url`` or from the segmenter."""

    item_id: str
    url: str
    dest: str
    mask_url: str | None = None
    mask_dest: str | None = None
    sha256: str | None = None
    multi_frame: bool = False  # its group has several frames: segmented instance ids are made unique per frame


@dataclass(frozen=True)
class ImageJob:
    """The ledger step of image sources: fetch images (and masks), check they decode, write their object masks.

    Picklable (a frozen dataclass) for Ray; the segmentation model is loaded once per process
    (:func:`load_segmenter`).
    """

    root: str
    download: DownloadConfig = DownloadConfig()
    segmenter: str | None = None
    segment: SegmentConfig = SegmentConfig()
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    source: str = ""

    def __call__(self, items: Sequence[ImageItem]) -> list[ItemStatus]:
        masks_dir = Path(self.root) / "masks"
        with Fetcher(self.download) as fetcher:
            statuses = fetcher.fetch_many([(it.item_id, it.url, it.dest, it.sha256) for it in items])
            with_masks = [i for i, it in enumerate(items) if it.mask_url and statuses[i].ok]
            mask_statuses = fetcher.fetch_many(
                [(items[i].item_id, str(items[i].mask_url), str(items[i].mask_dest), None) for i in with_masks])
        for i, mst in zip(with_masks, mask_statuses):
            st = statuses[i]
            st.bytes += mst.bytes
            st.attempts += mst.attempts
            if not mst.ok:
                st.status, st.error = mst.status, f"mask {mst.url}: {mst.error}"
        for item, st in zip(items, statuses):
            if st.ok:
                self._materialise(item, st, masks_dir)
            st.updated = time.time()
        return statuses

    def _materialise(self, item: ImageItem, st: ItemStatus, masks_dir: Path) -> None:
        try:
            rgb = read_image(item.dest, self.max_image_pixels)
        except Drop as drop:
            st.status, st.error = "failed_decode", f"image: {drop}"
            Path(item.dest).unlink(missing_ok=True)  # so that --retry-failed fetches it again
            return
        h, w = rgb.shape[:2]
        info: dict[str, Any] = {"item_id": item.item_id, "image": Path(item.dest).name, "source": self.source}
        drops: Counter[str] = Counter()
        if item.mask_dest is not None:
            try:
                mask = read_mask(item.mask_dest, (w, h), self.max_image_pixels, image=item.dest)
            except Drop as drop:
                st.status, st.error = "failed_decode", f"mask: {drop}"
                Path(item.mask_dest).unlink(missing_ok=True)
                return
            segments = [Segment(mask, None, None)] if mask.any() else []
            if not mask.any():
                drops["empty_mask"] += 1
            info["masks_from"] = "mask_url"
            ids = ["1"] * len(segments)
        else:
            if self.segmenter is None:
                st.status, st.error = "failed_segment", "no mask_url for this item and no --segmenter given"
                return
            try:
                segments = load_segmenter(self.segmenter, self.segment).segment(rgb, drops)
            except Exception:  # noqa: BLE001 - the model failed on this image: counted, the job goes on
                st.status, st.error = "failed_segment", _short_traceback()
                return
            info["masks_from"] = "segmenter"
            info["segmenter"] = self.segmenter
            ids = [f"{item.item_id}-{k}" if item.multi_frame else str(k) for k in range(1, len(segments) + 1)]
        info.update(width=w, height=h)
        write_objects(masks_dir, item.item_id, segments, info, drops, ids)
        st.extra = {"objects": len(segments), "dropped": dict(drops)}


class MaterialisedImages(Source):
    """Reader of a materialised image folder (see the module doc); ``index_file`` names its index.

    Images whose materialisation failed are not listed: the ingest job counts them from the
    ledger under their status. An image whose masks were all filtered out is ``no_objects``;
    a frame without ``objects.json`` is ``missing_mask``.
    """

    index_file = "list.jsonl"
    what = "image"
    fetch_hint = ""

    def _entries(self, root: Path) -> list[dict[str, Any]]:
        path = root / self.index_file
        if not path.is_file() or not (root / "images").is_dir():
            raise LayoutError(f"{root} is not a materialised {self.what} folder: expected {self.index_file}, "
                              f"images/ and masks/<id>/objects.json; {self.fetch_hint}")
        entries = []
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise LayoutError(f"{path} line {n} is not JSON: {exc}") from None
        return entries

    def credit(self, entry: dict[str, Any]) -> tuple[str | None, str | None]:
        """An image's own ``(licence, attribution)``; None for either takes the source's."""
        return entry.get("licence"), entry.get("attribution")

    def discover(self, root: Path, cfg: IngestConfig) -> list[Group]:
        root = Path(root)
        failed = failed_items(root)
        frames: dict[str, list[Frame]] = {}
        credits: dict[str, tuple[str | None, str | None]] = {}
        for e in self._entries(root):
            item_id = str(e["item_id"])
            if item_id in failed:
                continue
            group_id = str(e.get("group_id") or item_id)
            frames.setdefault(group_id, []).append(Frame(
                name=item_id, image=str(root / e["image"]), annotation=str(root / "masks" / item_id / OBJECTS_FILE)))
            credits.setdefault(group_id, self.credit(e))
        return [Group(group_id=g, frames=tuple(fs), missing_reason="missing_mask", licence=credits[g][0],
                      attribution=credits[g][1]) for g, fs in frames.items()]

    def instances(self, frame: Frame, size: tuple[int, int], cfg: IngestConfig) -> InstanceMasks:
        annotation = frame.annotation_file
        try:
            doc = read_objects(annotation)
            objects = doc["objects"]
        except (OSError, ValueError, KeyError) as exc:
            raise Drop("corrupt_annotation", f"{annotation}: {exc}") from None
        if not objects:
            dropped = ", ".join(f"{k} {v}" for k, v in (doc.get("dropped") or {}).items()) or "none found"
            raise Drop("no_objects", f"no object kept in {frame.image} (segmentation drops: {dropped})")
        out: InstanceMasks = {}
        for obj in objects:
            try:
                mask = read_object_mask(annotation, obj)
            except (OSError, ValueError, KeyError) as exc:
                raise Drop("corrupt_annotation", f"{annotation}: object {obj.get('k')}: {exc}") from None
            if (mask.shape[1], mask.shape[0]) != size:
                raise Drop("size_mismatch", f"{obj.get('file')} beside {annotation} is "
                                            f"{mask.shape[1]}x{mask.shape[0]}, its image {size[0]}x{size[1]}")
            out[str(obj.get("instance_id", obj["k"]))] = (mask, obj.get("label"))
        return out
