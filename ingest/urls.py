"""URL lists: your own images (and optionally masks) by URL, materialised under ``DATA/raw/urls/<name>/``.

``imprint ingest urls --list FILE.parquet|FILE.csv`` reads a table with the columns
``url`` (required), ``mask_url`` (optional: a mask image, object where the value is
over half its maximum, resized to the image with nearest neighbour when sizes differ)
and ``group_id`` (optional: rows of one group are the frames of one group, in list
order; without it every image is its own group). Rows without a mask are segmented by
``--segmenter`` (see :mod:`imprint.ingest.segment`).

Layout written (then read by :class:`UrlsSource`, source name ``urls``)::

    DATA/raw/urls/<name>/            <name>: the list file's stem
      list.jsonl                     one line per kept row: item_id, group_id, row, image, url (redacted)
      images/<item_id><ext>          <item_id> = first 16 hex digits of sha1(url); <ext> from the URL or .img
      mask_src/<item_id><ext>        the masks as served (mask_url rows)
      masks/<item_id>/<k>.png        1-bit full-image masks, 1 = object
      masks/<item_id>/objects.json   label, score, area per object; drops by reason
      status/part-NNNNN.parquet      the status ledger (one row per item)
      report.json                    counts by status, drops, failures, seconds

The shared pieces (:class:`ImageItem`, :class:`ImageJob`, :class:`MaterialisedImages`)
also serve Pixabay.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import traceback
import urllib.parse
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from imprint.errors import UsageError
from imprint.executor import GPU_TASK, Executor
from imprint.ingest.base import Frame, Group, InstanceMasks, LayoutError, Source
from imprint.ingest.config import IngestConfig
from imprint.ingest.download import (DownloadConfig, DownloadError, Fetcher, ItemStatus, raise_for_failed_tasks,
                                     redact_url, run_downloads, write_report)
from imprint.ingest.segment import (OBJECTS_FILE, Segment, SegmentConfig, SegmenterError, check_segmenter,
                                    load_segmenter, read_object_mask, read_objects, write_objects)
from imprint.media import DEFAULT_MAX_PIXELS
from imprint.stats import Drop

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
LIST_FILE = "list.jsonl"


class UrlListError(UsageError, ValueError):
    """The URL list cannot be read or lacks a column; the message says what is expected."""


def single_image_config(cfg: IngestConfig) -> IngestConfig:
    """``cfg`` for single-image groups (Pixabay, URL lists): an instance seen in one frame is kept."""
    return replace(cfg, min_frames_per_instance=1)


# --------------------------------------------------------------------------------------------- items + job


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


class ImageDecodeError(ValueError):
    pass


def decode_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Fully decode an image to RGB uint8, refusing decompression bombs and truncated files."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.size[0] * im.size[1] > max_pixels:
                    raise ImageDecodeError(f"{im.size[0]}x{im.size[1]} pixels is over max_image_pixels={max_pixels}")
                im.load()
                return np.asarray(im.convert("RGB"))
    except ImageDecodeError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"{type(exc).__name__}: {exc}") from None


def decode_mask_file(path: str | Path, size: tuple[int, int], max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A served mask as a boolean array of ``size`` (w, h): object where the value > half its maximum."""
    import cv2
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.size[0] * im.size[1] > max_pixels:
                    raise ImageDecodeError(f"mask is over max_image_pixels={max_pixels}")
                im.load()
                arr = np.asarray(im.convert("L") if im.mode in ("RGB", "RGBA", "LA") else im)  # P: its indices
    except ImageDecodeError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"mask: {type(exc).__name__}: {exc}") from None
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.dtype == bool:
        arr = arr.view(np.uint8)
    top = int(arr.max()) if arr.size else 0
    mask = (arr > top / 2.0) if top > 0 else np.zeros(arr.shape, bool)
    if (mask.shape[1], mask.shape[0]) != size:
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    return mask


def _short_traceback(limit: int = 2000) -> str:
    text = traceback.format_exc()
    return text if len(text) <= limit else "…" + text[-limit:]


