"""YouTube-VOS 2019 (VOS track).

Layout: ``<split>/meta.json``, ``<split>/JPEGImages/<video>/<00000>.jpg``,
``<split>/Annotations/<video>/<00000>.png`` (palette PNG, value = object id,
0 = background). ``meta.json``: ``videos -> <video> -> objects -> <id> -> {category,
frames}``; an object is expected exactly in the frames its entry lists. Frame stems are indices into
the 30 fps video (the annotated set holds every 5th): the records' ``frame_number``, at 30 fps.
"""

from __future__ import annotations

import json
from pathlib import Path

from imprint.ingest.base import Frame, Group, InstanceMasks, LayoutError, Source, sorted_frames
from imprint.ingest.config import IngestConfig
from imprint.ingest.sources import SourceDef
from imprint.media import read_label_map
from imprint.stats import Drop


def find_split_dir(root: Path, split: str) -> Path:
    """``root`` itself, ``root/<split>``, or one level down (an archive's top folder)."""
    for cand in (root, root / split, *(d / split for d in sorted(root.iterdir()) if d.is_dir())):
        if (cand / "meta.json").is_file() and (cand / "JPEGImages").is_dir():
            return cand
    raise LayoutError(
        f"{root} is not a YouTube-VOS 2019 folder: expected {split}/meta.json, {split}/JPEGImages/<video>/*.jpg "
        f"and {split}/Annotations/<video>/*.png (pass the folder that holds '{split}/', or its archive)")


class YouTubeVOS(Source):

    def discover(self, root: Path, cfg: IngestConfig) -> list[Group]:
        split_dir = find_split_dir(root, cfg.split)
        try:
            meta = json.loads((split_dir / "meta.json").read_text())
            videos = meta["videos"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise LayoutError(f"{split_dir / 'meta.json'} is not YouTube-VOS meta.json "
                              f"({{'videos': {{video: {{'objects': ...}}}}}}): {exc}") from None
        groups = []
        for video, entry in videos.items():
            expected: dict[str, list[tuple[str, str | None]]] = {}
            for obj_id, obj in (entry.get("objects") or {}).items():
                for stem in obj.get("frames", []):
                    expected.setdefault(stem, []).append((str(obj_id), obj.get("category")))
            frames = [
                Frame(name=stem,
                      image=str(split_dir / "JPEGImages" / video / f"{stem}.jpg"),
                      annotation=str(split_dir / "Annotations" / video / f"{stem}.png"),
                      expected=tuple(objs))
                for stem, objs in expected.items()
            ]
            groups.append(Group(group_id=video, frames=sorted_frames(frames)))
        return groups

    def instances(self, frame: Frame, size: tuple[int, int], cfg: IngestConfig) -> InstanceMasks:
        labels = read_label_map(frame.annotation_file, cfg.max_image_pixels)
        if (labels.shape[1], labels.shape[0]) != size:
            raise Drop("size_mismatch", f"{frame.annotation} is {labels.shape[1]}x{labels.shape[0]}, "
                                        f"its frame {size[0]}x{size[1]}")
        return {iid: (labels == int(iid), None) for iid, _ in (frame.expected or ())}


SOURCE = SourceDef(
    name="ytvos", kind="video", reader=YouTubeVOS, frame_rate=30.0,  # frame stems index the 30 fps video
    licence="YouTube-VOS: annotations CC BY 4.0; the videos are for non-commercial research purposes only",
    attribution="YouTube-VOS (Xu et al., 2018), https://youtube-vos.org",
    layout="`train/meta.json`, `train/JPEGImages/<video>/<00000>.jpg`, `train/Annotations/<video>/<00000>.png` "
           "(palette PNG, value = object id); `--set split=valid` for another split")
