"""SA-V (Segment Anything Video): decode the distributed mp4 + RLE masklets into frames and masks, then read them.

"Materialise, then ingest". SA-V train is distributed as
``sav_train/sav_XXX/sav_NNNNNN.mp4`` with ``sav_NNNNNN_manual.json`` (and, for most
videos, ``sav_NNNNNN_auto.json``): 24 fps video, masklets annotated on every 4th frame
(``annot_sample_rate=4``), each mask a COCO compressed RLE ``{"size": [H, W],
"counts": str}``. Reading it lazily would leave records pointing inside an mp4, while
every later stage reads frames as image files; so :func:`prepare_sav` decodes each
video once, front to back (:class:`~imprint.ingest.video.SequentialVideo`: frame *k* is the *k*-th
frame of the stream, as the owners' ``sav_utils.decode_video`` reads it, never a seek), and writes the
annotated frames, one folder per video::

    DATA/raw/sav/
      videos/<video>/frames/<00000>.jpg          annotated frames, named by their 24 fps index
      videos/<video>/masks/<masklet>/<00000>.png  one 1-bit PNG per masklet per frame it is visible in
      videos/<video>/video.json                   sizes, masklets, settings
      settings.json                               the SAVConfig (and decoder) the videos were decoded with
      alignment.json                              ``--check-alignment N``: frames compared with a fresh decode
      status/                                     the status ledger (imprint.ingest.ledger): one row per video
      report.json                                 videos by status (ok, corrupt_video, ...), failures
      archives/<sav_XXX>/                         official tars given as --root, unpacked safely

A video folder appears whole or not at all (:func:`imprint.io.atomic_dir`); a video is an
item of the ledger, so a rerun skips finished ones (and failed ones unless
``--retry-failed``), and other settings (or another decoder) decode every video again. Masklet ids are the
position in the manual
json (``000``, ``001``…); auto masklets (``include_auto``) are ``auto000``… Frames in
which no kept masklet is visible and empty masks are not written.

:class:`SAVSource` (``sav``) reads that layout, and also the official
``sav_val`` / ``sav_test`` layout (``JPEGImages_24fps/<video>/<00000>.jpg`` +
``Annotations_6fps/<video>/<obj>/<00000>.png``): group = video, instance = masklet,
records as for YouTube-VOS. A record's ``annotation_uri`` is the folder holding its
frame's per-masklet PNGs (SA-V masks overlap, so there is no single label map). Frame names are the
index in the 24 fps video: the records' ``frame_number`` (frames where no kept masklet is visible are not
written, so positions skip absences; frame numbers keep the time).

:func:`check_alignment` (``imprint ingest sav --check-alignment N``) compares N random written frames
with a sequential decode of their mp4 and reports every mismatch (``alignment.json``).

The RLE codec is pure numpy (column-major runs, first run zeros; LEB128-like 6-bit
characters with deltas from the run two back), the same as ``pycocotools.mask``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from imprint import __version__
from imprint.archive import archive_stem, extract_archive, is_archive
from imprint.errors import ImprintError, UsageError
from imprint.executor import Executor
from imprint.ingest.base import Frame, Group, InstanceMasks, LayoutError, Source, sorted_frames
from imprint.geometry import resize_labels
from imprint.ingest.config import IngestConfig
from imprint.ingest.download import ItemStatus
from imprint.ingest.ledger import RETRY_FAILED, STATUS_DIR, run_items
from imprint.ingest.sources import Materialise, Option, Request, SourceDef
from imprint.ingest.video import FrameCheck, SequentialVideo, check_frames
from imprint.io import atomic_dir, is_temporary_dir, remove_stale_dirs, write_json_atomic
from imprint.masks import encode_mask_png
from imprint.media import read_label_map
from imprint.records import frame_sort_key
from imprint.stats import Drop

log = logging.getLogger(__name__)

LICENCE = "SA-V: videos and annotations CC BY 4.0"
VIDEO_SUFFIX = ".mp4"
SETTINGS = "settings.json"
ALIGNMENT = "alignment.json"
FRAME_RATE = 24.0
#: how frames are decoded, pinned with the settings: videos decoded otherwise (decord's seeks, before
#: imprint read them front to back) are decoded again
DECODER = "opencv-sequential"

# ---------------------------------------------------------------------------------------------- RLE


def rle_counts_decode(s: str | bytes) -> np.ndarray:
    """COCO compressed-RLE string -> run lengths (int64), vectorised ``rleFrString``."""
    raw = s.encode("ascii") if isinstance(s, str) else bytes(s)
    if not raw:
        return np.zeros(0, dtype=np.int64)
    c = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 48
    if c.min() < 0 or c.max() > 63:
        raise ValueError("RLE counts hold characters outside '0'..'o'")
    ends = np.flatnonzero((c & 0x20) == 0)  # a character without the continuation bit ends a number
    if ends.size == 0 or ends[-1] != c.size - 1:
        raise ValueError("RLE counts end inside a number (truncated string)")
    starts = np.r_[0, ends[:-1] + 1]
    lengths = ends - starts + 1
    if lengths.max() > 12:
        raise ValueError("RLE counts hold a number longer than 12 characters")
    k = np.arange(c.size) - np.repeat(starts, lengths)
    x = np.add.reduceat((c & 0x1F) << (5 * k), starts)  # the 5-bit groups do not overlap: sum == or
    negative = (c[ends] & 0x10) != 0
    x = np.where(negative, x - (np.int64(1) << (5 * lengths)), x)
    cnts = x.copy()
    cnts[1::2] = np.cumsum(x[1::2])  # cnts[m] = x[m] + cnts[m-2] for m > 2: two interleaved cumsums,
    cnts[2::2] = np.cumsum(x[2::2])  # the even one starting at m = 2 (which has no delta)
    return cnts


def rle_runs(rle: dict[str, Any]) -> tuple[int, int, np.ndarray]:
    """Parse and check a COCO RLE without building its mask: ``(H, W, run lengths)``."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not an RLE dict (size, counts): {exc}") from None
    cnts = np.asarray(counts, dtype=np.int64) if isinstance(counts, list) else rle_counts_decode(counts)
    if cnts.size and cnts.min() < 0:
        raise ValueError("RLE has a negative run length")
    if int(cnts.sum()) != h * w:
        raise ValueError(f"RLE runs cover {int(cnts.sum())} pixels, the size says {h}x{w} = {h * w}")
    return h, w, cnts