@dataclass(frozen=True)
class ImageJob:
    """The batch step of image sources: fetch images (and masks), check they decode, write their object masks.

    Picklable (a frozen dataclass), so :func:`run_downloads` can ship it to Ray workers;
    the segmentation model is loaded once per process (:func:`load_segmenter`). An image
    whose ``objects.json`` is already written is not segmented again.
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
                [(items[i].item_id, items[i].mask_url, items[i].mask_dest, None) for i in with_masks])
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
        done = masks_dir / item.item_id / OBJECTS_FILE
        if done.is_file():
            try:
                doc = read_objects(done)
                st.extra = {"objects": len(doc["objects"]), "dropped": doc.get("dropped", {})}
                return
            except (OSError, ValueError, KeyError):
                pass  # broken: redo it
        try:
            rgb = decode_image(item.dest, self.max_image_pixels)
        except ImageDecodeError as exc:
            st.status, st.error = "failed_decode", f"image: {exc}"
            Path(item.dest).unlink(missing_ok=True)  # so that --retry-failed fetches it again
            return
        h, w = rgb.shape[:2]
        info = {"item_id": item.item_id, "image": Path(item.dest).name, "source": self.source}
        drops: Counter = Counter()
        if item.mask_url:
            try:
                mask = decode_mask_file(item.mask_dest, (w, h), self.max_image_pixels)
            except ImageDecodeError as exc:
                st.status, st.error = "failed_decode", str(exc)
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


# --------------------------------------------------------------------------------------------- reader


class MaterialisedImages(Source):
    """Reader of a materialised image layout: ``images/``, ``masks/<id>/objects.json`` and an index file.

    Subclasses list the entries (``_entries``: dicts with ``item_id``, ``group_id``,
    ``image`` relative to the root). An image whose segmentation failed is a
    ``missing_mask`` drop; one whose masks were all filtered out is ``no_objects``.
    """

    index_file = LIST_FILE
    fetch_hint = ""

    def _entries(self, root: Path) -> list[dict[str, Any]]:
        path = root / self.index_file
        if not path.is_file() or not (root / "images").is_dir():
            raise LayoutError(f"{root} is not a materialised {self.name} folder: expected {self.index_file}, "
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

    def discover(self, root: Path, cfg: IngestConfig) -> list[Group]:
        root = Path(root)
        groups: dict[str, list[Frame]] = {}
        for e in self._entries(root):
            item_id = str(e["item_id"])
            frame = Frame(name=item_id, image=str(root / e["image"]),
                          annotation=str(root / "masks" / item_id / OBJECTS_FILE))
            groups.setdefault(str(e.get("group_id") or item_id), []).append(frame)
        return [Group(group_id=g, frames=tuple(frames), missing_reason="missing_mask")
                for g, frames in groups.items()]

    def instances(self, frame: Frame, size: tuple[int, int], cfg: IngestConfig) -> InstanceMasks:
        try:
            doc = read_objects(frame.annotation)
            objects = doc["objects"]
        except (OSError, ValueError, KeyError) as exc:
            raise Drop("corrupt_annotation", f"{frame.annotation}: {exc}") from None
        if not objects:
            dropped = ", ".join(f"{k} {v}" for k, v in (doc.get("dropped") or {}).items()) or "none found"
            raise Drop("no_objects", f"no object kept in {frame.image} (segmentation drops: {dropped})")
        out: InstanceMasks = {}
        for obj in objects:
            try:
                mask = read_object_mask(frame.annotation, obj)
            except (OSError, ValueError, KeyError) as exc:
                raise Drop("corrupt_annotation", f"{frame.annotation}: object {obj.get('k')}: {exc}") from None
            if (mask.shape[1], mask.shape[0]) != size:
                raise Drop("size_mismatch", f"{obj.get('file')} beside {frame.annotation} is "
                                            f"{mask.shape[1]}x{mask.shape[0]}, its image {size[0]}x{size[1]}")
            out[str(obj.get("instance_id", obj["k"]))] = (mask, obj.get("label"))
        return out


class UrlsSource(MaterialisedImages):
    name = "urls"
    licence = "Your own URL list: the licences of the images you listed."
    fetch_hint = "materialise it first with `imprint ingest urls --list FILE --out DATA`"


# --------------------------------------------------------------------------------------------- the list


@dataclass(frozen=True)
class UrlRow:
    row: int
    url: str
    mask_url: str | None
    group_id: str | None


def read_url_list(path: str | Path) -> list[UrlRow]:
    """Rows of a ``.parquet`` or ``.csv`` list with ``url`` and optional ``mask_url``, ``group_id`` columns."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise UrlListError(f"--list {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            table = pq.read_table(path)
        elif suffix == ".csv":
            types = {"url": pa.string(), "mask_url": pa.string(), "group_id": pa.string()}
            table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types=types,
                                                                            strings_can_be_null=True))
        else:
            raise UrlListError(f"--list {path}: expected a .parquet or .csv file")
    except (OSError, pa.ArrowException) as exc:
        raise UrlListError(f"--list {path} cannot be read: {exc}") from None
    if "url" not in table.column_names:
        raise UrlListError(f"--list {path} has no 'url' column (columns: {', '.join(table.column_names)}); "
                           f"expected url, and optionally mask_url and group_id")
    cols = {c: table.column(c).to_pylist() for c in ("url", "mask_url", "group_id") if c in table.column_names}
    n = table.num_rows
    rows = []
    for i in range(n):
        def get(col: str) -> str | None:
            v = cols.get(col, [None] * n)[i]
            v = None if v is None else str(v).strip()
            return v or None
        rows.append(UrlRow(i, get("url") or "", get("mask_url"), get("group_id")))
    return rows


def url_item_id(url: str) -> str:
    return hashlib.sha1(url.encode()).hexdigest()[:16]


def url_ext(url: str, default: str = ".img") -> str:
    """The URL path's image extension (lower case), or ``default``."""
    suffix = Path(urllib.parse.urlsplit(url).path).suffix.lower()
    return suffix if suffix in IMAGE_EXTS else default


