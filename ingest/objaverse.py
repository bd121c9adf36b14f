"""Objaverse 1.0: select objects, download their GLBs, render each to an orbit of views, then read them.

"Materialise, then ingest". :func:`fetch_objaverse` turns the remote collection into
local files under ``DATA/raw/objaverse/``; :class:`ObjaverseSource` reads them as a
multi-view source through the ordinary ``run_ingest`` (stage 1). ``SOURCE`` (the end of
this module) ties both to ``imprint ingest objaverse``.

Layout written (documented in ``docs/sources-objaverse-sav.md``)::

    DATA/raw/objaverse/
      cache/                       the objaverse package's folder (objaverse._VERSIONED_PATH)
        object-paths.json.gz  metadata/000-NNN.json.gz  lvis-annotations.json.gz
        glbs/<000-NNN>/<uid>.glb   downloaded GLBs (the remote's paths)
      renders/<uid>/000.png ...    RGBA views in orbit order (alpha = the object, black elsewhere)
      renders/<uid>/meta.json      licence, attribution, LVIS category, cameras
      render.json                  the render settings the renders were made with (others are refused)
      status/                      the status ledger (imprint.ingest.ledger), one row per object
      report.json                  selection counts, statuses, failures, seconds

Selection: explicit ``uids``, else the objects of ``lvis_categories``, else every uid;
then only objects whose ``license`` is in ``licences`` (Sketchfab slugs, default
``by``, ``by-sa``, ``cc0``) and that are not age-restricted; ``limit`` keeps the first
N that pass, in (metadata shard, uid) order. The uids, annotations and LVIS lists come
through the ``objaverse`` package, pointed at ``base_url`` (``--objaverse-url`` /
``IMPRINT_OBJAVERSE_URL``; a mirror, a local folder or a test server) by a urllib
opener that rewrites its hard-coded Hugging Face prefix, with its cache under
``DATA/raw/objaverse/cache``.

Per object: download the GLB with the shared :class:`~imprint.ingest.download.Fetcher`
(retries, per-host limit, atomic ``.part`` + rename; ``failed_download``, ``too_large``),
check the sha256 the server advertises (``X-Linked-Etag`` on Hugging Face:
``bad_checksum``), check it is a GLB (``failed_decode``), render ``views`` views
(``failed_render``) into a folder that appears whole (:func:`imprint.io.atomic_dir`).
The ledger makes a rerun skip finished chunks and ``ok``/``cached`` objects, and failed
ones unless ``retry_failed``; a GLB already in the cache is never downloaded again.
Every record of an object carries the object's own licence and its author's credit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
import traceback
import urllib.error
import urllib.request
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from imprint import __version__
from imprint.errors import ImprintError, UsageError
from imprint.executor import Executor
from imprint.ingest.base import Frame, Group, InstanceMasks, LayoutError, Source, sorted_frames
from imprint.geometry import resize_labels
from imprint.ingest.config import IngestConfig
from imprint.ingest.download import DownloadConfig, Fetcher, ItemStatus, http_client
from imprint.ingest.ledger import RETRY_FAILED, STATUS_DIR, run_items
from imprint.ingest.render import (DecodeError, RenderConfig, RendererUnavailable, check_glb, check_renderer,
                                   render_views)
from imprint.ingest.sources import Materialise, Option, Request, SourceDef
from imprint.io import atomic_dir, is_temporary_dir, remove_stale_dirs, sha256_file, write_json_atomic
from imprint.media import read_label_map

log = logging.getLogger(__name__)

HF_PREFIX = "https://huggingface.co/datasets/allenai/objaverse/resolve/main/"
URL_ENV = "IMPRINT_OBJAVERSE_URL"
DEFAULT_LICENCES = frozenset({"by", "by-sa", "cc0"})
#: Sketchfab licence slugs (``by`` verified; the others as Sketchfab names them).
LICENCE_NAMES = {
    "by": "CC BY 4.0", "by-sa": "CC BY-SA 4.0", "by-nd": "CC BY-ND 4.0", "by-nc": "CC BY-NC 4.0",
    "by-nc-sa": "CC BY-NC-SA 4.0", "by-nc-nd": "CC BY-NC-ND 4.0", "cc0": "CC0 1.0",
}
UID_RE = re.compile(r"^[0-9a-f]{32}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class ObjaverseError(ImprintError, RuntimeError):
    """The fetch job cannot run (bad arguments, unreachable index, renderer missing); says what to do."""


# ---------------------------------------------------------------------------------------------- HTTP


class AdvertisedSha256:
    """An httpx response hook keeping the sha256 a server advertises for a URL, from any hop of its redirects.

    Hugging Face answers a GLB with a 302 whose ``X-Linked-Etag`` is the file's sha256
    (the CDN's 200 has another ETag); ``X-Checksum-Sha256`` or a 64-hex ``ETag`` count too.
    Keyed by the URL first requested; thread-safe (one dict write per response).
    """

    def __init__(self) -> None:
        self.by_url: dict[str, str] = {}

    def __call__(self, response: Any) -> None:
        sha = _advertised_sha256(response.headers)
        if sha is not None:
            first = response.history[0].request.url if getattr(response, "history", None) else response.request.url
            self.by_url.setdefault(str(first), sha)
            self.by_url.setdefault(str(response.request.url), sha)

    def pop(self, url: str) -> str | None:
        return self.by_url.pop(url, None)


def _advertised_sha256(headers: Any) -> str | None:
    for key in ("X-Linked-Etag", "X-Checksum-Sha256", "ETag"):
        value = (headers.get(key) or "").strip()
        value = value[2:] if value.startswith("W/") else value
        value = value.strip('"').lower()
        if _SHA256_RE.match(value):
            return value
    return None


def resolve_base_url(base_url: str | None) -> str:
    """``base_url``, else ``$IMPRINT_OBJAVERSE_URL``, else Hugging Face; a local folder becomes a file:// URL."""
    url = base_url or os.environ.get(URL_ENV) or HF_PREFIX
    if "://" not in url:
        path = Path(url).expanduser()
        if not path.is_dir():
            raise ObjaverseError(f"--objaverse-url {url!r} is neither a URL nor an existing folder")
        url = path.resolve().as_uri()
    return url if url.endswith("/") else url + "/"


class _PrefixRewriter(urllib.request.OpenerDirector):
    """An opener that sends the objaverse package's hard-coded Hugging Face URLs to ``base_url``."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self._inner = urllib.request.build_opener()
        self._base = base_url

    def open(self, fullurl, data=None, timeout=socket._GLOBAL_DEFAULT_TIMEOUT):  # noqa: ANN001 - the base's
        if isinstance(fullurl, str) and fullurl.startswith(HF_PREFIX):
            fullurl = self._base + fullurl[len(HF_PREFIX):]
        return self._inner.open(fullurl, data, timeout)


@contextlib.contextmanager
def objaverse_api(base_url: str, cache_dir: Path) -> Iterator[Any]:
    """The ``objaverse`` module with its downloads sent to ``base_url`` and cached in ``cache_dir``.

    Sets ``objaverse._VERSIONED_PATH`` and installs a prefix-rewriting urllib opener
    for the duration (both restored after): the package itself has no such options.
    """
    import objaverse

    saved_path = objaverse._VERSIONED_PATH
    saved_opener = urllib.request._opener  # type: ignore[attr-defined]
    objaverse._VERSIONED_PATH = str(cache_dir)
    if base_url != HF_PREFIX:
        urllib.request.install_opener(_PrefixRewriter(base_url))
    try:
        yield objaverse
    finally:
        objaverse._VERSIONED_PATH = saved_path
        urllib.request._opener = saved_opener  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- selection


@dataclass
class Selection:
    """The objects chosen and why the others were not."""

    objects: list[tuple[str, str, dict[str, Any], str | None]] = field(default_factory=list)  # uid, path, ann, lvis
    counts: Counter[str] = field(default_factory=Counter)


def _lvis_by_uid(lvis: dict[str, list[str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for category in sorted(lvis):
        for uid in lvis[category]:
            out.setdefault(uid, category)
    return out


def _attribution(ann: dict) -> dict[str, Any]:
    user = ann.get("user") or {}
    return {"author": user.get("username"), "author_name": user.get("displayName"),
            "author_url": user.get("profileUrl"), "url": ann.get("viewerUrl"), "name": ann.get("name")}


_CORRUPT = (EOFError, OSError, zlib.error, json.JSONDecodeError, UnicodeDecodeError)


def _cached_call(api: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """Call an ``objaverse`` loader; if its cached file is corrupt (a torn download), delete the cache and retry once.

    The package downloads straight to the final path, so a killed download leaves a
    truncated ``.json.gz`` that it would then fail to read forever.
    """
    try:
        return fn(*args)
    except urllib.error.URLError:
        raise
    except _CORRUPT as exc:
        cache = Path(api._VERSIONED_PATH)
        for name in ("object-paths.json.gz", "lvis-annotations.json.gz"):
            (cache / name).unlink(missing_ok=True)
        shutil.rmtree(cache / "metadata", ignore_errors=True)
        log.warning("[objaverse] cached index unreadable (%s: %s); fetching it again", type(exc).__name__, exc)
        return fn(*args)


def select_objects(api: Any, uids: list[str] | None, lvis_categories: list[str] | None, limit: int | None,
                   licences: frozenset[str], include_age_restricted: bool) -> Selection:
    """Choose the objects (see the module doc), loading only the metadata shards it needs."""
    sel = Selection()
    paths: dict[str, str] = _cached_call(api, api._load_object_paths)
    try:
        lvis = _cached_call(api, api.load_lvis_annotations)
        lvis_uid = _lvis_by_uid(lvis)
    except (urllib.error.URLError, OSError) as exc:
        if lvis_categories:
            raise ObjaverseError(f"lvis-annotations.json.gz cannot be loaded ({exc}); it is needed for "
                                 f"--lvis-categories") from None
        log.warning("[objaverse] no LVIS categories (%s); records will have no category", exc)
        lvis, lvis_uid = {}, {}
        sel.counts["lvis_unavailable"] = 1
    if uids is not None:
        wanted = list(dict.fromkeys(u[:-4] if u.endswith(".glb") else u for u in uids))
    elif lvis_categories is not None:
        unknown = sorted(set(lvis_categories) - set(lvis))
        if unknown:
            raise ObjaverseError(f"unknown LVIS categories: {', '.join(unknown[:10])}; see "
                                 f"lvis-annotations.json.gz for the names")
        wanted = sorted({u for c in lvis_categories for u in lvis[c]})
    else:
        wanted = sorted(paths)
    sel.counts["requested"] = len(wanted)
    by_shard: dict[str, list[str]] = {}
    for uid in wanted:
        if uid not in paths:
            sel.counts["unknown_uid"] += 1
            continue
        by_shard.setdefault(paths[uid].split("/")[1], []).append(uid)
    for shard in sorted(by_shard):
        shard_uids = sorted(by_shard[shard])
        annotations = _cached_call(api, api.load_annotations, shard_uids)
        for uid in shard_uids:
            if limit is not None and len(sel.objects) >= limit:
                return sel
            ann = annotations.get(uid)
            if ann is None:
                sel.counts["no_annotation"] += 1
            elif ann.get("license") not in licences:
                sel.counts[f"licence_{ann.get('license')}"] += 1
            elif ann.get("isAgeRestricted") and not include_age_restricted:
                sel.counts["age_restricted"] += 1
            else:
                sel.objects.append((uid, paths[uid], ann, lvis_uid.get(uid)))
    return sel


# ---------------------------------------------------------------------------------------------- one object


@dataclass(frozen=True)
class ObjectItem:
    """One object to materialise: its GLB's URL and local path, where its views go, what to record."""

    item_id: str  # the uid
    url: str
    dest: str  # the GLB, in the objaverse package's cache layout
    render_dir: str
    info: dict[str, Any]
    seed: int


def _object_seed(seed: int, uid: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{uid}".encode()).digest()[:8], "little")


def credit(attribution: dict[str, Any]) -> str:
    """An object's credit line: ``"name" by author (profile), page``, from :func:`_attribution`'s fields."""
    name = attribution.get("name")
    author = attribution.get("author_name") or attribution.get("author") or "an unknown author"
    text = f'"{name}" by {author}' if name else f"by {author}"
    if attribution.get("author_url"):
        text += f" ({attribution['author_url']})"
    if attribution.get("url"):
        text += f", {attribution['url']}"
    return text


@dataclass(frozen=True)
class ObjaverseJob:
    """The batch step (for :func:`~imprint.ingest.ledger.run_items`): fetch a chunk's GLBs concurrently,
    then render each.

    Picklable (a frozen dataclass) for Ray. Per object: the download status from
    :class:`Fetcher` (``ok`` fetched now, ``cached`` already here, ``failed_download``,
    ``too_large``), ``bad_checksum`` when the bytes do not match the sha256 the server
    advertised, ``failed_decode`` for a file that is not a GLB (deleted, so a retry fetches
    it again), ``failed_render`` when it cannot be rendered (the GLB is kept). A missing
    renderer raises: the task fails as a whole and its objects stay unattempted.
    """

    render: RenderConfig
    download: DownloadConfig
    keep_glb: bool = True

    def __call__(self, items: Sequence[ObjectItem]) -> list[ItemStatus]:
        hook = AdvertisedSha256()
        client = http_client(self.download, event_hooks={"response": [hook]})
        try:
            with Fetcher(self.download, client=client) as fetcher:
                statuses = fetcher.fetch_many([(it.item_id, it.url, it.dest, None) for it in items])
        finally:
            client.close()
        for it, st in zip(items, statuses):
            if st.ok:
                self._materialise(it, st, hook.pop(it.url) if st.status == "ok" else None)
            st.updated = time.time()
        return statuses

    def _materialise(self, item: ObjectItem, st: ItemStatus, advertised: str | None) -> None:
        glb = Path(item.dest)
        if advertised is not None:
            sha = sha256_file(glb)
            if sha != advertised:
                glb.unlink(missing_ok=True)
                st.status, st.error = "bad_checksum", f"sha256 {sha} but the server advertised {advertised}"
                return
        try:
            check_glb(glb)
            views = render_views(glb, self.render, np.random.default_rng(item.seed))
        except RendererUnavailable:
            raise  # the machine's problem, not the object's: fail the task, keep the objects unattempted
        except DecodeError as exc:
            glb.unlink(missing_ok=True)  # a bad file is not worth keeping: retry_failed fetches it again
            st.status, st.error = "failed_decode", str(exc)
            return
        except Exception as exc:  # noqa: BLE001 - trimesh / pyrender fail in many ways on odd files
            st.status, st.error = "failed_render", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            return
        write_views(Path(item.render_dir), views, {"uid": item.item_id, **item.info,
                                                   "glb_sha256": advertised or sha256_file(glb),
                                                   "render": self.render.to_dict(), "seed": item.seed})
        if not self.keep_glb:
            glb.unlink(missing_ok=True)
        st.path = item.render_dir
        st.extra = {"objects": 1, "views": len(views)}


def write_views(render_dir: Path, views: list[tuple[np.ndarray, dict[str, Any]]], meta: dict[str, Any]) -> None:
    """Write ``000.png …`` (RGBA) and ``meta.json`` into a folder that appears whole."""
    from PIL import Image

    with atomic_dir(render_dir) as tmp:
        names = []
        for k, (rgba, _cam) in enumerate(views):
            names.append(f"{k:03d}.png")
            Image.fromarray(rgba, "RGBA").save(tmp / names[-1], compress_level=4)
        meta = {**meta, "views": names, "cameras": [cam for _, cam in views], "imprint_version": __version__}
        write_json_atomic(tmp / "meta.json", meta)


# ---------------------------------------------------------------------------------------------- the job


RENDER_SETTINGS = "render.json"


def _check_render_settings(root: Path, render: RenderConfig, overwrite: bool) -> None:
    """Pin the render settings of ``root/renders``; refuse other settings unless ``overwrite``."""
    path = root / RENDER_SETTINGS
    want = json.loads(json.dumps(render.to_dict()))  # tuples -> lists, as stored
    if path.is_file() and not overwrite:
        have = json.loads(path.read_text())
        if have != want:
            diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
            raise ObjaverseError(f"{root / 'renders'} was rendered with other settings {diff} (old, new); pass "
                                 f"--overwrite to render again (the GLBs are kept), or choose another --out")
    if overwrite:
        shutil.rmtree(root / "renders", ignore_errors=True)
        shutil.rmtree(root / STATUS_DIR, ignore_errors=True)
    (root / "renders").mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, want)


def check_arguments(uids: list[str] | None, licences: frozenset[str], limit: int | None) -> None:
    """Refuse bad selection arguments (:class:`ObjaverseError`) before anything starts."""
    if limit is not None and limit < 0:
        raise ObjaverseError("--limit must be >= 0")
    unknown_lic = sorted(licences - set(LICENCE_NAMES))
    if unknown_lic:
        raise ObjaverseError(f"unknown licence slug(s) {', '.join(unknown_lic)}; choose from "
                             f"{', '.join(sorted(LICENCE_NAMES))}")
    if uids is not None:
        bad = [u for u in uids if not UID_RE.match(u[:-4] if u.endswith(".glb") else u)]
        if bad:
            raise ObjaverseError(f"not Objaverse uids (32 lowercase hex): {', '.join(bad[:5])}")


def fetch_objaverse(out: Path, uids: list[str] | None = None, lvis_categories: list[str] | None = None,
                    limit: int | None = None, views: int = 12, base_url: str | None = None,
                    licences: set[str] | frozenset[str] = DEFAULT_LICENCES, executor: Executor | None = None,
                    retry_failed: bool = False, render_cfg: RenderConfig | None = None, *, seed: int = 0,
                    keep_glb: bool = True, include_age_restricted: bool = False,
                    download: DownloadConfig | None = None, chunk: int = 32, overwrite: bool = False) -> Path:
    """Materialise Objaverse objects as rendered views under ``out/raw/objaverse``; returns that folder.

    ``out`` is DATA; pass the returned folder as ``--root`` of ``imprint ingest
    objaverse``. ``views`` overrides ``render_cfg.views``. Bad objects are statuses in
    the ledger and ``report.json``, never raised. Raises :class:`ObjaverseError` when
    the job cannot run (bad arguments, index unreachable, renderer missing, renders made
    with other settings) and :class:`DownloadError` when tasks failed as a whole (rerun).
    """
    from imprint.executor import LocalExecutor

    t0 = time.perf_counter()
    licences = frozenset(licences)
    check_arguments(uids, licences, limit)
    render_cfg = replace(render_cfg or RenderConfig(), views=views)
    download = download or DownloadConfig(concurrency=4, per_host=4, max_bytes=512 * 2**20, timeout=60.0)
    executor = executor or LocalExecutor()
    try:
        check_renderer(render_cfg)
    except RendererUnavailable as exc:
        raise ObjaverseError(str(exc)) from None
    url = resolve_base_url(base_url)
    root = Path(out) / "raw" / "objaverse"
    cache = root / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    _check_render_settings(root, render_cfg, overwrite)
    remove_stale_dirs(root / "renders")
    try:
        with objaverse_api(url, cache) as api:
            sel = select_objects(api, uids, lvis_categories, limit, licences, include_age_restricted)
    except urllib.error.URLError as exc:
        raise ObjaverseError(f"cannot load the Objaverse index from {url} ({exc}); check --objaverse-url / "
                             f"${URL_ENV} and the network") from None
    items = []
    for uid, rel, ann, category in sel.objects:
        slug = str(ann["license"])  # selected: one of ``licences``
        info = {"licence": slug, "licence_name": LICENCE_NAMES.get(slug, slug), "attribution": _attribution(ann),
                "category": category, "source_url": url + rel}
        items.append(ObjectItem(uid, url + rel, str(cache / rel), str(root / "renders" / uid), info,
                                _object_seed(seed, uid)))
    log.info("[objaverse] %d objects selected (%s)", len(items), dict(sel.counts))
    about = {"source": "objaverse", "base_url": url, "version": __version__, "selection": dict(sel.counts),
             "selected": len(items), "licences": sorted(licences), "render": render_cfg.to_dict()}
    report = run_items(items, root, ObjaverseJob(render_cfg, download, keep_glb), executor, chunk,
                       retry_failed=retry_failed, label="objaverse", info=about, started=t0)
    log.info("[objaverse] %d of %d objects rendered; report: %s", report["objects"], len(items), root / "report.json")
    return root


# ---------------------------------------------------------------------------------------------- the reader


def _renders_dir(root: Path) -> Path:
    if (root / "renders").is_dir():
        return root / "renders"
    if any(root.glob("*/meta.json")):
        return root
    raise LayoutError(f"{root} is not a materialised Objaverse folder: expected renders/<uid>/000.png ... + "
                      f"meta.json (made by `imprint ingest objaverse`)")


class ObjaverseSource(Source):
    """Reads ``renders/<uid>/<000>.png`` + ``meta.json``: group = uid, one instance ``1`` (the object).

    Frames are the views sorted by number (the orbit order); the mask is the alpha
    channel > ``mask_threshold``; the category is the object's LVIS category where known;
    the licence and attribution are the object's own (from its ``meta.json``).
    """

    def discover(self, root: Path, cfg: IngestConfig) -> list[Group]:
        renders = _renders_dir(Path(root))
        groups = []
        for obj_dir in sorted(p for p in renders.iterdir() if p.is_dir() and not is_temporary_dir(p)):
            meta_file = obj_dir / "meta.json"
            if not meta_file.is_file():
                continue
            try:
                meta = json.loads(meta_file.read_text())
            except json.JSONDecodeError:
                meta = {}
            category = meta.get("category")
            frames = [Frame(name=p.stem, image=str(p), annotation=str(p), expected=(("1", category),))
                      for p in obj_dir.glob("*.png") if p.stem.isdigit()]
            attribution = meta.get("attribution")
            groups.append(Group(group_id=obj_dir.name, frames=sorted_frames(frames), missing_reason="missing_file",
                                licence=meta.get("licence_name") or meta.get("licence"),
                                attribution=credit(attribution) if isinstance(attribution, dict) else None))
        if not groups:
            raise LayoutError(f"{renders} holds no rendered object (renders/<uid>/meta.json); run "
                              f"`imprint ingest objaverse` without --root first")
        return groups

    def instances(self, frame: Frame, size: tuple[int, int], cfg: IngestConfig) -> InstanceMasks:
        alpha = read_label_map(frame.annotation_file, cfg.max_image_pixels)  # RGBA -> its alpha channel
        mask = resize_labels((alpha > cfg.mask_threshold).astype(np.uint8), size).astype(bool)
        return {"1": (mask, (frame.expected or (("1", None),))[0][1])}


# ---------------------------------------------------------------------------------------------- the source


def _request_uids(request: Request) -> list[str] | None:
    path = request.option("uids")
    if path is None:
        return None
    if not Path(path).is_file():
        raise UsageError(f"--uids {path} does not exist (a file of Objaverse uids, one per line)")
    return [u.strip() for u in Path(path).read_text().split() if u.strip()]


def _request_licences(request: Request) -> frozenset[str]:
    return frozenset(str(request.option("licences") or ",".join(sorted(DEFAULT_LICENCES))).split(","))


def _check(request: Request) -> None:
    check_arguments(_request_uids(request), _request_licences(request), request.limit)


def _materialise(request: Request, executor: Executor) -> Path:
    views = int(request.option("views") or 12)
    cats = request.option("lvis_categories")
    return fetch_objaverse(request.out, _request_uids(request), cats.split(",") if cats else None, request.limit,
                           views, request.option("objaverse_url"), _request_licences(request), executor,
                           bool(request.option("retry_failed")),
                           RenderConfig(views=views, size=int(request.option("render_size") or 256)),
                           seed=request.seed, overwrite=bool(request.option("overwrite")))


SOURCE = SourceDef(
    name="objaverse", kind="multiview", reader=ObjaverseSource,
    licence="Objaverse: ODC-By for the collection; each object keeps its own Creative Commons licence",
    attribution="Objaverse 1.0 (Deitke et al., CVPR 2023), https://objaverse.allenai.org; each object credits "
                "its Sketchfab author",
    layout="fetched from Hugging Face `allenai/objaverse` and rendered: `DATA/raw/objaverse/renders/<uid>/"
           "<000>.png` (RGBA views) + `meta.json` (licence, author)",
    limit_groups=False,
    materialise=Materialise(run=_materialise, check=_check, options=(
        Option(("--uids",), "a file of uids, one per line", type=Path),
        Option(("--lvis-categories",), "comma-separated LVIS categories"),
        Option(("--views",), "views rendered on the orbit", type=int, default=12),
        Option(("--render-size",), "view size in pixels", type=int, default=256),
        Option(("--objaverse-url",), "base URL or folder of a mirror (default: $IMPRINT_OBJAVERSE_URL, then HF)"),
        Option(("--licences",), "licences kept (Sketchfab slugs)", default="by,by-sa,cc0"),
        RETRY_FAILED)))