def runs_to_mask(h: int, w: int, cnts: np.ndarray) -> np.ndarray:
    """Run lengths (column-major, first run zeros) -> C-contiguous bool mask HxW."""
    if h == 0 or w == 0:
        return np.zeros((h, w), bool)
    values = (np.arange(cnts.size) % 2).astype(np.uint8)
    # fill (W, H) and transpose into a C-contiguous (H, W) (cv2: 2x numpy's copy; a transposed
    # view would make every later row-wise step, packbits included, 15x slower)
    return cv2.transpose(np.repeat(values, cnts).reshape(w, h)).view(bool)


# ---------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class SAVConfig:
    """How SA-V is materialised: ``annot_sample_rate`` (every 4th frame of 24 fps), manual masklets and
    optionally the auto ones, JPEG quality of the frames."""

    annot_sample_rate: int = 4
    include_auto: bool = False
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if self.annot_sample_rate < 1:
            raise ValueError("annot_sample_rate must be >= 1")
        if not 50 <= self.jpeg_quality <= 100:
            raise ValueError("jpeg_quality must be in 50..100")


@dataclass(frozen=True)
class VideoItem:
    """One video to decode (an item of the ledger: ``item_id`` is the video id, ``url`` its mp4)."""

    item_id: str
    url: str
    manual: str | None
    auto: str | None
    out_dir: str


