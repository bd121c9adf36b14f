"""Pixabay: search the API, download the images, segment them, under ``DATA/raw/pixabay/``.

The API (https://pixabay.com/api/docs/) needs a key (``PIXABAY_API_KEY``), allows 100
requests per 60 s per key, returns at most 500 hits per query (``per_page`` 3–200),
and asks that responses be cached for 24 hours and that nobody mass-downloads
systematically. Images are under the Pixabay Content License (not CC0). The image
URLs in a response expire: we store each image's ``id`` and ``pageURL``, never the
URLs, and download the images at once.

Layout written (then read by :class:`PixabaySource`; ``SOURCE`` ties both to ``imprint ingest pixabay``)::

    DATA/raw/pixabay/
      meta.jsonl                 one line per image: id, pageURL, tags, user, user_id, size, licence, query
      images/<id>.jpg            largeImageURL (<= 1280 px; .png when served as PNG)
      masks/<id>/<k>.png         1-bit full-image object masks from --segmenter
      masks/<id>/objects.json    label, score, area per object; drops by reason
      api-cache/<sha256>.json    API responses, kept 24 h (file names hash the query without the key)
      status/                    the status ledger (one row per image)
      report.json                the last fetch: counts by status, drops, failures, seconds
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from imprint.errors import ImprintError, UsageError
from imprint.executor import GPU_TASK, Executor
from imprint.ingest.download import (DEFAULT_USER_AGENT, DownloadConfig, backoff_delay, parse_retry_after,
                                     redact_url, scrub)
from imprint.ingest.images import (DEFAULT_SEGMENTER, SEGMENTER, ImageItem, ImageJob, MaterialisedImages, url_ext,
                                   write_jsonl_atomic)
from imprint.ingest.ledger import RETRY_FAILED, run_items
from imprint.ingest.segment import SegmentConfig, SegmenterError, check_segmenter
from imprint.ingest.sources import Materialise, Option, Request, SourceDef
from imprint.io import remove_stale_dirs, write_json_atomic
from imprint.media import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)

PIXABAY_API = "https://pixabay.com/api/"
API_KEY_ENV = "PIXABAY_API_KEY"
CATEGORIES = ("backgrounds", "fashion", "nature", "science", "education", "feelings", "health", "people",
              "religion", "places", "animals", "industry", "computer", "food", "sports", "transportation",
              "travel", "buildings", "business", "music")
IMAGE_TYPES = ("all", "photo", "illustration", "vector")
MAX_HITS = 500  # "By default, the API is limited to return a maximum of 500 images per query"
MIN_PER_PAGE, MAX_PER_PAGE = 3, 200
CACHE_TTL = 24 * 3600.0  # "requests must be cached for 24 hours"
LICENCE = ("Pixabay Content License (https://pixabay.com/service/license-summary/), not CC0: credit Pixabay "
           "and the user; no sale of unaltered copies; no systematic mass downloads")
META_FILE = "meta.jsonl"
KEEP_FIELDS = ("id", "pageURL", "type", "tags", "user", "user_id", "imageWidth", "imageHeight", "imageSize",
               "views", "downloads", "likes")


class PixabayError(ImprintError, RuntimeError):
    """The Pixabay API refused or failed; the message says what to do."""


class PageOutOfRange(PixabayError):
    """HTTP 400 for a page past the results (past the 500-hit cap)."""


class TokenBucket:
    """At most ``rate`` requests per ``per`` seconds, smoothly; :meth:`block_for` empties it for a while."""

    def __init__(self, rate: int = 100, per: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate < 1 or per <= 0:
            raise ValueError("a token bucket needs rate >= 1 and per > 0")
        self.rate, self.per = rate, per
        self._clock, self._sleep = clock, sleep
        self._tokens = float(rate)
        self._stamp = clock()
        self._blocked_until = -float("inf")
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(float(self.rate), self._tokens + max(0.0, now - self._stamp) * self.rate / self.per)
        self._stamp = max(self._stamp, now)

    def acquire(self) -> float:
        """Take one token, sleeping as needed; returns the seconds waited.

        Time after a sleep is taken as ``before + wait`` (never re-read and compared), so
        a clock with coarse resolution cannot make it spin.
        """
        with self._lock:
            now = self._clock()
            waited = 0.0
            if now < self._blocked_until:
                wait = self._blocked_until - now
                self._sleep(wait)
                waited += wait
                now = self._blocked_until
            self._refill(now)
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return waited
            wait = (1.0 - self._tokens) * self.per / self.rate
            self._sleep(wait)
            self._tokens = 0.0  # the token that accrued during the wait is this request's
            self._stamp = now + wait
            return waited + wait

    def block_for(self, seconds: float) -> None:
        """No request for ``seconds`` (the server said its window is spent), then a fresh bucket."""
        with self._lock:
            now = self._clock()
            self._blocked_until = max(self._blocked_until, now + max(0.0, seconds))
            self._tokens = 0.0
            self._stamp = self._blocked_until


def resolve_api_key(api_key: str | None = None) -> str:
    key = api_key or os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise PixabayError(f"no Pixabay API key: set {API_KEY_ENV} (sign in at https://pixabay.com and copy your key "
                           f"from https://pixabay.com/api/docs/); never commit it or paste it into logs")
    return key


def cache_name(params: dict[str, Any]) -> str:
    """The cache file name of a request: a hash of its parameters without the key."""
    clean = {k: str(v) for k, v in sorted(params.items()) if k != "key"}
    return hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).hexdigest()[:32] + ".json"


class PixabayClient:
    """The Pixabay image search API: paging, the 500-hit cap, rate limits, retries and a 24 h response cache.

    ``clock`` (wall time, for the cache) and ``sleep`` are injectable for tests;
    ``requests`` counts the HTTP requests made.
    """

    def __init__(self, api_key: str | None = None, base_url: str = PIXABAY_API, cache_dir: str | Path | None = None,
                 *, cache_ttl: float = CACHE_TTL, rate: int = 100, per: float = 60.0, retries: int = 4,
                 max_wait: float = 120.0, timeout: float = 20.0, user_agent: str = DEFAULT_USER_AGENT,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None) -> None:
        import httpx

        self.api_key = resolve_api_key(api_key)
        self.base_url = base_url
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.cache_ttl = cache_ttl
        self.retries = retries
        self.max_wait = max_wait
        self._clock, self._sleep = clock, sleep
        self._rng = rng or random.Random()
        self.bucket = TokenBucket(rate, per, clock=clock, sleep=sleep)
        self._httpx = httpx
        self._client = httpx.Client(timeout=httpx.Timeout(timeout), headers={"User-Agent": user_agent})
        self.requests = 0
        self.cache_hits = 0
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "PixabayClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- cache
    def _cache_get(self, params: dict[str, Any]) -> dict | None:
        if self.cache_dir is None:
            return None
        path = self.cache_dir / cache_name(params)
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if self._clock() - float(doc.get("fetched_at", 0)) >= self.cache_ttl:
            return None
        return doc.get("response")

    def _cache_put(self, params: dict[str, Any], url: str, response: dict) -> None:
        if self.cache_dir is None:
            return
        write_json_atomic(self.cache_dir / cache_name(params),
                          {"fetched_at": self._clock(), "request": redact_url(url),
                           "params": {k: v for k, v in params.items() if k != "key"}, "response": response},
                          indent=None)

    # -- requests
    def _note_rate_headers(self, headers: Any) -> None:
        remaining, reset = headers.get("x-ratelimit-remaining"), headers.get("x-ratelimit-reset")
        try:
            if remaining is not None and int(float(remaining)) <= 0:
                self.bucket.block_for(min(float(reset or 60.0), self.max_wait))
        except ValueError:
            pass

    def get(self, params: dict[str, Any]) -> dict:
        """One API response for ``params`` (without the key), from the cache when younger than 24 h."""
        params = {k: v for k, v in params.items() if v is not None}
        cached = self._cache_get(params)
        if cached is not None:
            self.cache_hits += 1
            return cached
        full = {"key": self.api_key, **params}
        attempt = 0
        while True:
            attempt += 1
            self.bucket.acquire()
            self.requests += 1
            try:
                r = self._client.get(self.base_url, params=full)
            except self._httpx.TransportError as exc:
                error, wait = f"{type(exc).__name__}: {scrub(str(exc), self._url(full))}", None
            else:
                self._note_rate_headers(r.headers)
                if r.status_code == 200:
                    try:
                        response = r.json()
                    except ValueError as exc:
                        raise PixabayError(f"Pixabay returned a non-JSON body for {redact_url(str(r.url))}: "
                                           f"{exc}") from None
                    self._cache_put(params, str(r.url), response)
                    return response
                body = scrub(r.text.strip()[:300], str(r.url))
                if r.status_code == 429 or r.status_code >= 500:
                    wait = parse_retry_after(r.headers.get("retry-after"), self._clock())
                    if wait is None and r.status_code == 429:
                        wait = parse_retry_after(r.headers.get("x-ratelimit-reset"), self._clock())
                    if r.status_code == 429:
                        self.bucket.block_for(min(wait if wait is not None else 60.0, self.max_wait))
                    error = f"HTTP {r.status_code}: {body}"
                elif r.status_code == 400 and int(params.get("page", 1)) > 1:
                    raise PageOutOfRange(f"HTTP 400 for page {params.get('page')}: {body}")
                else:
                    hint = (f"; check {API_KEY_ENV}" if "key" in body.lower() else "")
                    raise PixabayError(f"Pixabay refused {redact_url(str(r.url))}: HTTP {r.status_code}: "
                                       f"{body}{hint}")
            if attempt > self.retries:
                raise PixabayError(f"Pixabay API failed after {attempt} attempts: {error}")
            if wait is None:
                wait = backoff_delay(attempt, 1.0, 30.0, self._rng)
            log.warning("[pixabay] %s; retrying in %.1f s", error, min(wait, self.max_wait))
            self._sleep(min(wait, self.max_wait))

    def _url(self, params: dict[str, Any]) -> str:
        import urllib.parse

        return f"{self.base_url}?{urllib.parse.urlencode(params)}"

    def search(self, query: str | None = None, category: str | None = None, limit: int = 100,
               per_page: int | None = None, **params: Any) -> list[dict]:
        """Up to ``limit`` hits (at most 500, the API's cap), paging with ``per_page`` up to 200."""
        if limit < 1:
            raise ValueError("limit must be >= 1")
        if limit > MAX_HITS:
            log.warning("[pixabay] the API returns at most %d hits per query; limit %d -> %d", MAX_HITS, limit,
                        MAX_HITS)
            limit = MAX_HITS
        per_page = per_page or min(MAX_PER_PAGE, max(MIN_PER_PAGE, limit))
        if not MIN_PER_PAGE <= per_page <= MAX_PER_PAGE:
            raise ValueError(f"per_page must be in {MIN_PER_PAGE}..{MAX_PER_PAGE}")
        base = {"q": query or None, "category": category, "per_page": per_page, **params}
        hits: list[dict] = []
        seen: set = set()
        page = 1
        while len(hits) < limit and (page - 1) * per_page < MAX_HITS:
            try:
                resp = self.get({**base, "page": page})
            except PageOutOfRange as exc:
                log.info("[pixabay] stopping at page %d: %s", page, exc)
                break
            page_hits = resp.get("hits") or []
            for hit in page_hits:
                if hit.get("id") not in seen:
                    seen.add(hit.get("id"))
                    hits.append(hit)
            total = min(int(resp.get("totalHits") or 0), MAX_HITS)
            if not page_hits or page * per_page >= total:
                break
            page += 1
        return hits[:limit]


# --------------------------------------------------------------------------------------------- reader


class PixabaySource(MaterialisedImages):
    """Pixabay images as fetched by :func:`fetch_pixabay`: group = image id, one frame, its kept masks.

    Each image is credited to its Pixabay user, with its page.
    """

    index_file = META_FILE
    what = "Pixabay"
    fetch_hint = "fetch it first with `imprint ingest pixabay --query ... --segmenter ... --out DATA`"

    def credit(self, entry: dict[str, Any]) -> tuple[str | None, str | None]:
        user, page = entry.get("user"), entry.get("pageURL")
        text = ", ".join(str(v) for v in (f"{user} on Pixabay" if user else "Pixabay", page) if v)
        return entry.get("licence") or LICENCE, text


# --------------------------------------------------------------------------------------------- fetch


def image_path(hit: dict) -> str:
    """Where a hit's image goes, relative to the root: ``images/<id>.jpg`` (``.png`` when served as PNG)."""
    return f"images/{hit['id']}{url_ext(str(hit.get('largeImageURL') or ''), '.jpg')}"


def meta_entry(hit: dict, query: str | None, category: str | None, now: float) -> dict[str, Any]:
    """What we keep of a hit: ids, the page (a durable reference), tags, user; never the expiring URLs."""
    entry = {k: hit.get(k) for k in KEEP_FIELDS if k in hit}
    entry["tags"] = [t.strip() for t in str(hit.get("tags") or "").split(",") if t.strip()]
    item_id = str(hit["id"])
    entry.update(item_id=item_id, group_id=item_id, image=image_path(hit), licence=LICENCE,
                 query=query, category=category,
                 fetched_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)))
    return entry


