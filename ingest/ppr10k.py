"""PPR10K portrait photos: ``<group>_<index>`` photos with human masks.

Where the files sit, as the owners distribute and use them:

- the download: ``PPR10K-dataset/train_val_images_tif_360p/{source,source_aug_6,target_a,target_b,target_c}/``
  with ``PPR10K-dataset/masks_360p/`` (or ``masks_full/``) *beside* the image folder;
- the 360p set flat, as third-party loaders keep it: ``{source,source_aug_6,target_a,...,masks}/`` in one folder;
- the official training code's split folders: ``train/{source_aug,target_a,...,masks}/`` and
  ``val/{source,target_a,...,masks}/``: the training split has only ``source_aug*`` (each photo
  ``<g>_<i>.tif`` with its augmented copies ``<g>_<i>_<k>.tif``), the validation split ``source``.

``ppr10k_images`` picks the photo folder (``target_a`` by default; ``source`` reads ``source/``, or
``source_aug*/`` where a split has no ``source/``: its original photos, never the augmented copies, which
are not frames). Masks: ``masks/``, ``masks_360p/`` or ``masks_full/`` in the same folder or beside it;
any mask > 0 is the person, scaled to its photo when it has the photo's aspect ratio.

``split`` (``train`` by default, ``val``, ``all``): a ``train/`` or ``val/`` folder is that split; photos in
an unsplit folder follow the owners' rule (``utils/split_train_val.py``: group < 1356 is train). One
person is one object (instance ``1``); the photos of a group are its frames, ordered by index. The report
says which folders were read (``read``).
"""

from __future__ import annotations

import re
from pathlib import Path

from imprint.ingest.base import Frame, Group, InstanceMasks, LayoutError, Source, sorted_frames
from imprint.ingest.config import IngestConfig
from imprint.ingest.sources import SourceDef
from imprint.media import mask_for_frame, read_label_map

NAME = re.compile(r"^(\d+)_(\d+)\.(tif|tiff|png|jpg|jpeg)$", re.IGNORECASE)
AUGMENTED = re.compile(r"^(\d+)_(\d+)_(\d+)\.(tif|tiff|png|jpg|jpeg)$", re.IGNORECASE)
MASK_DIRS = ("masks", "masks_360p", "masks_full")
DOWNLOAD_DIR = "train_val_images_tif_360p"
SPLITS = ("train", "val")
FIRST_VAL_GROUP = 1356  # utils/split_train_val.py: int(name.split('_')[0]) < 1356 is train


def split_of_group(group: int) -> str:
    """The owners' split of a photo group (``utils/split_train_val.py``)."""
    return "train" if group < FIRST_VAL_GROUP else "val"


def _bases(root: Path) -> list[tuple[Path, str | None]]:
    """``(folder holding the photo folders, its split)``; None: split by group number."""
    splits: list[tuple[Path, str | None]] = [(root / s, s) for s in SPLITS if (root / s).is_dir()]
    if splits:
        return splits
    if (root / DOWNLOAD_DIR).is_dir():
        return [(root / DOWNLOAD_DIR, None)]
    return [(root, root.name if root.name in SPLITS else None)]


def _photo_dir(base: Path, images: str) -> Path | None:
    if (base / images).is_dir():
        return base / images
    if images == "source":  # the training split holds the source photos only in source_aug*/
        augmented = sorted(d for d in base.glob("source_aug*") if d.is_dir())
        return augmented[0] if augmented else None
    return None


def _mask_dir(base: Path) -> Path | None:
    """``masks*`` in the split's folder, else beside it (the download's ``masks_360p`` beside the image folder)."""
    return next((folder / d for folder in (base, base.parent) for d in MASK_DIRS if (folder / d).is_dir()), None)


