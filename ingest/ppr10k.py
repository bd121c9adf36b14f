"""PPR10K portrait photos: ``<group>_<index>`` photos with human masks.

Accepted layouts (360p set, and the official loaders' split folders):
``<root>/{target_a,target_b,target_c,source}/<g>_<i>.tif`` with ``<root>/masks/<g>_<i>.png``
(or ``masks_360p/``), optionally under ``train/`` and ``val/``. One person is one
object (instance ``1``); the photos of a group are its frames, ordered by index.
Augmented copies (``<g>_<i>_<k>.tif``) are not frames.
"""

from __future__ import annotations

import re
from pathlib import Path

from imprint.ingest.base import Frame, Group, InstanceMasks, LayoutError, Source, sorted_frames
from imprint.geometry import resize_labels
from imprint.ingest.config import IngestConfig
from imprint.ingest.sources import SourceDef
from imprint.media import read_label_map

NAME = re.compile(r"^(\d+)_(\d+)\.(tif|tiff|png|jpg|jpeg)$", re.IGNORECASE)
MASK_DIRS = ("masks", "masks_360p", "masks_full")


def _mask_dir(base: Path) -> Path | None:
    return next((base / d for d in MASK_DIRS if (base / d).is_dir()), None)


class PPR10K(Source):

    def _bases(self, root: Path, cfg: IngestConfig) -> list[tuple[Path, Path]]:
        """``(folder, its mask folder)`` of each split (or of the root)."""
        splits = [root / s for s in ("train", "val") if (root / s / cfg.ppr10k_images).is_dir()]
        out = []
        for base in splits or [root]:
            masks = _mask_dir(base)
            if not (base / cfg.ppr10k_images).is_dir() or masks is None:
                present = sorted(p.name for p in base.iterdir()) if base.is_dir() else []
                raise LayoutError(
                    f"{base} is not a PPR10K folder: expected {cfg.ppr10k_images}/<group>_<index>.tif and "
                    f"masks/<group>_<index>.png (found: {', '.join(present[:8]) or 'nothing'}); "
                    f"choose the photo folder with --set ppr10k_images=source|target_a|target_b|target_c")
            out.append((base, masks))
        return out

    def discover(self, root: Path, cfg: IngestConfig) -> list[Group]:
        by_group: dict[str, list[Frame]] = {}
        for base, masks in self._bases(root, cfg):
            for path in sorted((base / cfg.ppr10k_images).iterdir()):
                m = NAME.match(path.name)
                if not m:
                    continue
                group, index = m.group(1), m.group(2)
                by_group.setdefault(group, []).append(
                    Frame(name=f"{group}_{index}", image=str(path), annotation=str(masks / f"{group}_{index}.png"),
                          expected=(("1", "person"),)))
        return [Group(group_id=g, frames=sorted_frames(frames), missing_reason="missing_mask")
                for g, frames in by_group.items()]

    def instances(self, frame: Frame, size: tuple[int, int], cfg: IngestConfig) -> InstanceMasks:
        mask = read_label_map(frame.annotation_file, cfg.max_image_pixels)
        # Binary masks whose foreground is 255 or 1: anything > 0 is the person. They may
        # come at another size than the photos (masks_full vs 360p): resize, nearest.
        mask = resize_labels((mask > 0).astype("uint8"), size)
        return {"1": (mask.astype(bool), "person")}


SOURCE = SourceDef(
    name="ppr10k", kind="video", reader=PPR10K,
    licence="PPR10K: non-commercial research only; no reproduction or commercial exploitation",
    attribution="PPR10K (Liang et al., CVPR 2021), https://github.com/csjliang/PPR10K",
    layout="`target_a/<group>_<index>.tif` (or `source/`, `target_b/`, `target_c/`; optionally under `train/`, "
           "`val/`), `masks/<group>_<index>.png`; a group's photos are its frames")
