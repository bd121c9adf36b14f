"""Object masks for images that come without them, from a panoptic segmentation model in ``transformers``.

``--segmenter`` names a Hugging Face hub id or a local folder holding a model and its
image processor (``save_pretrained``). Recommended (native classes, no
``trust_remote_code``):

- ``facebook/mask2former-swin-large-coco-panoptic`` (Mask2Former; licence "other":
  read the model card before use);
- ``shi-labs/oneformer_coco_swin_large`` (OneFormer; MIT).

The model runs in panoptic mode; only *thing* segments are kept (COCO's 80 object
classes, the processor's ``thing_ids`` when it has them, or ``SegmentConfig.things``),
then each is filtered by area fraction, by the share of its largest connected
component (a scattered mask is not one object) and by how much of the image border it
covers (a region cut by the frame). Every drop is counted under its reason:
``not_thing``, ``area_too_small``, ``area_too_large``, ``fragmented``,
``cut_by_border``, ``too_many_objects``.

Output layout, per image ``<id>`` (a folder that appears whole: :func:`imprint.io.atomic_dir`,
so a kill never leaves a half-written one): ``masks/<id>/<k>.png`` (1-bit PNG, full image,
1 = object, ``k`` = 1, 2, …) and ``masks/<id>/objects.json`` (label, score, area per
object, and the drops).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import cv2
import numpy as np

from imprint.errors import ImprintError
from imprint.hub import load_pretrained
from imprint.io import atomic_dir
from imprint.masks import decode_mask_png, encode_mask_png

T = TypeVar("T")

RECOMMENDED_SEGMENTERS = {
    "facebook/mask2former-swin-large-coco-panoptic": "licence 'other' on the model card: read it before use",
    "shi-labs/oneformer_coco_swin_large": "MIT",
}

# COCO's 80 thing classes, as the COCO-panoptic checkpoints' id2label spell them (detectron2 names).
COCO_THINGS = frozenset((
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
))



class SegmenterError(ImprintError, RuntimeError):
    """The segmentation model cannot be loaded or used; the message says what to do."""


@dataclass(frozen=True)
class SegmentConfig:
    """How segments become object masks.

    ``threshold`` / ``mask_threshold`` / ``overlap_mask_area_threshold`` are the model's
    panoptic post-processing settings. Filters: ``min_area_frac`` / ``max_area_frac``
    (mask area over image area), ``min_component_share`` (largest 8-connected component
    over the mask's area), ``max_border_frac`` (share of the image's border pixels the
    mask covers), ``max_objects`` (the best-scoring ones are kept). ``things`` overrides
    the thing labels (names from the model's ``id2label``). ``threads`` sets torch's
    intra-op threads while the model runs (1: one task per CPU, as the executors run; several
    threads on a busy machine are many times slower; None leaves torch's setting);
    ``device`` defaults to CUDA when present.
    """

    threshold: float = 0.5
    mask_threshold: float = 0.5
    overlap_mask_area_threshold: float = 0.8
    min_area_frac: float = 0.01
    max_area_frac: float = 0.9
    min_component_share: float = 0.8
    max_border_frac: float = 0.25
    max_objects: int = 8
    things: tuple[str, ...] = ()
    threads: int | None = 1
    device: str | None = None

    def __post_init__(self) -> None:
        for name in ("threshold", "mask_threshold", "overlap_mask_area_threshold", "min_component_share",
                     "max_border_frac"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"segment {name} must be in [0, 1]")
        if not 0.0 <= self.min_area_frac < self.max_area_frac <= 1.0:
            raise ValueError("segment needs 0 <= min_area_frac < max_area_frac <= 1")
        if self.max_objects < 1:
            raise ValueError("segment max_objects must be >= 1")
        if self.threads is not None and self.threads < 1:
            raise ValueError("segment threads must be >= 1")
        if isinstance(self.things, str) or not all(isinstance(t, str) for t in self.things):
            raise ValueError("segment things must be a list of label names")


class Segment(NamedTuple):
    """One kept object: a boolean full-image mask, its label and the model's score (None for given masks)."""

    mask: np.ndarray
    label: str | None
    score: float | None


# --------------------------------------------------------------------------------------------- filters


def border_fraction(mask: np.ndarray) -> float:
    """Share of the image's border pixels (first/last rows and columns) that the mask covers."""
    h, w = mask.shape
    if h < 2 or w < 2:
        return float(mask.any())
    border = np.concatenate([mask[0, :], mask[-1, :], mask[1:-1, 0], mask[1:-1, -1]])
    return float(np.count_nonzero(border)) / border.size


def largest_component_share(mask: np.ndarray) -> float:
    """Area of the largest 8-connected component over the mask's area (1.0 = one piece; 0 for empty)."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return 0.0
    areas = stats[1:, cv2.CC_STAT_AREA]
    return float(areas.max()) / float(areas.sum())


def mask_filter_reason(mask: np.ndarray, cfg: SegmentConfig) -> str | None:
    """The reason that drops this (thing) mask, or None to keep it."""
    frac = float(np.count_nonzero(mask)) / mask.size
    if frac < cfg.min_area_frac:
        return "area_too_small"
    if frac > cfg.max_area_frac:
        return "area_too_large"
    if largest_component_share(mask) < cfg.min_component_share:
        return "fragmented"
    if border_fraction(mask) > cfg.max_border_frac:
        return "cut_by_border"
    return None


def filter_segments(candidates: Sequence[tuple[np.ndarray, str, float, bool]], cfg: SegmentConfig,
                    drops: Counter[str] | None = None) -> list[Segment]:
    """Keep the thing masks that pass the filters, best score first, at most ``max_objects``.

    ``candidates`` are ``(mask, label, score, is_thing)``; every drop is counted in ``drops``.
    """
    drops = drops if drops is not None else Counter()
    kept: list[Segment] = []
    for mask, label, score, is_thing in candidates:
        if not is_thing:
            drops["not_thing"] += 1
            continue
        reason = mask_filter_reason(mask, cfg)
        if reason is not None:
            drops[reason] += 1
            continue
        kept.append(Segment(mask, label, float(score)))
    kept.sort(key=lambda s: -(s.score or 0.0))
    if len(kept) > cfg.max_objects:
        drops["too_many_objects"] += len(kept) - cfg.max_objects
        kept = kept[:cfg.max_objects]
    return kept


# --------------------------------------------------------------------------------------------- model


def _normalise(label: str) -> str:
    return label.strip().lower().replace("_", " ")


def thing_ids(id2label: dict[int, str], things: Sequence[str] = (), processor: Any = None) -> set[int]:
    """Which label ids are things: ``things`` names, else the processor's ``thing_ids``, else COCO's 80 names."""
    labels = {int(k): _normalise(v) for k, v in id2label.items()}
    if things:
        wanted = {_normalise(t) for t in things}
        unknown = wanted - set(labels.values())
        if unknown:
            raise SegmenterError(f"segment things {sorted(unknown)} are not labels of this model; "
                                 f"its labels: {', '.join(sorted(set(labels.values())))}")
        return {i for i, name in labels.items() if name in wanted}
    meta = getattr(processor, "metadata", None)
    if isinstance(meta, dict) and meta.get("thing_ids"):
        return {int(i) for i in meta["thing_ids"]}
    return {i for i, name in labels.items() if name in COCO_THINGS}


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load-time warnings and progress bars, restoring the caller's settings after."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _pretrained(load: Callable[..., T], name: str) -> T:
    """``load(name)`` through :func:`imprint.hub.load_pretrained` (a model that cannot be had is one clear
    :class:`~imprint.hub.ModelUnavailable`), with transformers' load-time chatter silenced; a folder or
    config transformers cannot use is a :class:`SegmenterError`."""
    try:
        with _quiet_transformers():
            return load_pretrained(load, name, "the segmenter")
    except ValueError as exc:
        raise SegmenterError(f"cannot load segmenter {name!r}: {type(exc).__name__}: {exc}; check the hub id or "
                             f"the folder (config.json, the weights and preprocessor_config.json). Recommended: "
                             + ", ".join(f"{k} ({v})" for k, v in RECOMMENDED_SEGMENTERS.items())) from None


def check_segmenter(name_or_path: str, cfg: SegmentConfig | None = None) -> dict[str, Any]:
    """Cheap check before a job: the config loads, is a universal segmentation model, and has thing labels."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_UNIVERSAL_SEGMENTATION_MAPPING_NAMES

    cfg = cfg or SegmentConfig()
    config = _pretrained(AutoConfig.from_pretrained, name_or_path)
    if config.model_type not in MODEL_FOR_UNIVERSAL_SEGMENTATION_MAPPING_NAMES:
        raise SegmenterError(
            f"{name_or_path!r} is a {config.model_type!r} model, not a universal (panoptic) segmentation model; "
            f"use one of {', '.join(sorted(MODEL_FOR_UNIVERSAL_SEGMENTATION_MAPPING_NAMES))}, e.g. "
            f"{next(iter(RECOMMENDED_SEGMENTERS))}")
    processor = None
    if not cfg.things and config.model_type == "oneformer":
        processor = _load_processor(name_or_path, config.model_type)
    things = thing_ids(config.id2label, cfg.things, processor)
    if not things:
        raise SegmenterError(f"cannot tell things from stuff for {name_or_path!r}: none of its labels is a COCO "
                             f"thing class; name them with segment things=[...] (labels: "
                             f"{', '.join(list(config.id2label.values())[:20])}, …)")
    return {"model_type": config.model_type, "labels": len(config.id2label),
            "things": sorted(config.id2label[i] for i in things)}


def _load_processor(name_or_path: str, model_type: str) -> Any:
    from transformers import AutoImageProcessor, AutoProcessor

    if model_type == "oneformer":  # its processor also tokenises the task text ("the task is panoptic")
        return _pretrained(AutoProcessor.from_pretrained, name_or_path)
    return _pretrained(AutoImageProcessor.from_pretrained, name_or_path)


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` for the block only (the process's setting is restored)."""
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def to_rgb_array(image: Any) -> np.ndarray:
    """A PIL image or an array (HxW, HxWx3, HxWx4) as a uint8 HxWx3 RGB array."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {arr.dtype}")
    return arr[..., :3]


class Segmenter:
    """A panoptic model + its processor, turning an image into filtered object masks."""

    def __init__(self, model: Any, processor: Any, cfg: SegmentConfig, name: str = "") -> None:
        self.model = model
        self.processor = processor
        self.cfg = cfg
        self.name = name
        self.model_type = model.config.model_type
        self.id2label = {int(k): v for k, v in model.config.id2label.items()}
        self.things = thing_ids(self.id2label, cfg.things, processor)
        if not self.things:
            raise SegmenterError(f"cannot tell things from stuff for {name!r}: none of its labels is a COCO thing "
                                 f"class; name them with segment things=[...]")
        self.stuff = set(self.id2label) - self.things

    @classmethod
    def from_pretrained(cls, name_or_path: str, cfg: SegmentConfig | None = None,
                        device: str | None = None) -> "Segmenter":
        """Load a hub id (from the local cache when ``HF_HUB_OFFLINE=1``) or a saved folder."""
        import torch
        from transformers import AutoConfig, AutoModelForUniversalSegmentation

        cfg = cfg or SegmentConfig()
        device = device or cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        config = _pretrained(AutoConfig.from_pretrained, name_or_path)
        model = _pretrained(AutoModelForUniversalSegmentation.from_pretrained, name_or_path)
        processor = _load_processor(name_or_path, config.model_type)
        model.eval().to(device)
        return cls(model, processor, cfg, name_or_path)

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def panoptic(self, image: Any) -> list[tuple[np.ndarray, str, float, bool]]:
        """Every panoptic segment of ``image``: ``(bool mask HxW, label, score, is_thing)``."""
        import torch

        rgb = to_rgb_array(image)
        h, w = rgb.shape[:2]
        if self.model_type == "oneformer":
            inputs = self.processor(images=[rgb], task_inputs=["panoptic"], return_tensors="pt")
        else:
            inputs = self.processor(images=[rgb], return_tensors="pt")
        inputs = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        with _torch_threads(self.cfg.threads), torch.inference_mode():
            outputs = self.model(**inputs)
            post = self.processor.post_process_panoptic_segmentation
            result = post(outputs, threshold=self.cfg.threshold, mask_threshold=self.cfg.mask_threshold,
                          overlap_mask_area_threshold=self.cfg.overlap_mask_area_threshold,
                          label_ids_to_fuse=set(self.stuff), target_sizes=[(h, w)])[0]
        seg = result["segmentation"]
        seg = seg.cpu().numpy() if hasattr(seg, "cpu") else np.asarray(seg)
        out = []
        for info in result["segments_info"]:
            label_id = int(info["label_id"])
            out.append((seg == info["id"], self.id2label.get(label_id, str(label_id)), float(info["score"]),
                        label_id in self.things))
        return out

    def segment(self, image: Any, drops: Counter[str] | None = None) -> list[Segment]:
        """The kept objects of ``image`` (best score first); drops are counted in ``drops`` by reason."""
        return filter_segments(self.panoptic(image), self.cfg, drops)


@functools.lru_cache(maxsize=2)
def load_segmenter(name_or_path: str, cfg: SegmentConfig) -> Segmenter:
    """:meth:`Segmenter.from_pretrained`, once per process (Ray workers reuse the model across tasks)."""
    return Segmenter.from_pretrained(name_or_path, cfg)


# --------------------------------------------------------------------------------------------- files


OBJECTS_FILE = "objects.json"


def write_objects(masks_dir: Path, item_id: str, segments: Sequence[Segment], info: dict[str, Any],
                  drops: Mapping[str, int] | None = None, instance_ids: Sequence[str] | None = None,
                  png_level: int = 6) -> Path:
    """Write ``masks_dir/<item_id>/<k>.png`` and ``objects.json`` into a folder that appears whole."""
    final = Path(masks_dir) / item_id
    objects = []
    with atomic_dir(final) as tmp:
        for k, seg in enumerate(segments, 1):
            mask = np.asarray(seg.mask, dtype=bool)
            (tmp / f"{k}.png").write_bytes(encode_mask_png(mask, png_level))
            objects.append({"k": k, "file": f"{k}.png",
                            "instance_id": str(instance_ids[k - 1]) if instance_ids else str(k),
                            "label": seg.label, "score": None if seg.score is None else round(float(seg.score), 6),
                            "area_frac": round(float(np.count_nonzero(mask)) / mask.size, 6)})
        height, width = (segments[0].mask.shape if segments else (info.get("height"), info.get("width")))
        doc = {**info, "width": width, "height": height, "objects": objects,
               "dropped": dict(sorted(Counter(drops or {}).items()))}
        (tmp / OBJECTS_FILE).write_text(json.dumps(doc, indent=1))
    return final / OBJECTS_FILE


def read_objects(path: str | Path) -> dict[str, Any]:
    """An ``objects.json`` as a dict (raises OSError / ValueError when missing or broken)."""
    return json.loads(Path(path).read_text())


def read_object_mask(objects_path: str | Path, obj: dict[str, Any]) -> np.ndarray:
    """One object's boolean mask from its PNG beside ``objects.json``."""
    return decode_mask_png((Path(objects_path).parent / obj["file"]).read_bytes())


# --------------------------------------------------------------------------------------------- tiny model


TINY_LABELS = {0: "person", 1: "dog", 2: "car", 3: "sky-other-merged", 4: "wall-other-merged"}


def save_tiny_mask2former(path: str | Path, seed: int = 0) -> Path:
    """Save a tiny random Mask2Former (~1.3 M params) and its processor to ``path``, for tests and benchmarks.

    Its masks mean nothing; its class head is sharpened (and "no object" suppressed) and
    its mask head scaled so that it outputs a few blob-shaped segments of both thing
    (person, dog, car) and stuff labels, which exercises every code path.
    """
    import torch
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig

    with _quiet_transformers(), torch.random.fork_rng(devices=[]):  # seeded, leaving the caller's RNG as it was
        from transformers import Mask2FormerImageProcessor

        torch.manual_seed(seed)
        swin: dict[str, Any] = {"image_size": 64, "patch_size": 4, "embed_dim": 32, "depths": [1] * 4,
                                "num_heads": [1] * 4, "window_size": 4,
                                "out_features": ["stage1", "stage2", "stage3", "stage4"]}
        backbone = SwinConfig(**swin)
        config = Mask2FormerConfig(
            backbone_config=backbone, feature_size=32, mask_feature_size=32, hidden_dim=32,
            encoder_feedforward_dim=64, dim_feedforward=64, encoder_layers=1, decoder_layers=2,
            num_attention_heads=2, num_queries=8, id2label=dict(TINY_LABELS),
            label2id={v: k for k, v in TINY_LABELS.items()})
        model = Mask2FormerForUniversalSegmentation(config).eval()
        params = dict(model.named_parameters())
        with torch.no_grad():
            model.class_predictor.weight.mul_(30.0)
            model.class_predictor.bias[-1] = -50.0  # never "no object"
            params["model.transformer_module.decoder.mask_predictor.mask_embedder.2.0.weight"].mul_(200.0)
        processor = Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 128}, size_divisor=32)
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(path)
        processor.save_pretrained(path)
    return path