class PPR10K(Source):

    def _folders(self, root: Path, cfg: IngestConfig) -> list[tuple[Path, Path, str | None]]:
        """``(photo folder, mask folder, split or None)`` of each split folder (or of the root)."""
        if cfg.split not in (*SPLITS, "all"):
            raise LayoutError(f"PPR10K's splits are train and val (or all), not split={cfg.split!r}")
        bases = _bases(root)
        chosen = [(base, split) for base, split in bases if cfg.split == "all" or split in (None, cfg.split)]
        if not chosen:
            raise LayoutError(f"{root} holds only the {', '.join(str(s) for _, s in bases)} split of PPR10K; "
                              f"pass --set split=val (or all) to read it")
        out = []
        for base, split in chosen:
            photos, masks = _photo_dir(base, cfg.ppr10k_images), _mask_dir(base)
            if photos is None or masks is None:
                present = sorted(p.name for p in base.iterdir()) if base.is_dir() else []
                raise LayoutError(
                    f"{base} is not a PPR10K folder: expected {cfg.ppr10k_images}/<group>_<index>.tif "
                    f"({'or source_aug*/, ' if cfg.ppr10k_images == 'source' else ''}optionally under train/ and "
                    f"val/, or under {DOWNLOAD_DIR}/) and masks/ or masks_360p/ in it or beside it (found: "
                    f"{', '.join(present[:8]) or 'nothing'}); choose the photo folder with "
                    f"--set ppr10k_images=source|target_a|target_b|target_c")
            out.append((photos, masks, split))
        return out

    def discover(self, root: Path, cfg: IngestConfig) -> list[Group]:
        by_group: dict[str, list[Frame]] = {}
        augmented = other_split = 0
        folders = self._folders(root, cfg)
        for photos, masks, split in folders:
            for path in sorted(photos.iterdir()):
                m = NAME.match(path.name)
                if not m:
                    augmented += bool(AUGMENTED.match(path.name))
                    continue
                group, index = m.group(1), m.group(2)
                if split is None and cfg.split != "all" and split_of_group(int(group)) != cfg.split:
                    other_split += 1
                    continue
                by_group.setdefault(group, []).append(
                    Frame(name=f"{group}_{index}", image=str(path), annotation=str(masks / f"{group}_{index}.png"),
                          expected=(("1", "person"),)))
        rel = {str(p): _relative(p, root) for photos, masks, _ in folders for p in (photos, masks)}
        self._read = {"split": cfg.split, "photos": sorted({rel[str(p)] for p, _, _ in folders}),
                      "masks": sorted({rel[str(m)] for _, m, _ in folders}),
                      "split_by": sorted({f"folder {s}/" if s else f"group number (< {FIRST_VAL_GROUP} is train)"
                                          for _, _, s in folders}),
                      "augmented_copies_skipped": augmented, "photos_of_other_split": other_split}
        return [Group(group_id=g, frames=sorted_frames(frames), missing_reason="missing_mask")
                for g, frames in by_group.items()]

    def instances(self, frame: Frame, size: tuple[int, int], cfg: IngestConfig) -> InstanceMasks:
        mask = read_label_map(frame.annotation_file, cfg.max_image_pixels)
        # Binary masks whose foreground is 255 or 1: anything > 0 is the person. They may come at another
        # resolution than the photos (masks_full vs 360p): scaled, never stretched to another aspect ratio.
        person = mask_for_frame((mask > 0).astype("uint8"), size, frame.image, frame.annotation_file)
        return {"1": (person.astype(bool), "person")}


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:  # beside the root (masks_360p beside the image folder given as --root)
        return str(path)


SOURCE = SourceDef(
    name="ppr10k", kind="video", reader=PPR10K,
    licence="PPR10K: non-commercial research only; no reproduction or commercial exploitation",
    attribution="PPR10K (Liang et al., CVPR 2021), https://github.com/csjliang/PPR10K",
    layout="`target_a/<group>_<index>.tif` (or `source/`, `target_b/`, `target_c/`; `train/source_aug*/` and "
           "`val/source/` in the official split folders; the download's `train_val_images_tif_360p/`), "
           "`masks/<group>_<index>.png` or `masks_360p/` beside the photos; `--set split=train|val|all`; a "
           "group's photos are its frames")
