"""Settings of ``imprint pairs``, and which stage each source feeds."""

from __future__ import annotations

from dataclasses import dataclass, field

from imprint.augment.affine import AffineConfig
from imprint.augment.color import ColorConfig
from imprint.ingest.sources import get_source
from imprint.quality.filters import FiltersConfig

IMAGE_FORMATS = ("jpeg", "png")


def source_kind(source: str) -> str:
    """How a source makes pairs (its definition's kind): ``multiview`` captures give stage-1 view pairs,
    ``video`` frames stage-2 frame pairs, ``image`` sources stage-2 self-pairs (PAPER.md, "Data")."""
    return get_source(source).kind


def source_frame_rate(source: str) -> float | None:
    """Frames per second that ``source``'s frame numbers count (its definition's), None where they count no
    time (views of a capture, photos of a group, a rate its owners do not document)."""
    return get_source(source).frame_rate


def default_stage(source: str) -> int:
    """The stage ``source`` feeds unless a recipe or ``--sources`` with one ``--stage`` says otherwise."""
    return get_source(source).stage


def _range(name: str, value: tuple[float, float], low: float) -> None:
    if len(value) != 2 or not low <= value[0] <= value[1]:
        raise ValueError(f"{name} must be a range [min, max] with {low} <= min <= max, got {value}")


@dataclass(frozen=True)
class PairsConfig:
    """Every knob of ``imprint pairs`` (``--config FILE``, ``--set key=value``, or a recipe's ``pairs:``).

    Stage 1 (the view window): two views of one instance with ``1 <= |n1 - n2| <= window`` over the
    capture's frame numbers (``frame_number``: MVImgNet's capture order, Objaverse's orbit; the paper's
    ``|v1 - v2| <= 7``), backgrounds removed (``I ⊗ M``, filled with ``fill``), each cropped square around
    its box (side = box side x a factor drawn from ``object_pad``). Stage 2 (a time gap): the object cut
    from one frame and the target another frame of the instance, ``min_gap_s <= |n1 - n2| / frame rate <=
    max_gap_s`` seconds (0 = no bound; a source without a frame rate has no time, so its frame pairs are
    any two different frames), or for image sources the image itself; the object is augmented ``P(T(.))``,
    the target cropped square around the target box (side = box side x ``target_context``) and resized to
    ``resolution``. ``pairs_per_instance`` caps the pairs drawn per instance.
    ``filters``: the quality filters and their thresholds (``imprint pairs --filters none|default|FILE``).
    """

    window: int = 7
    min_gap_s: float = 0.0  # stage 2 video pairs: seconds between the two frames, at least (0: any two frames)
    max_gap_s: float = 0.0  # and at most (0: no upper bound)
    pairs_per_instance: int = 16
    seed: int = 0
    resolution: int = 512
    object_resolution: int = 224
    fill: tuple[int, int, int] = (0, 0, 0)
    object_pad: tuple[float, float] = (1.05, 1.25)
    target_context: tuple[float, float] = (1.3, 2.0)
    min_target_area: float = 0.005  # fine mask / target area after the crop, below: vanished_after_crop
    min_object_keep: float = 0.25  # object area kept by T, below: degenerate_affine
    image_format: str = "jpeg"
    jpeg_quality: int = 95
    shard_rows: int = 256
    shard_bytes: int = 0  # > 0: rows per shard estimated from the first pairs' encoded size
    row_group_rows: int = 32
    augment: bool = True
    holdout: float = 0.0  # fraction of groups (by hash of source and group) written to stageN-holdout/
    affine: AffineConfig = field(default_factory=AffineConfig)
    color: ColorConfig = field(default_factory=ColorConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError("window must be >= 1")
        if self.min_gap_s < 0 or self.max_gap_s < 0 or (self.max_gap_s and self.max_gap_s < self.min_gap_s):
            raise ValueError("need 0 <= min_gap_s <= max_gap_s seconds (max_gap_s 0 = unbounded)")
        if self.pairs_per_instance < 1:
            raise ValueError("pairs_per_instance must be >= 1")
        if self.resolution < 8 or self.object_resolution < 8:
            raise ValueError("resolution and object_resolution must be >= 8")
        if self.resolution % 8:
            raise ValueError("resolution must be a multiple of 8 (the VAE's latent factor)")
        if len(self.fill) != 3 or not all(0 <= c <= 255 for c in self.fill):
            raise ValueError("fill must be three values in 0..255")
        _range("object_pad", self.object_pad, 1.0)
        _range("target_context", self.target_context, 1.0)
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {IMAGE_FORMATS}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError("jpeg_quality must be in 1..100")
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError("holdout must be a fraction in [0, 1)")
        if self.shard_rows < 1 or self.row_group_rows < 1 or self.shard_bytes < 0:
            raise ValueError("shard_rows and row_group_rows must be >= 1, shard_bytes >= 0")
