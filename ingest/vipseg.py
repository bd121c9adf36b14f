"""VIPSeg (``VIPSeg_720P`` after the official conversion).

Layout: ``VIPSeg_720P/images/<video>/<8 digits>.jpg``,
``VIPSeg_720P/panomasks/<video>/<same>.png`` (16-bit raw panoptic values) and
``panoVIPSeg_categories.json`` (``[{id, name, isthing}]``, 0-based ids).
Raw values: 0 void; ``< 125`` a stuff label (1-based); ``>= 300`` a thing,
``label * 100 + k``. Only *thing* instances become objects; stuff (wall, sky),
void and out-of-range values (the released masks hold 200) never do.

The split (``split``, default ``train``) comes from the owners' lists: ``VIPSeg/<split>.txt``
beside ``VIPSeg_720P/`` (the archive's own lists, where ``change2_720p.py`` and ``splitjson.py`` read
them), ``VIPSeg_720P/<split>.txt`` (where the README's picture puts them), or
``VIPSeg_720P/panoptic_gt_VIPSeg_<split>.json`` (``splitjson.py``'s output). Without any of them the
job stops and says so: every video (validation too) only with ``split=all``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from imprint.ingest.base import Frame, Group, InstanceMasks, LayoutError, Source, sorted_frames
from imprint.ingest.config import IngestConfig
from imprint.ingest.sources import SourceDef
from imprint.media import read_label_map
from imprint.stats import Drop

log = logging.getLogger(__name__)

THING_MIN, THING_MAX = 300, 12499
CATEGORY_FILES = ("panoVIPSeg_categories.json", "panoptic_gt_VIPSeg.json", "panoptic_gt_VIPSeg_train.json")


def thing_semantic_id(value: int) -> int | None:
    """0-based category id of a raw panomask value if it encodes a thing instance, else None."""
    if THING_MIN <= value <= THING_MAX:
        return value // 100 - 1
    return None


def _find_root(root: Path) -> Path:
    for cand in (root, root / "VIPSeg_720P", *(d / "VIPSeg_720P" for d in sorted(root.iterdir()) if d.is_dir())):
        if (cand / "images").is_dir() and (cand / "panomasks").is_dir():
            return cand
    raise LayoutError(
        f"{root} is not a VIPSeg folder: expected VIPSeg_720P/images/<video>/*.jpg, "
        f"VIPSeg_720P/panomasks/<video>/*.png and VIPSeg_720P/panoVIPSeg_categories.json "
        f"(run the official change2_720p.py conversion first)")


def load_categories(vip_root: Path) -> dict[int, tuple[str, bool]]:
    for name in CATEGORY_FILES:
        path = vip_root / name
        if path.is_file():
            data = json.loads(path.read_text())
            cats = data["categories"] if isinstance(data, dict) else data
            return {int(c["id"]): (str(c["name"]), bool(c["isthing"])) for c in cats}
    raise LayoutError(f"{vip_root} has no categories file ({' or '.join(CATEGORY_FILES)}); "
                      f"it tells things (objects) from stuff (wall, sky)")


def split_videos(vip: Path, split: str) -> tuple[list[str], str]:
    """The videos of ``split`` from the owners' lists, and which file said so (see the module's doc)."""
    beside, inside = vip.parent / f"{split}.txt", vip / f"{split}.txt"
    for txt in (beside, inside):
        if txt.is_file():
            return list(dict.fromkeys(v.strip() for v in txt.read_text().splitlines() if v.strip())), str(txt)
    js = vip / f"panoptic_gt_VIPSeg_{split}.json"
    if js.is_file():
        try:
            data = json.loads(js.read_text())
            entries = data.get("videos") or data.get("annotations") or []
            return list(dict.fromkeys(str(e["video_id"]) for e in entries)), str(js)
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
            raise LayoutError(f"{js} is not VIPSeg's split json ({{'videos': [{{'video_id': ...}}]}}): "
                              f"{type(exc).__name__}: {exc}") from None
    raise LayoutError(
        f"no VIPSeg split list for split={split!r}: expected {beside} (the archive's VIPSeg/{split}.txt, beside "
        f"VIPSeg_720P/) or {js} (written by the owners' splitjson.py), or {inside}. Put the list there, "
        f"choose another split (--set split=val), or take every video, validation too, with --set split=all")


class VIPSeg(Source):

    def __init__(self) -> None:
        self._categories: dict[str, dict[int, tuple[str, bool]]] = {}

    def discover(self, root: Path, cfg: IngestConfig) -> list[Group]:
        vip = _find_root(root)
        self._categories[str(vip)] = load_categories(vip)
        present = sorted(d.name for d in (vip / "images").iterdir() if d.is_dir())
        if cfg.split == "all":
            videos, listed_in = present, "every video in images/ (split=all)"
        else:
            videos, listed_in = split_videos(vip, cfg.split)
        missing = [v for v in videos if not (vip / "images" / v).is_dir()]
        if videos and len(missing) == len(videos):
            raise LayoutError(f"{listed_in} lists {len(videos)} videos and none of them is in {vip / 'images'} "
                              f"(e.g. {videos[0]}): is it VIPSeg's list, and the converted VIPSeg_720P beside it?")
        if missing:
            log.warning("[vipseg] %d videos of %s have no folder in %s (e.g. %s)", len(missing), listed_in,
                        vip / "images", missing[0])
        self._read = {"split": cfg.split, "videos_from": listed_in, "videos": len(videos) - len(missing),
                      "listed_without_images": missing[:20], "listed_without_images_count": len(missing)}
        groups = []
        for video in videos:
            if video in missing:
                continue
            images = sorted((vip / "images" / video).glob("*.jpg"))
            frames = [Frame(name=p.stem, image=str(p), annotation=str(vip / "panomasks" / video / f"{p.stem}.png"))
                      for p in images]
            groups.append(Group(group_id=video, frames=sorted_frames(frames)))
        return groups

    def _lookup(self, annotation: str) -> dict[int, tuple[str, bool]]:
        vip = str(Path(annotation).parents[2])
        if vip not in self._categories:
            self._categories[vip] = load_categories(Path(vip))
        return self._categories[vip]

    def instances(self, frame: Frame, size: tuple[int, int], cfg: IngestConfig) -> InstanceMasks:
        labels = read_label_map(frame.annotation_file, cfg.max_image_pixels)
        if (labels.shape[1], labels.shape[0]) != size:
            raise Drop("size_mismatch", f"{frame.annotation} is {labels.shape[1]}x{labels.shape[0]}, "
                                        f"its frame {size[0]}x{size[1]}")
        categories = self._lookup(frame.annotation_file)
        out: InstanceMasks = {}
        for value in np.unique(labels):
            sem = thing_semantic_id(int(value))
            if sem is None or sem not in categories or not categories[sem][1]:
                continue
            out[str(int(value))] = (labels == value, categories[sem][0])
        return out


SOURCE = SourceDef(
    name="vipseg", kind="video", reader=VIPSeg,
    licence="VIPSeg: released for non-commercial research purposes only",
    attribution="VIPSeg (Miao et al., CVPR 2022), https://github.com/VIPSeg-Dataset/VIPSeg-Dataset",
    layout="`VIPSeg_720P/images/<video>/<8 digits>.jpg`, `VIPSeg_720P/panomasks/<video>/*.png` (16-bit), "
           "`panoVIPSeg_categories.json`; the split from `VIPSeg/<split>.txt` beside `VIPSeg_720P/` (or "
           "`panoptic_gt_VIPSeg_<split>.json`; `--set split=all` for every video); only thing instances")