# ---------------------------------------------------------------------------------------------- one video


def _load_masklets(path: str, prefix: str) -> tuple[dict, list[tuple[str, list]]]:
    """The annotation json and its masklets as ``[(masklet_id, [rle per annotated frame])]``."""
    try:
        data = json.loads(Path(path).read_text())
        masklet = data["masklet"]  # masklet[t][j]: object j at annotated frame t
        if not isinstance(masklet, list):
            raise TypeError(f"masklet is a {type(masklet).__name__}, not a list")
        n_obj = max((len(row) for row in masklet), default=0)
    except (OSError, json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise Drop("corrupt_annotation", f"{path}: {type(exc).__name__}: {exc}") from None
    ids = [f"{prefix}{j:03d}" for j in range(n_obj)]
    return data, [(ids[j], [row[j] if j < len(row) else None for row in masklet]) for j in range(n_obj)]


@dataclass(frozen=True)
class SAVJob:
    """The ledger step: decode each video of a chunk (:func:`materialise_video`). Picklable for Ray."""

    cfg: SAVConfig

    def __call__(self, items: Sequence[VideoItem]) -> list[ItemStatus]:
        return [materialise_video(item, self.cfg) for item in items]


def materialise_video(item: VideoItem, cfg: SAVConfig) -> ItemStatus:
    """Decode one video's annotated frames and masks into ``out_dir/<video>/`` (whole or not at all).

    Never raises for bad input: the status is ``ok`` (``extra``: frames, masks, masklets) or the
    drop reason (``missing_annotation``, ``corrupt_annotation``, ``missing_file``, ``empty_file``,
    ``corrupt_video``, ``size_mismatch``, ``error``) with its error.
    """
    t0 = time.perf_counter()
    status = ItemStatus(item.item_id, item.url, "ok", path=str(Path(item.out_dir) / item.item_id))
    try:
        with atomic_dir(Path(item.out_dir) / item.item_id) as tmp:
            status.extra = _decode_video(item, cfg, tmp)
    except Drop as drop:
        status.status, status.error, status.path = drop.reason, drop.detail, None
    except Exception:  # noqa: BLE001 - an unforeseen failure: counted with its traceback, the job goes on
        status.status, status.error, status.path = "error", traceback.format_exc(), None
    status.seconds = round(time.perf_counter() - t0, 3)
    status.updated = time.time()
    return status


def _decode_video(task: VideoItem, cfg: SAVConfig, tmp: Path) -> dict[str, Any]:
    if task.manual is None or not Path(task.manual).is_file():
        raise Drop("missing_annotation", f"no {task.item_id}_manual.json beside {task.url}")
    meta, masklets = _load_masklets(task.manual, "")
    if cfg.include_auto and task.auto is not None and Path(task.auto).is_file():
        _, auto = _load_masklets(task.auto, "auto")
        masklets += auto
    n_annot = max((len(m) for _, m in masklets), default=0)
    with SequentialVideo(task.url) as video:
        w, h = video.size
        masks, empty = _parse_masks(task, masklets, w, h)
        rate = cfg.annot_sample_rate
        n_video = video.container_frames
        wanted = sorted(t for t in masks if not n_video or t * rate < n_video)
        frames_dir = tmp / "frames"
        frames_dir.mkdir(parents=True)
        written_frames = written_masks = 0
        for k, bgr in video.frames(t * rate for t in wanted):  # front to back: frame k is the k-th of the stream
            name = f"{k:05d}"
            ok, jpg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
            if not ok:
                raise RuntimeError(f"cv2 could not encode frame {name} of {task.item_id}")
            (frames_dir / f"{name}.jpg").write_bytes(jpg.tobytes())
            written_frames += 1
            for masklet_id, runs in masks[k // rate]:
                mdir = tmp / "masks" / masklet_id
                mdir.mkdir(parents=True, exist_ok=True)
                (mdir / f"{name}.png").write_bytes(encode_mask_png(runs_to_mask(h, w, runs)))
                written_masks += 1
        decoded = video.decoded
    beyond = len(masks) - written_frames
    info = {
        "video_id": task.item_id, "mp4": task.url, "manual": task.manual, "auto": task.auto,
        "width": w, "height": h, "video_frames": n_video or decoded, "decoded_frames": decoded,
        "decoder": DECODER, "frame_rate": FRAME_RATE, "annotated_frames": n_annot,
        "annot_sample_rate": rate, "frames_written": written_frames,
        "frames_beyond_video": beyond, "masks_written": written_masks, "empty_masks": empty,
        "masklets": {mid: {"type": "auto" if mid.startswith("auto") else "manual"} for mid, _ in masklets},
        "video_environment": meta.get("video_environment"), "licence": LICENCE,
        "config": asdict(cfg), "imprint_version": __version__,
    }
    write_json_atomic(tmp / "video.json", info)  # last: the folder is complete
    return {"objects": len(masklets), "frames": written_frames, "masks": written_masks, "empty_masks": empty,
            "frames_beyond_video": beyond}


def _parse_masks(task: VideoItem, masklets: list[tuple[str, list]], w: int, h: int,
                 ) -> tuple[dict[int, list[tuple[str, np.ndarray]]], int]:
    """``{annotated frame t: [(masklet id, run lengths)]}`` of the non-empty masks, and how many were empty.

    Every RLE is parsed and checked first (cheap, no mask is built) so that a bad annotation fails before any
    frame is decoded; masks are built frame by frame as they are written (a video's masks at once would take
    gigabytes).
    """
    masks: dict[int, list[tuple[str, np.ndarray]]] = {}
    empty = 0
    for masklet_id, rles in masklets:
        for t, rle in enumerate(rles):
            if rle is None:
                continue
            try:
                mh, mw, runs = rle_runs(rle)
            except ValueError as exc:
                raise Drop("corrupt_annotation", f"{task.manual}: masklet {masklet_id} frame {t}: {exc}") from None
            if (mh, mw) != (h, w):
                raise Drop("size_mismatch", f"{task.item_id}: masks are {mw}x{mh}, the video is {w}x{h}")
            if not runs[1::2].any():
                empty += 1
                continue
            masks.setdefault(t, []).append((masklet_id, runs))
    return masks, empty


# ---------------------------------------------------------------------------------------------- the job


def _video_dirs(root: Path, raw: Path) -> tuple[list[Path], list[dict[str, Any]]]:
    """Every mp4 under ``root`` (a folder, an official tar, or a folder of tars), with the archives unpacked."""
    _check_root(root)
    archives = []
    if is_archive(root):
        tars = [root]
        root_dirs: list[Path] = []
    else:
        tars = sorted(p for p in root.iterdir() if is_archive(p))
        root_dirs = [root]
    for tar in tars:
        log.info("[sav] unpacking %s into %s", tar.name, raw / "archives" / archive_stem(tar))
        report = extract_archive(tar, raw / "archives" / archive_stem(tar))
        archives.append(report.to_dict())
        root_dirs.append(Path(report.target))
    mp4s = sorted({p for d in root_dirs for p in d.rglob(f"sav_*{VIDEO_SUFFIX}")}, key=lambda p: p.stem)
    return mp4s, archives


def _check_root(root: Path) -> None:
    """A folder or an archive that exists (cheap: before any executor starts)."""
    if not root.exists():
        raise LayoutError(f"--root {root} does not exist")
    if not (root.is_dir() or is_archive(root)):
        raise LayoutError(f"--root {root} is neither a folder nor an archive (.tar)")


def _pin_settings(raw: Path, cfg: SAVConfig) -> None:
    """Decode with ``cfg`` (and :data:`DECODER`): a ledger made with other settings or another decoder is
    dropped, so every video is decoded again."""
    path = raw / SETTINGS
    want = {**asdict(cfg), "decoder": DECODER}
    try:
        have = json.loads(path.read_text())
    except (OSError, ValueError):
        have = None
    if have != want:
        if have is not None:
            log.info("[sav] settings changed (%s -> %s): every video is decoded again", have, want)
        shutil.rmtree(raw / STATUS_DIR, ignore_errors=True)
        write_json_atomic(path, want)


def prepare_sav(root: Path, out: Path, executor: Executor | None = None, limit: int | None = None,
                cfg: SAVConfig | None = None, *, retry_failed: bool = False, chunk: int = 1) -> Path:
    """Materialise SA-V train videos under ``out/raw/sav/`` and return that folder (the reader's root).

    ``root``: the extracted ``sav_train`` (or one ``sav_XXX`` folder), an official tar,
    or a folder of tars. ``out`` is DATA. ``limit`` keeps the first N videos by id.
    A video is one item of the ledger ``raw/sav/status/`` (``chunk`` videos per task):
    finished videos are skipped on a rerun, failed ones too unless ``retry_failed``; each
    is counted in ``report.json`` under its status and the job goes on.
    """
    from imprint.executor import LocalExecutor

    cfg = cfg or SAVConfig()
    executor = executor or LocalExecutor()
    t0 = time.perf_counter()
    if limit is not None and limit < 0:
        raise UsageError("--limit must be >= 0")
    raw = Path(out) / "raw" / "sav"
    videos_dir = raw / "videos"
    videos_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_dirs(videos_dir)
    mp4s, archives = _video_dirs(Path(root), raw)
    if not mp4s:
        raise LayoutError(f"{root} holds no SA-V video: expected sav_train/sav_XXX/sav_NNNNNN.mp4 with "
                          f"sav_NNNNNN_manual.json beside it (or the sav_XXX.tar archives)")
    if limit is not None:
        mp4s = mp4s[:limit]
    items = []
    for mp4 in mp4s:
        manual, auto = mp4.with_name(f"{mp4.stem}_manual.json"), mp4.with_name(f"{mp4.stem}_auto.json")
        items.append(VideoItem(mp4.stem, str(mp4), str(manual) if manual.is_file() else None,
                               str(auto) if auto.is_file() else None, str(videos_dir)))
    _pin_settings(raw, cfg)
    info = {"source": "sav", "root": str(root), "version": __version__, "videos": len(mp4s), "archives": archives,
            "config": asdict(cfg)}
    report = run_items(items, raw, SAVJob(cfg), executor, chunk, retry_failed=retry_failed, label="sav", info=info,
                       started=t0)
    log.info("[sav] %d videos: %s; report: %s", len(items), report["counts"], raw / "report.json")
    return raw


# ---------------------------------------------------------------------------------------------- alignment


class AlignmentError(ImprintError, RuntimeError):
    """Decoded frames that are not the frames of the stream their masks were drawn on."""


def check_alignment(raw: Path, n: int, executor: Executor | None = None, seed: int = 0) -> dict[str, Any]:
    """Compare ``n`` random written frames of ``raw/videos/`` with a sequential decode of their mp4.

    Each frame is compared with the decoded frames around it (``annot_sample_rate`` either side): it
    matches when its own frame is the closest (:mod:`imprint.ingest.video`). Writes and returns
    ``raw/alignment.json``: ``checked``, ``mismatched``, ``mismatches`` (video, frame, the offset that
    matches best, the errors), ``unchecked`` (videos whose mp4 could not be decoded).
    """
    from imprint.executor import LocalExecutor

    if n < 1:
        raise UsageError("--check-alignment needs a number of frames >= 1")
    listed: list[tuple[str, int, str, int]] = []  # (mp4, frame, jpg, window)
    for video in sorted(p for p in (Path(raw) / "videos").glob("*/video.json") if not is_temporary_dir(p.parent)):
        info = json.loads(video.read_text())
        listed += [(str(info["mp4"]), int(jpg.stem), str(jpg), int(info.get("annot_sample_rate", 4)))
                   for jpg in sorted((video.parent / "frames").glob("*.jpg"))]
    if not listed:
        raise LayoutError(f"{raw} holds no decoded SA-V video with its mp4 (videos/<video>/video.json): "
                          f"--check-alignment compares frames decoded from mp4s (not the official val/test JPEGs)")
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(listed), size=min(n, len(listed)), replace=False).tolist())
    by_video: dict[str, list[tuple[int, str]]] = {}
    window = 1
    for i in picked:
        mp4, frame, jpg, rate = listed[i]
        by_video.setdefault(mp4, []).append((frame, jpg))
        window = max(window, rate)
    checks = [FrameCheck(mp4, tuple(frames), window) for mp4, frames in by_video.items()]
    results = [o.result if o.ok and o.result is not None else {"video": checks[o.index].video, "error": o.error,
                                                               "frames": []}
               for o in (executor or LocalExecutor()).run(check_frames, checks)]
    verdicts = [v for r in results for v in r["frames"]]
    mismatches = [{"video": r["video"], **v} for r in results for v in r["frames"] if not v["ok"]]
    unchecked = [{"video": r["video"], "error": r["error"]} for r in results if r["error"]]
    report = {"checked": len(verdicts), "asked": n, "available": len(listed), "seed": seed, "decoder": DECODER,
              "mismatched": len(mismatches), "mismatches": mismatches, "unchecked": unchecked}
    write_json_atomic(Path(raw) / ALIGNMENT, report)
    log.info("[sav] alignment: %d of %d frames checked against a sequential decode match; %d mismatched, %d "
             "video(s) unchecked; report: %s", len(verdicts) - len(mismatches), len(verdicts), len(mismatches),
             len(unchecked), Path(raw) / ALIGNMENT)
    return report


