"""MVImgNet and MVImgNet2.0 multi-view captures.

Layout: ``<class>/<instance>/images/<001>.jpg``. The owners do not document their mask files, so a mask is
matched to its frame only by the frame's exact stem, in the variants seen in the released mask package
(CarveKit soft masks 0..255) and in public loaders, in this order:

1. ``<class>/<instance>/masks/<stem>.png`` (MVImgNet2.0's ``masks/`` folder);
2. ``<class>/<instance>/masks/<stem>.jpg.png`` (the image's name + ``.png``);
3. the separate tree ``masks/<class>/<instance>/<stem>.jpg.png`` (or ``<stem>.png``) beside the classes;
4. an image with an alpha channel beside the JPEG: ``images/<stem>.png`` or ``images/<stem>_<tag>.png``
   (AnyDoor's copy), read from its alpha.

Never by a prefix: frame ``1`` never takes ``10.png``. The object is where the mask (grey, or the alpha of a
grey + alpha or RGBA PNG) is > ``mask_threshold``. A mask is placed on its frame as displayed
(:func:`imprint.media.mask_for_frame`: turned with the frame's EXIF orientation when it was made from the
stored pixels, scaled when it has the frame's aspect ratio, else a counted ``size_mismatch``). Class names
from ``mvimgnet_category.txt`` (``id,name``) or ``mvimgnet2_category.json``. An instance without masks is
reported (``no_masks``), never guessed. Frame numbers are the capture order (``001`` -> 1).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from imprint.ingest.base import Frame, Group, InstanceMasks, LayoutError, Source, sorted_frames
from imprint.ingest.config import IngestConfig
from imprint.ingest.sources import SourceDef
from imprint.media import mask_for_frame, read_label_map
from imprint.stats import Drop

IMAGE_SUFFIXES = (".jpg", ".jpeg")
BESIDE = "beside"  # the variant of masks that are an alpha channel beside the JPEG


def load_class_names(root: Path) -> dict[str, str]:
    names: dict[str, str] = {}
    txt = root / "mvimgnet_category.txt"
    if txt.is_file():
        for line in txt.read_text().splitlines():
            key, sep, name = line.partition(",")
            if sep and key.strip().isdigit():
                names[key.strip()] = name.strip()
    js = root / "mvimgnet2_category.json"
    if js.is_file():
        names.update({str(k): str(v) for k, v in json.loads(js.read_text()).items()})
    return names


def _files(folder: Path | None) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_file()} if folder is not None and folder.is_dir() else set()


def _beside(images: list[Path], names: set[str]) -> dict[str, str]:
    """``{stem: png name}`` of the PNGs beside the JPEGs: ``<stem>.png`` or ``<stem>_<tag>.png``, each given to
    the longest stem it starts with (so ``1_2.png`` is frame ``1_2``'s, never frame ``1``'s), the first by name
    when a frame has several."""
    stems = {p.stem for p in images}
    out: dict[str, str] = {}
    for name in sorted(n for n in names if n.lower().endswith(".png")):
        key = name[:-4]
        owners = [s for s in stems if key == s or key.startswith(s + "_")]
        if owners:
            out.setdefault(max(owners, key=len), name)
    return out


def _masks_for(inst_dir: Path, images: list[Path], tree: Path | None) -> tuple[dict[str, Path], Counter[str]]:
    """``{image name: its mask}`` by exact stem in the documented variants, and how many each variant gave."""
    own, in_tree = inst_dir / "masks", tree / inst_dir.parent.name / inst_dir.name if tree is not None else None
    own_files, tree_files = _files(own), _files(in_tree)
    beside = _beside(images, _files(inst_dir / "images"))
    found: dict[str, Path] = {}
    variants: Counter[str] = Counter()
    for image in images:
        cands = [(own, f"{image.stem}.png", "masks/<stem>.png"), (own, f"{image.name}.png", "masks/<name>.png"),
                 (in_tree, f"{image.name}.png", "masks tree <name>.png"),
                 (in_tree, f"{image.stem}.png", "masks tree <stem>.png")]
        hit = next(((folder, name, v) for folder, name, v in cands
                    if folder is not None and name in (own_files if folder == own else tree_files)), None)
        if hit is None and image.stem in beside:
            hit = (image.parent, beside[image.stem], BESIDE)
        if hit is not None:
            found[image.name] = hit[0] / hit[1]
            variants[hit[2]] += 1
    return found, variants


class MVImgNet(Source):

    def discover(self, root: Path, cfg: IngestConfig) -> list[Group]:
        inst_dirs = sorted(p.parent for p in root.glob("*/*/images") if p.is_dir())
        if not inst_dirs:
            raise LayoutError(
                f"{root} is not an MVImgNet folder: expected <class>/<instance>/images/<001>.jpg with masks in "
                f"<class>/<instance>/masks/<001>.png (MVImgNet2.0 layout) or a masks/<class>/<instance>/ tree")
        names = load_class_names(root)
        tree = root / "masks" if (root / "masks").is_dir() else None
        groups = []
        variants: Counter[str] = Counter()
        for inst_dir in inst_dirs:
            cls = inst_dir.parent.name
            category = names.get(cls, cls)
            images = [p for p in (inst_dir / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
            masks, found = _masks_for(inst_dir, images, tree)
            variants.update(found)
            frames = [Frame(name=image.stem, image=str(image),
                            annotation=str(masks[image.name]) if image.name in masks else None,
                            expected=(("1", category),)) for image in images]
            reason = "missing_mask" if masks else "no_masks"
            groups.append(Group(group_id=f"{cls}/{inst_dir.name}", frames=sorted_frames(frames),
                                missing_reason=reason))
        self._read = {"captures": len(groups), "masks_by_variant": dict(sorted(variants.items())),
                      "mask_tree": str(tree) if tree is not None else None}
        return groups

    def instances(self, frame: Frame, size: tuple[int, int], cfg: IngestConfig) -> InstanceMasks:
        path = frame.annotation_file
        if Path(path).parent == Path(frame.image).parent:  # an image beside the JPEG: only its alpha is a mask
            soft = _alpha(path, cfg)
        else:
            soft = read_label_map(path, cfg.max_image_pixels)
        mask = mask_for_frame((soft > cfg.mask_threshold).astype(np.uint8), size, frame.image, path)
        return {"1": (mask.astype(bool), (frame.expected or (("1", None),))[0][1])}


def _alpha(path: str, cfg: IngestConfig) -> np.ndarray:
    try:
        with Image.open(path) as im:
            mode = im.mode
    except (OSError, SyntaxError, ValueError) as exc:
        raise Drop("corrupt_annotation", f"{path} cannot be decoded: {exc}") from None
    if mode not in ("RGBA", "LA"):
        raise Drop("missing_mask", f"{path} has no alpha channel ({mode}): a PNG beside a frame is its mask "
                                   f"only through its alpha (the AnyDoor layout)")
    return read_label_map(path, cfg.max_image_pixels)


SOURCE = SourceDef(
    name="mvimgnet", kind="multiview", reader=MVImgNet,
    licence="MVImgNet / MVImgNet2.0 Terms of Use: research only (code CC BY-NC 4.0)",
    attribution="MVImgNet (Yu et al., CVPR 2023), https://gaplab.cuhk.edu.cn/projects/MVImgNet/",
    layout="`<class>/<instance>/images/<001>.jpg`, masks by the frame's exact stem in "
           "`<class>/<instance>/masks/<001>.png` (or `…/<001>.jpg.png`, or a `masks/<class>/<instance>/` tree, or "
           "the alpha of `images/<001>.png` / `images/<001>_<tag>.png`); `mvimgnet_category.txt`")
