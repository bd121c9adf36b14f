"""Objaverse 1.0: select objects, download their GLBs, render each to an orbit of views, then read them.

"Materialise, then ingest". :func:`fetch_objaverse` turns the remote collection into
local files under ``DATA/raw/objaverse/``; :class:`ObjaverseSource` (``objaverse``)
reads them as a multi-view source through the ordinary ``run_ingest`` (stage 1).

Layout written (documented in ``docs/sources-objaverse-sav.md``)::

    DATA/raw/objaverse/
      cache/                       the objaverse package's folder (objaverse._VERSIONED_PATH)
        object-paths.json.gz  metadata/000-NNN.json.gz  lvis-annotations.json.gz
        glbs/<000-NNN>/<uid>.glb   downloaded GLBs (the remote's paths)
      renders/<uid>/000.png ...    RGBA views in orbit order (alpha = the object, black elsewhere)
      renders/<uid>/meta.json      licence, attribution, LVIS category, cameras; written last
      render.json                  the render settings the renders were made with (others are refused)
      status/part-NNNNN.parquet    the status ledger (imprint.ingest.download), one row per object
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
(``failed_render``), write them under a temporary folder and rename it. The ledger makes
a rerun skip ``ok``/``cached`` objects (nothing is downloaded twice) and skip failed ones
unless ``retry_failed``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imprint import __version__
from imprint.errors import ImprintError
from imprint.executor import Executor
from imprint.ingest.base import Frame, Group, InstanceMasks, LayoutError, Source, resize_mask, sorted_frames
from imprint.ingest.config import IngestConfig
from imprint.ingest.download import (STATUS_DIR, DownloadConfig, Fetcher, ItemStatus, raise_for_failed_tasks,
                                     run_downloads, sha256_file, write_report)
from imprint.ingest.render import (DecodeError, RenderConfig, RendererUnavailable, check_glb, check_renderer,
                                   render_views)
from imprint.media import read_label_map
from imprint.io import write_json_atomic

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


def _http_client(cfg: DownloadConfig, hook: AdvertisedSha256) -> Any:
    """The client :class:`Fetcher` would make, plus the checksum hook."""
    import httpx

    return httpx.Client(
        timeout=httpx.Timeout(cfg.timeout),
        limits=httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency),
        follow_redirects=True, max_redirects=10,
        headers={"User-Agent": cfg.user_agent, "Accept-Encoding": "identity"},
        event_hooks={"response": [hook]})


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

    def open(self, fullurl, data=None, timeout=socket._GLOBAL_DEFAULT_TIMEOUT):  # type: ignore  # noqa: ANN001
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

    objects: list[tuple[str, str, dict, str | None]] = field(default_factory=list)  # uid, path, annotation, lvis
    counts: Counter = field(default_factory=Counter)


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


def _cached_call(log: Callable[[str], None], api: Any, fn: Callable[..., Any], *args: Any) -> Any:
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
        log(f"[objaverse] cached index unreadable ({type(exc).__name__}: {exc}); fetching it again")
        return fn(*args)


def select_objects(api: Any, uids: list[str] | None, lvis_categories: list[str] | None, limit: int | None,
                   licences: frozenset[str], include_age_restricted: bool, log: Callable[[str], None]) -> Selection:
    """Choose the objects (see the module doc), loading only the metadata shards it needs."""
    sel = Selection()
    paths: dict[str, str] = _cached_call(log, api, api._load_object_paths)
    try:
        lvis = _cached_call(log, api, api.load_lvis_annotations)
        lvis_uid = _lvis_by_uid(lvis)
    except (urllib.error.URLError, OSError) as exc:
        if lvis_categories:
            raise ObjaverseError(f"lvis-annotations.json.gz cannot be loaded ({exc}); it is needed for "
                                 f"--lvis-categories") from None
        log(f"[objaverse] no LVIS categories ({exc}); records will have no category")
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
        annotations = _cached_call(log, api, api.load_annotations, shard_uids)
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
    info: dict
    seed: int


def _object_seed(seed: int, uid: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{uid}".encode()).digest()[:8], "little")


def _render_done(render_dir: Path) -> int:
    """Views of a finished render folder (its meta.json is written last), or 0."""
    try:
        return len(json.loads((render_dir / "meta.json").read_text())["views"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return 0


@dataclass(frozen=True)
class ObjaverseJob:
    """The batch step (for :func:`run_downloads`): fetch a chunk's GLBs concurrently, then render each.

    Picklable (a frozen dataclass) for Ray. Per object: the download status from
    :class:`Fetcher` (``ok`` fetched now, ``cached`` already here, ``failed_download``,
    ``too_large``), ``bad_checksum`` when the bytes do not match the sha256 the server
    advertised, ``failed_decode`` for a file that is not a GLB (deleted, so a retry fetches
    it again), ``failed_render`` when it cannot be rendered (the GLB is kept). An object
    whose views are already written is neither fetched nor rendered again. A missing
    renderer raises: the task fails as a whole and its objects stay unattempted.
    """

    render: RenderConfig
    download: DownloadConfig
    keep_glb: bool = True

    def __call__(self, items: Sequence[ObjectItem]) -> list[ItemStatus]:
        done = {it.item_id: _render_done(Path(it.render_dir)) for it in items}
        to_fetch = [it for it in items if not done[it.item_id]]
        hook = AdvertisedSha256()
        client = _http_client(self.download, hook)
        try:
            with Fetcher(self.download, client=client) as fetcher:
                fetched = fetcher.fetch_many([(it.item_id, it.url, it.dest, None) for it in to_fetch])
        finally:
            client.close()
        by_id = {st.item_id: st for st in fetched}
        out = []
        for it in items:
            if done[it.item_id]:
                st = ItemStatus(it.item_id, it.url, "cached", path=it.render_dir, updated=time.time(),
                                extra={"objects": 1, "views": done[it.item_id], "reused_render": True})
            else:
                st = by_id[it.item_id]
                if st.ok:
                    self._materialise(it, st, hook.pop(it.url) if st.status == "ok" else None)
            st.updated = time.time()
            out.append(st)
        return out

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


def write_views(render_dir: Path, views: list[tuple[np.ndarray, dict]], meta: dict[str, Any]) -> None:
    """Write ``000.png …`` (RGBA) and ``meta.json`` (last) under a temporary folder, then rename it."""
    from PIL import Image

    tmp = render_dir.with_name(f"{render_dir.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names = []
    for k, (rgba, _cam) in enumerate(views):
        names.append(f"{k:03d}.png")
        Image.fromarray(rgba, "RGBA").save(tmp / names[-1], compress_level=4)
    meta = {**meta, "views": names, "cameras": [cam for _, cam in views], "imprint_version": __version__}
    write_json_atomic(tmp / "meta.json", meta)
    if render_dir.exists():
        shutil.rmtree(render_dir)
    os.replace(tmp, render_dir)


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
                                 f"overwrite=True (--overwrite) to render again (the GLBs are kept), or choose "
                                 f"another --out")
    if overwrite:
        shutil.rmtree(root / "renders", ignore_errors=True)
        shutil.rmtree(root / STATUS_DIR, ignore_errors=True)
    (root / "renders").mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, want)


def fetch_objaverse(out: Path, uids: list[str] | None = None, lvis_categories: list[str] | None = None,
                    limit: int | None = None, views: int = 12, base_url: str | None = None,
                    licences: set[str] | frozenset[str] = DEFAULT_LICENCES, executor: Executor | None = None,
                    retry_failed: bool = False, render_cfg: RenderConfig | None = None, *, seed: int = 0,
                    keep_glb: bool = True, include_age_restricted: bool = False,
                    download: DownloadConfig | None = None, chunk: int = 32, overwrite: bool = False,
                    log: Callable[[str], None] | None = None) -> Path:
    """Materialise Objaverse objects as rendered views under ``out/raw/objaverse``; returns that folder.

    ``out`` is DATA; pass the returned folder as ``--root`` of ``imprint ingest
    objaverse``. ``views`` overrides ``render_cfg.views``. Bad objects are statuses in
    the ledger and ``report.json``, never raised. Raises :class:`ObjaverseError` when
    the job cannot run (bad arguments, index unreachable, renderer missing, renders made
    with other settings) and :class:`DownloadError` when tasks failed as a whole (rerun).
    """
    from dataclasses import replace

    from imprint.executor import LocalExecutor

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    if limit is not None and limit < 0:
        raise ObjaverseError("--limit must be >= 0")
    licences = frozenset(licences)
    unknown_lic = sorted(licences - set(LICENCE_NAMES))
    if unknown_lic:
        raise ObjaverseError(f"unknown licence slug(s) {', '.join(unknown_lic)}; choose from "
                             f"{', '.join(sorted(LICENCE_NAMES))}")
    if uids is not None:
        bad = [u for u in uids if not UID_RE.match(u[:-4] if u.endswith(".glb") else u)]
        if bad:
            raise ObjaverseError(f"not Objaverse uids (32 lowercase hex): {', '.join(bad[:5])}")
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
    for stale in (root / "renders").glob("*.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)

    try:
        with objaverse_api(url, cache) as api:
            sel = select_objects(api, uids, lvis_categories, limit, licences, include_age_restricted, log)
    except urllib.error.URLError as exc:
        raise ObjaverseError(f"cannot load the Objaverse index from {url} ({exc}); check --objaverse-url / "
                             f"${URL_ENV} and the network") from None
    items = []
    for uid, rel, ann, category in sel.objects:
        slug = ann.get("license")
        info = {"licence": slug, "licence_name": LICENCE_NAMES.get(slug, slug), "attribution": _attribution(ann),
                "category": category, "source_url": url + rel}
        items.append(ObjectItem(uid, url + rel, str(cache / rel), str(root / "renders" / uid), info,
                                _object_seed(seed, uid)))
    log(f"[objaverse] {len(items)} objects selected ({dict(sel.counts)})")
    job = ObjaverseJob(render_cfg, download, keep_glb)
    report = run_downloads(items, root, job, executor, chunk, retry_failed=retry_failed, label="objaverse", log=log)
    report = {"source": "objaverse", "base_url": url, "version": __version__, "selection": dict(sel.counts),
              "selected": len(items), "licences": sorted(licences), "render": render_cfg.to_dict(), **report,
              "seconds": round(time.perf_counter() - t0, 3)}
    write_report(root / "report.json", report)
    log(f"[objaverse] {report['objects']} of {len(items)} objects rendered; report: {root / 'report.json'}")
    raise_for_failed_tasks(report, root / "report.json")
    return root


# ---------------------------------------------------------------------------------------------- the reader


def _renders_dir(root: Path) -> Path:
    if (root / "renders").is_dir():
        return root / "renders"
    if any(root.glob("*/meta.json")):
        return root
    raise LayoutError(f"{root} is not a materialised Objaverse folder: expected renders/<uid>/000.png ... + "
                      f"meta.json (made by fetch_objaverse / `imprint fetch objaverse`)")


class ObjaverseSource(Source):
    """Reads ``renders/<uid>/<000>.png`` + ``meta.json``: group = uid, one instance ``1`` (the object).

    Frames are the views sorted by number (the orbit order); the mask is the alpha
    channel > ``mask_threshold``; the category is the object's LVIS category where known.
    """

    name = "objaverse"
    licence = "Objaverse: ODC-By collection; each object its own CC licence (meta.json: licence, attribution)"

    def discover(self, root: Path, cfg: IngestConfig) -> list[Group]:
        renders = _renders_dir(Path(root))
        groups = []
        for obj_dir in sorted(p for p in renders.iterdir() if p.is_dir() and ".tmp-" not in p.name):
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
            groups.append(Group(group_id=obj_dir.name, frames=sorted_frames(frames), missing_reason="missing_file",
                                info={"licence": meta.get("licence"), "attribution": meta.get("attribution")}))
        if not groups:
            raise LayoutError(f"{renders} holds no rendered object (renders/<uid>/meta.json); run the fetch first")
        return groups

    def instances(self, frame: Frame, size: tuple[int, int], cfg: IngestConfig) -> InstanceMasks:
        alpha = read_label_map(frame.annotation, cfg.max_image_pixels)  # RGBA -> its alpha channel
        mask = resize_mask((alpha > cfg.mask_threshold).astype(np.uint8), size).astype(bool)
        return {"1": (mask, (frame.expected or (("1", None),))[0][1])}