def _checked(raw: Path, request: Request, executor: Executor) -> Path:
    """``raw``, after ``--check-alignment N`` found every frame it compared aligned (else an error)."""
    n = request.option("check_alignment")
    if not n:
        return raw
    report = check_alignment(raw, int(n), executor, request.seed)
    bad = report["mismatched"] + len(report["unchecked"])
    if bad:
        first = (report["mismatches"] or report["unchecked"])[0]
        raise AlignmentError(f"{report['mismatched']} of {report['checked']} frames do not match a sequential "
                             f"decode of their video and {len(report['unchecked'])} video(s) could not be "
                             f"checked (first: {first}); see {Path(raw) / ALIGNMENT}. Delete those videos' folders "
                             f"under {Path(raw) / 'videos'} to decode them again")
    return raw


# ---------------------------------------------------------------------------------------------- the reader


def _frames_by_object(ann_dir: Path) -> dict[str, list[str]]:
    """``{frame name: [masklet ids with a PNG for it]}`` from ``<ann_dir>/<masklet>/<frame>.png``."""
    by_frame: dict[str, list[str]] = {}
    for obj_dir in sorted(p for p in ann_dir.iterdir() if p.is_dir()):
        for png in obj_dir.glob("*.png"):
            by_frame.setdefault(png.stem, []).append(obj_dir.name)
    return by_frame


