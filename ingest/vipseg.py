"""VIPSeg (``VIPSeg_720P`` after the official conversion).

Layout: ``VIPSeg_720P/images/<video>/<8 digits>.jpg``,
``VIPSeg_720P/panomasks/<video>/<same>.png`` (16-bit raw panoptic values) and
``panoVIPSeg_categories.json`` (``[{id, name, isthing}]``, 0-based ids).
Raw values: 0 void; ``< 125`` a stuff label (1-based); ``>= 300`` a thing,
``label * 100 + k``. Only *thing* instances become objects; stuff (wall, sky),
void and out-of-range values (the released masks hold 200) never do.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from imprint.ingest.base import Frame, Group, InstanceMasks, LayoutError, Source, sorted_frames
from imprint.ingest.config import IngestConfig
from imprint.ingest.sources import SourceDef
from imprint.media import read_label_map
from imprint.stats import Drop

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


class VIPSeg(Source):

    def __init__(self) -> None:
        self._categories: dict[str, dict[int, tuple[str, bool]]] = {}

    def discover(self, root: Path, cfg: IngestConfig) -> list[Group]:
        vip = _find_root(root)
        self._categories[str(vip)] = load_categories(vip)
        split_file = vip / f"{cfg.split}.txt"
        if cfg.split in ("", "all") or not split_file.is_file():
            videos = sorted(d.name for d in (vip / "images").iterdir() if d.is_dir())
        else:
            videos = [v.strip() for v in split_file.read_text().splitlines() if v.strip()]
        groups = []
        for video in videos:
            img_dir = vip / "images" / video
            images = sorted(img_dir.glob("*.jpg")) if img_dir.is_dir() else []
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
           "`panoVIPSeg_categories.json`; only thing instances")