def plan_url_items(rows: Sequence[UrlRow], root: Path) -> tuple[list[ImageItem], list[dict[str, Any]], Counter]:
    """Items to fetch, the ``list.jsonl`` entries, and the rows skipped (``empty_url``, ``duplicate_url``)."""
    skipped: Counter = Counter()
    seen: set[str] = set()
    kept: list[tuple[UrlRow, str]] = []
    for r in rows:
        if not r.url:
            skipped["empty_url"] += 1
            continue
        item_id = url_item_id(r.url)
        if item_id in seen:
            skipped["duplicate_url"] += 1
            continue
        seen.add(item_id)
        kept.append((r, item_id))
    group_size = Counter(r.group_id for r, _ in kept if r.group_id)
    items, entries = [], []
    for r, item_id in kept:
        image = f"images/{item_id}{url_ext(r.url)}"
        mask_dest = str(root / "mask_src" / f"{item_id}{url_ext(r.mask_url, '.png')}") if r.mask_url else None
        items.append(ImageItem(item_id, r.url, str(root / image), r.mask_url, mask_dest,
                               multi_frame=bool(r.group_id) and group_size[r.group_id] > 1))
        entries.append({"item_id": item_id, "group_id": r.group_id or item_id, "row": r.row, "image": image,
                        "url": redact_url(r.url), "mask_url": redact_url(r.mask_url) if r.mask_url else None})
    return items, entries, skipped


def write_jsonl_atomic(path: Path, entries: Sequence[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        for e in entries:
            f.write(json.dumps(e, sort_keys=True) + "\n")
    os.replace(tmp, path)


def fetch_urls(list_path: Path, out: Path, segmenter: str | None, executor: Executor, retry_failed: bool = False,
               *, name: str | None = None, download: DownloadConfig | None = None,
               segment: SegmentConfig | None = None, chunk: int = 256, max_image_pixels: int = DEFAULT_MAX_PIXELS,
               log=None) -> Path:
    """Materialise a URL list under ``out/raw/urls/<name>/`` and return that root (to ingest as ``urls``).

    Rows without ``mask_url`` need ``segmenter`` (a hub id or folder). Reruns fetch
    nothing already ``ok``/``cached``; ``retry_failed`` retries failed rows. Raises
    :class:`DownloadError` when a task failed as a whole (rerun to retry it).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    rows = read_url_list(list_path)
    name = name or Path(list_path).stem
    root = Path(out) / "raw" / "urls" / name
    (root / "images").mkdir(parents=True, exist_ok=True)
    items, entries, skipped = plan_url_items(rows, root)
    segment = segment or SegmentConfig()
    needs_model = any(not it.mask_url for it in items)
    if needs_model:
        if not segmenter:
            n = sum(not it.mask_url for it in items)
            raise SegmenterError(f"{n} row(s) of {list_path} have no mask_url: pass --segmenter NAME_OR_PATH "
                                 f"(e.g. facebook/mask2former-swin-large-coco-panoptic) or give every row a mask_url")
        check_segmenter(segmenter, segment)
    write_jsonl_atomic(root / LIST_FILE, entries)
    job = ImageJob(str(root), download or DownloadConfig(), segmenter if needs_model else None, segment,
                   max_image_pixels, source="urls")
    on = executor.with_resources(GPU_TASK) if job.segmenter else executor  # the segmenter runs on a GPU if any
    report = run_downloads(items, root, job, on, chunk, retry_failed=retry_failed, label=f"urls {name}",
                           log=log)
    report = {"source": "urls", "list": str(list_path), "rows": len(rows), "skipped_rows": dict(skipped),
              "segmenter": segmenter if needs_model else None, **report,
              "seconds": round(time.perf_counter() - t0, 3)}
    write_report(root / "report.json", report)
    raise_for_failed_tasks(report, root / "report.json")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m imprint.ingest.urls --list FILE --out DATA``: materialise only (ingest with ``imprint ingest``)."""
    from imprint.executor import EXECUTORS, make_executor

    p = argparse.ArgumentParser(prog="imprint-urls", description=__doc__.split("\n\n")[0])
    p.add_argument("--list", dest="list_path", type=Path, required=True, help="a .parquet or .csv URL list")
    p.add_argument("--out", type=Path, required=True, help="the DATA folder; files go to DATA/raw/urls/<name>/")
    p.add_argument("--segmenter", default=None, help="hub id or folder of a panoptic model (rows without mask_url)")
    p.add_argument("--retry-failed", action="store_true", help="retry the rows that failed before")
    p.add_argument("--executor", choices=EXECUTORS, default="local")
    p.add_argument("--workers", type=int, default=None)
    args = p.parse_args(argv)
    try:
        with make_executor(args.executor, args.workers) as executor:
            root = fetch_urls(args.list_path, args.out, args.segmenter, executor, args.retry_failed)
    except (UrlListError, SegmenterError, DownloadError) as exc:
        print(f"imprint urls: {exc}", file=sys.stderr)
        return 2 if not isinstance(exc, DownloadError) else 1
    print(root)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