def _group(video_id: str, image_dir: Path, ann_dir: Path) -> Group:
    frames = []
    for name, objs in _frames_by_object(ann_dir).items():
        expected = tuple((o, None) for o in sorted(objs, key=frame_sort_key))
        frames.append(Frame(name=name, image=str(image_dir / f"{name}.jpg"), annotation=str(ann_dir),
                            expected=expected))
    return Group(group_id=video_id, frames=sorted_frames(frames), missing_reason="missing_annotation")


def _official_dir(root: Path) -> Path | None:
    """The official ``sav_val`` / ``sav_test`` folder at or under ``root`` (read as is), or None."""
    return next((p for p in (root, root / "sav_val", root / "sav_test")
                 if (p / "JPEGImages_24fps").is_dir() and (p / "Annotations_6fps").is_dir()), None)


class SAVSource(Source):
    """SA-V as materialised by :func:`prepare_sav`, or the official ``sav_val`` / ``sav_test`` folders."""

    def discover(self, root: Path, cfg: IngestConfig) -> list[Group]:
        root = Path(root)
        videos = root / "videos" if (root / "videos").is_dir() else root
        groups = [_group(d.name, d / "frames", d / "masks")
                  for d in sorted(videos.iterdir())
                  if (d / "video.json").is_file() and (d / "masks").is_dir() and not is_temporary_dir(d)] \
            if videos.is_dir() else []
        if not groups:
            official = _official_dir(root)
            if official is not None:
                groups = [_group(d.name, official / "JPEGImages_24fps" / d.name, d)
                          for d in sorted((official / "Annotations_6fps").iterdir()) if d.is_dir()]
        if not groups:
            if any(root.rglob(f"sav_*{VIDEO_SUFFIX}")):
                raise LayoutError(f"{root} holds SA-V mp4s: materialise them first (`imprint ingest sav --root "
                                  f"{root}` does), then ingest the folder it writes (DATA/raw/sav)")
            raise LayoutError(f"{root} is not an SA-V folder: expected videos/<video>/frames/<00000>.jpg + "
                              f"masks/<masklet>/<00000>.png + video.json (prepare_sav), or the official "
                              f"JPEGImages_24fps/ + Annotations_6fps/ of sav_val / sav_test")
        return groups

    def instances(self, frame: Frame, size: tuple[int, int], cfg: IngestConfig) -> InstanceMasks:
        out: InstanceMasks = {}
        for instance_id, _ in frame.expected or ():
            png = Path(frame.annotation_file) / instance_id / f"{frame.name}.png"
            if not png.is_file():
                continue  # counted as empty_mask by the shared step
            values = read_label_map(str(png), cfg.max_image_pixels)
            out[instance_id] = (resize_labels((values > 0).astype(np.uint8), size).astype(bool), None)
        return out