def merge_meta(path: Path, entries: Sequence[dict[str, Any]]) -> int:
    """Add ``entries`` to ``meta.jsonl`` (one line per image id, the newest wins); returns the line count."""
    merged: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                e = json.loads(line)
                merged[str(e["item_id"])] = e
    for e in entries:
        merged[e["item_id"]] = e
    write_jsonl_atomic(path, [merged[k] for k in sorted(merged, key=lambda s: (len(s), s))])
    return len(merged)


def check_query(query: str | None, category: str | None, image_type: str = "photo") -> None:
    if category is not None and category not in CATEGORIES:
        raise UsageError(f"--category must be one of {', '.join(CATEGORIES)}, got {category!r}")
    if image_type not in IMAGE_TYPES:
        raise UsageError(f"--image-type must be one of {', '.join(IMAGE_TYPES)}, got {image_type!r}")
    if query is not None and len(query) > 100:
        raise UsageError("--query must be at most 100 characters (a Pixabay API limit)")


def fetch_pixabay(out: Path, query: str | None, category: str | None, limit: int, segmenter: str,
                  executor: Executor, retry_failed: bool = False, base_url: str = PIXABAY_API, *,
                  api_key: str | None = None, image_type: str = "photo", safesearch: bool = True,
                  order: str = "popular", min_width: int = 0, min_height: int = 0,
                  download: DownloadConfig | None = None, segment: SegmentConfig | None = None, chunk: int = 64,
                  max_image_pixels: int = DEFAULT_MAX_PIXELS, client: PixabayClient | None = None) -> Path:
    """Search Pixabay, download ``largeImageURL`` of each hit and segment it; return ``out/raw/pixabay``.

    The root is then ingested as source ``pixabay``. Reruns within 24 h reuse the cached
    API responses; images already ``ok``/``cached`` are never fetched again, failed ones
    only with ``retry_failed``. Raises :class:`PixabayError` (API), :class:`SegmenterError`
    (model) or :class:`DownloadError` (a task failed as a whole: rerun).
    """
    t0 = time.perf_counter()
    check_query(query, category, image_type)
    if not segmenter:
        raise SegmenterError("Pixabay images come without masks: pass --segmenter NAME_OR_PATH "
                             f"(e.g. {DEFAULT_SEGMENTER})")
    if client is None:
        api_key = resolve_api_key(api_key)  # before anything slow: the most common mistake
    segment = segment or SegmentConfig()
    check_segmenter(segmenter, segment)
    root = Path(out) / "raw" / "pixabay"
    (root / "images").mkdir(parents=True, exist_ok=True)
    remove_stale_dirs(root / "masks")
    own = client is None
    client = client or PixabayClient(api_key, base_url, root / "api-cache")
    try:
        hits = client.search(query, category, limit, image_type=image_type,
                             safesearch="true" if safesearch else "false", order=order,
                             min_width=min_width or None, min_height=min_height or None)
    finally:
        if own:
            client.close()
    log.info("[pixabay] %d hits for query=%r category=%r (%d API requests, %d from the 24 h cache)", len(hits),
             query, category, client.requests, client.cache_hits)
    now = time.time()
    usable = [h for h in hits if h.get("id") is not None and h.get("largeImageURL")]
    merge_meta(root / META_FILE, [meta_entry(h, query, category, now) for h in usable])
    items = [ImageItem(str(h["id"]), h["largeImageURL"], str(root / image_path(h))) for h in usable]
    job = ImageJob(str(root), download or DownloadConfig(), segmenter, segment, max_image_pixels, source="pixabay")
    info = {"source": "pixabay", "query": query, "category": category, "limit": limit, "hits": len(hits),
            "hits_without_image_url": len(hits) - len(usable), "api_requests": client.requests,
            "api_cache_hits": client.cache_hits, "segmenter": segmenter, "licence": LICENCE}
    on = executor.with_resources(GPU_TASK)  # the segmenter runs on a GPU where the cluster has one
    run_items(items, root, job, on, chunk, retry_failed=retry_failed, label="pixabay", info=info, started=t0)
    return root


def _check(request: Request) -> None:
    check_query(request.option("query"), request.option("category"))
    resolve_api_key()


def _materialise(request: Request, executor: Executor) -> Path:
    return fetch_pixabay(request.out, request.option("query"), request.option("category"), request.limit or 100,
                         request.option("segmenter") or DEFAULT_SEGMENTER, executor,
                         bool(request.option("retry_failed")), request.option("pixabay_url") or PIXABAY_API)


SOURCE = SourceDef(
    name="pixabay", kind="image", reader=PixabaySource,
    licence=LICENCE,
    attribution="each image's Pixabay user and page (https://pixabay.com)",
    layout="searched through the Pixabay API (`PIXABAY_API_KEY`), downloaded and segmented: "
           "`DATA/raw/pixabay/meta.jsonl`, `images/<id>.jpg`, `masks/<id>/`",
    ingest={"min_frames_per_instance": 1},
    limit_groups=False,
    materialise=Materialise(run=_materialise, check=_check, options=(
        Option(("--query",), "search terms"),
        Option(("--category",), "category (animals, food, ...)"),
        Option(("--pixabay-url",), "API base URL (default: the real API)"),
        SEGMENTER, RETRY_FAILED)))
