"""URL lists: your own images (and optionally masks) by URL, materialised under ``DATA/raw/urls/<name>/``.

``imprint ingest urls --list FILE.parquet|FILE.csv`` reads a table with the columns
``url`` (required), ``mask_url`` (optional: a mask image, object where the value is
over half its maximum, resized to the image with nearest neighbour when sizes differ),
``group_id`` (optional: rows of one group are the frames of one group, in list order;
without it every image is its own group), and ``licence`` / ``attribution`` (optional:
the image's licence and who to credit; they become the records' columns). Rows without
a mask are segmented by ``--segmenter`` (see :mod:`imprint.ingest.segment`).

Layout written (then read by :class:`UrlsSource`)::

    DATA/raw/urls/<name>/            <name>: the list file's stem
      list.jsonl                     one line per kept row: item_id, group_id, row, image, url (redacted), licence,
                                     attribution
      images/<item_id><ext>          <item_id> = first 16 hex digits of sha1(url); <ext> from the URL or .img
      mask_src/<item_id><ext>        the masks as served (mask_url rows)
      masks/<item_id>/<k>.png        1-bit full-image masks, 1 = object
      masks/<item_id>/objects.json   label, score, area per object; drops by reason
      status/                        the status ledger (one row per item)
      report.json                    counts by status, drops, failures, seconds
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imprint.errors import UsageError
from imprint.executor import GPU_TASK, Executor
from imprint.ingest.download import DownloadConfig, redact_url
from imprint.ingest.images import SEGMENTER, ImageItem, ImageJob, MaterialisedImages, url_ext, write_jsonl_atomic
from imprint.ingest.ledger import RETRY_FAILED, run_items
from imprint.ingest.segment import SegmentConfig, SegmenterError, check_segmenter
from imprint.ingest.sources import Materialise, Option, Request, SourceDef
from imprint.io import remove_stale_dirs
from imprint.media import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)

LIST_FILE = "list.jsonl"
LIST_COLUMNS = ("url", "mask_url", "group_id", "licence", "attribution")


class UrlListError(UsageError, ValueError):
    """The URL list cannot be read or lacks a column; the message says what is expected."""


class UrlsSource(MaterialisedImages):
    """A URL list as materialised by :func:`fetch_urls`."""

    index_file = LIST_FILE
    what = "URL-list"
    fetch_hint = "materialise it first with `imprint ingest urls --list FILE --out DATA`"


# --------------------------------------------------------------------------------------------- the list


@dataclass(frozen=True)
class UrlRow:
    row: int
    url: str
    mask_url: str | None
    group_id: str | None
    licence: str | None = None
    attribution: str | None = None


def read_url_list(path: str | Path) -> list[UrlRow]:
    """Rows of a ``.parquet`` or ``.csv`` list: ``url``, and optional ``mask_url``, ``group_id``, ``licence``,
    ``attribution`` columns."""
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
            types = {c: pa.string() for c in LIST_COLUMNS}
            table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types=types,
                                                                            strings_can_be_null=True))
        else:
            raise UrlListError(f"--list {path}: expected a .parquet or .csv file")
    except (OSError, pa.ArrowException) as exc:
        raise UrlListError(f"--list {path} cannot be read: {exc}") from None
    if "url" not in table.column_names:
        raise UrlListError(f"--list {path} has no 'url' column (columns: {', '.join(table.column_names)}); "
                           f"expected url, and optionally {', '.join(LIST_COLUMNS[1:])}")
    cols = {c: table.column(c).to_pylist() for c in LIST_COLUMNS if c in table.column_names}
    n = table.num_rows
    rows = []
    for i in range(n):
        def get(col: str) -> str | None:
            v = cols.get(col, [None] * n)[i]
            v = None if v is None else str(v).strip()
            return v or None
        rows.append(UrlRow(i, get("url") or "", get("mask_url"), get("group_id"), get("licence"),
                           get("attribution")))
    return rows


def url_item_id(url: str) -> str:
    return hashlib.sha1(url.encode()).hexdigest()[:16]


def plan_url_items(rows: Sequence[UrlRow], root: Path) -> tuple[list[ImageItem], list[dict[str, Any]], Counter[str]]:
    """Items to fetch, the ``list.jsonl`` entries, and the rows skipped (``empty_url``, ``duplicate_url``)."""
    skipped: Counter[str] = Counter()
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
    items: list[ImageItem] = []
    entries: list[dict[str, Any]] = []
    for r, item_id in kept:
        image = f"images/{item_id}{url_ext(r.url)}"
        mask_dest = str(root / "mask_src" / f"{item_id}{url_ext(r.mask_url, '.png')}") if r.mask_url else None
        items.append(ImageItem(item_id, r.url, str(root / image), r.mask_url, mask_dest,
                               multi_frame=r.group_id is not None and group_size[r.group_id] > 1))
        entries.append({"item_id": item_id, "group_id": r.group_id or item_id, "row": r.row, "image": image,
                        "url": redact_url(r.url), "mask_url": redact_url(r.mask_url) if r.mask_url else None,
                        "licence": r.licence, "attribution": r.attribution or redact_url(r.url)})
    return items, entries, skipped


def fetch_urls(list_path: Path, out: Path, segmenter: str | None, executor: Executor, retry_failed: bool = False,
               *, name: str | None = None, download: DownloadConfig | None = None,
               segment: SegmentConfig | None = None, chunk: int = 256,
               max_image_pixels: int = DEFAULT_MAX_PIXELS) -> Path:
    """Materialise a URL list under ``out/raw/urls/<name>/`` and return that root (to ingest as ``urls``).

    Rows without ``mask_url`` need ``segmenter`` (a hub id or folder). Reruns fetch
    nothing already ``ok``/``cached``; ``retry_failed`` retries failed rows. Raises
    :class:`DownloadError` when a task failed as a whole (rerun to retry it).
    """
    t0 = time.perf_counter()
    rows = read_url_list(list_path)
    name = name or Path(list_path).stem
    root = Path(out) / "raw" / "urls" / name
    (root / "images").mkdir(parents=True, exist_ok=True)
    remove_stale_dirs(root / "masks")
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
    info = {"source": "urls", "list": str(list_path), "rows": len(rows), "skipped_rows": dict(skipped),
            "segmenter": segmenter if needs_model else None}
    on = executor.with_resources(GPU_TASK) if job.segmenter else executor  # the segmenter runs on a GPU if any
    run_items(items, root, job, on, chunk, retry_failed=retry_failed, label=f"urls {name}", info=info,
              started=t0)
    return root


def _list_path(request: Request) -> Path:
    path = request.option("url_list")
    if path is None:
        raise UsageError("urls needs --list FILE.parquet|csv (columns url, optional mask_url, group_id, licence, "
                         "attribution)")
    return Path(path)


def _check(request: Request) -> None:
    read_url_list(_list_path(request))


def _materialise(request: Request, executor: Executor) -> Path:
    return fetch_urls(_list_path(request), request.out, request.option("segmenter"), executor,
                      bool(request.option("retry_failed")))


SOURCE = SourceDef(
    name="urls", kind="image", reader=UrlsSource,
    licence="Your own URL list: the licences of the images you listed (the list's licence column)",
    attribution="the list's attribution column, else the image's URL",
    layout="a `.parquet` or `.csv` list (`--list`): `url`, optional `mask_url`, `group_id`, `licence`, "
           "`attribution`; fetched to `DATA/raw/urls/<name>/`",
    ingest={"min_frames_per_instance": 1},
    materialise=Materialise(run=_materialise, check=_check, options=(
        Option(("--list",), "a .parquet or .csv with columns url, optional mask_url, group_id, licence, attribution",
               type=Path, dest="url_list"),
        SEGMENTER, RETRY_FAILED)))
