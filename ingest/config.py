"""Ingest settings: quality filters, part size and per-source options."""

from __future__ import annotations

from dataclasses import dataclass

from imprint.media import DEFAULT_MAX_PIXELS

VERIFY_MODES = ("header", "full")


@dataclass(frozen=True)
class IngestConfig:
    """Every knob of ``imprint ingest``; set with ``--config FILE`` or ``--set key=value``.

    Quality filters (each drop counted under its reason in ``report.json``):
    ``min_area_frac`` / ``max_area_frac`` (mask area over frame area),
    ``min_box_side`` (pixels, shorter box side), ``max_border_sides`` (an object
    whose box touches more frame sides than this is cut by the border),
    ``min_frames_per_instance`` (an instance seen in fewer frames cannot make a
    pair of two different frames).
    """

    min_area_frac: float = 0.002
    max_area_frac: float = 0.9
    min_box_side: int = 8
    max_border_sides: int = 2
    min_frames_per_instance: int = 2
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    verify: str = "header"  # header: header + end marker checks; full: decode every frame
    groups_per_part: int = 16
    png_level: int = 1  # zlib level of the stored mask PNGs
    split: str = "train"  # ytvos split folder (train, valid); vipseg split list, ppr10k split (train, val, all)
    mask_threshold: int = 127  # soft masks (MVImgNet, Objaverse alpha): object where value > threshold
    ppr10k_images: str = "target_a"  # PPR10K photo folder: target_a|target_b|target_c|source (source_aug* in train/)

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_area_frac < self.max_area_frac <= 1.0:
            raise ValueError("need 0 <= min_area_frac < max_area_frac <= 1")
        if self.min_box_side < 1:
            raise ValueError("min_box_side must be >= 1")
        if not 0 <= self.max_border_sides <= 4:
            raise ValueError("max_border_sides must be in 0..4")
        if self.min_frames_per_instance < 1:
            raise ValueError("min_frames_per_instance must be >= 1")
        if self.groups_per_part < 1:
            raise ValueError("groups_per_part must be >= 1")
        if self.verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {VERIFY_MODES}")
        if not 0 <= self.png_level <= 9:
            raise ValueError("png_level must be in 0..9")
        if not 0 <= self.mask_threshold < 255:
            raise ValueError("mask_threshold must be in 0..254")