# ---------------------------------------------------------------------------------------------- the source


def _root(request: Request) -> Path:
    if request.root is None:
        raise UsageError("sav needs --root: the extracted sav_train folder, a sav_XXX.tar or a folder of tars "
                         "(or the official sav_val / sav_test folder, read as is)")
    return request.root


def _check(request: Request) -> None:
    _check_root(_root(request))


def _materialise(request: Request, executor: Executor) -> Path:
    root = _root(request)
    if (root / "videos").is_dir() or _official_dir(root) is not None:
        return _checked(root, request, executor)  # already frames and masks: read as is
    raw = prepare_sav(root, request.out, executor, request.limit, retry_failed=bool(request.option("retry_failed")))
    return _checked(raw, request, executor)


CHECK_ALIGNMENT = Option(("--check-alignment",), "after decoding, compare N random frames with a sequential decode "
                         "of their mp4 (DATA/raw/sav/alignment.json); a mismatch stops the job", type=int,
                         dest="check_alignment")


SOURCE = SourceDef(
    name="sav", kind="video", reader=SAVSource, frame_rate=FRAME_RATE,  # frame names index the 24 fps video
    licence=LICENCE,
    attribution="SA-V (Ravi et al., SAM 2, 2024), https://ai.meta.com/datasets/segment-anything-video/",
    layout="`sav_train/sav_XXX/sav_NNNNNN.mp4` + `sav_NNNNNN_manual.json` (or the `sav_XXX.tar` archives), decoded "
           "to `DATA/raw/sav/videos/<video>/`; or the official `sav_val` / `sav_test` folders, read as is",
    materialise=Materialise(run=_materialise, check=_check, options=(RETRY_FAILED, CHECK_ALIGNMENT)))
