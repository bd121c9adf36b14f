"""MVImgNet and MVImgNet2.0 multi-view captures.

Layout: ``<class>/<instance>/images/<001>.jpg``; masks (the released mask
package, CarveKit soft masks 0..255) in any of: ``<class>/<instance>/masks/<stem>.png``
(MVImgNet2.0), ``<class>/<instance>/masks/<stem>.jpg.png``, the separate tree
``masks/<class>/<instance>/<stem>.jpg.png`` beside the classes, or RGBA PNGs beside
the JPEGs (``images/<stem>*.png``, alpha). Object where value > ``mask_threshold``.
Class names from ``mvimgnet_category.txt`` (``id,name``) or ``mvimgnet2_category.json``.
An instance without masks is reported (``no_masks``), never guessed.
"""

from __future__ import annotations

import json
from pathlib import Path

from imprint.ingest.base import Frame, Group, InstanceMasks, LayoutError, Source, sorted_frames
from imprint.geometry import resize_labels
from imprint.ingest.config import IngestConfig
from imprint.ingest.sources import SourceDef
from imprint.media import read_label_map

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


def _mask_for(inst_dir: Path, image: Path, mask_tree: Path | None) -> Path | None:
    stem = image.stem
    cands = [inst_dir / "masks" / f"{stem}.png", inst_dir / "masks" / f"{image.name}.png"]
    if mask_tree is not None:
        rel = inst_dir.relative_to(inst_dir.parents[1])
        cands += [mask_tree / rel / f"{image.name}.png", mask_tree / rel / f"{stem}.png"]
    cands += sorted(image.parent.glob(f"{stem}*.png"))
    return next((c for c in cands if c.is_file() and c != image), None)


class MVImgNet(Source):

    def discover(self, root: Path, cfg: IngestConfig) -> list[Group]:
        inst_dirs = sorted(p.parent for p in root.glob("*/*/images") if p.is_dir())
        if not inst_dirs:
            raise LayoutError(
                f"{root} is not an MVImgNet folder: expected <class>/<instance>/images/<001>.jpg with masks in "
                f"<class>/<instance>/masks/<001>.png (MVImgNet2.0 layout) or a masks/<class>/<instance>/ tree")
        names = load_class_names(root)
        mask_tree = root / "masks" if (root / "masks").is_dir() else None
        groups = []
        for inst_dir in inst_dirs:
            cls = inst_dir.parent.name
            category = names.get(cls, cls)
            images = [p for p in (inst_dir / "images").iterdir() if p.suffix.lower() in (".jpg", ".jpeg")]
            frames = []
            for image in images:
                mask = _mask_for(inst_dir, image, mask_tree)
                frames.append(Frame(name=image.stem, image=str(image), annotation=str(mask) if mask else None,
                                    expected=(("1", category),)))
            reason = "missing_mask" if any(f.annotation for f in frames) else "no_masks"
            groups.append(Group(group_id=f"{cls}/{inst_dir.name}", frames=sorted_frames(frames),
                                missing_reason=reason))
        return groups

    def instances(self, frame: Frame, size: tuple[int, int], cfg: IngestConfig) -> InstanceMasks:
        soft = read_label_map(frame.annotation_file, cfg.max_image_pixels)
        mask = resize_labels((soft > cfg.mask_threshold).astype("uint8"), size).astype(bool)
        return {"1": (mask, (frame.expected or (("1", None),))[0][1])}


SOURCE = SourceDef(
    name="mvimgnet", kind="multiview", reader=MVImgNet,
    licence="MVImgNet / MVImgNet2.0 Terms of Use: research only (code CC BY-NC 4.0)",
    attribution="MVImgNet (Yu et al., CVPR 2023), https://gaplab.cuhk.edu.cn/projects/MVImgNet/",
    layout="`<class>/<instance>/images/<001>.jpg`, masks in `<class>/<instance>/masks/<001>.png` (or "
           "`…/<001>.jpg.png`, or a `masks/<class>/<instance>/` tree); `mvimgnet_category.txt`")
