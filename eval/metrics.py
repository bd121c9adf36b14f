"""Evaluation metrics for generative object compositing: identity, realism, background and shape.

Every metric is a small function whose formula is written in its docstring, so it can be checked by hand.

Images
    Every image argument accepts a ``PIL.Image``, a ``uint8`` numpy array ``H x W x 3`` (or ``H x W``,
    or ``H x W x 4``: alpha dropped) or a ``uint8`` torch tensor ``3 x H x W`` / ``H x W x 3``
    (:func:`to_rgb_array`). Masks are 2-D arrays or single-channel images, binarised by the one rule of
    :func:`imprint.geometry.binarize` (bool, 0/1 and 0/255 masks as they are); for a
    compositing sample "the mask" is the editable region handed to the generator (the guidance mask at that
    sample's level, level 0 being the object's box).

Identity (higher is better except DreamSim)
    The generated object is cut out of the output by its box (:func:`crop_to_box`) and compared with the
    reference object with its background removed (:func:`reference_object`), the protocol of the IMPRINT
    paper and Paint-by-Example. :class:`FeatureBackbone` embeds both; :func:`identity_scores` gives the cosine
    similarity of the L2-normalised embeddings per sample. DINO score: a DINO/DINOv2 ViT's CLS token
    (default :data:`DEFAULT_DINO_MODEL`); CLIP score: ``CLIPModel.get_image_features`` (default
    :data:`DEFAULT_CLIP_MODEL`). DreamSim (:func:`dreamsim_scores`) is a distance, computed only where the
    optional ``dreamsim`` package is installed.

Realism (lower is better)
    :func:`fid` / :func:`frechet_distance` and :func:`kid` on features of a :class:`FeatureBackbone`. On
    DINOv2 features the Fréchet distance is FD-DINOv2 (Stein et al., 2023); the classic Inception FID (which
    needs the Inception weights) is :func:`fid` on Inception pool features. With fewer samples than feature
    dimensions the covariances are singular and FID is strongly biased upwards: compare FID values only
    between runs with the same number of samples.

Background preservation
    :func:`background_metrics`: PSNR, SSIM and L1 computed only outside the editable region.

Shape adherence
    :func:`shape_iou`: IoU of an estimated foreground (pixels that changed) with the guidance mask.

Nothing here imports transformers (or any optional package) at import time.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Sequence, Union, cast

import numpy as np
import torch
from PIL import Image

from imprint.geometry import binarize, remove_background, to_rgb
from imprint.hub import load_pretrained
from imprint.masks import mask_bbox

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel

ImageLike = Union[Image.Image, np.ndarray, torch.Tensor]
MaskLike = Union[Image.Image, np.ndarray, torch.Tensor]
Box = Sequence[int]

DEFAULT_DINO_MODEL = "facebook/dinov2-small"
"""DINO score backbone (the CLS token). DreamBooth's original DINO score used ``facebook/dino-vits16``, which this
class loads the same way; note that IMPRINT's own identity encoder is DINOv2, which may favour it on a DINOv2
score, so report the DINO-v1 score too where it matters."""
DEFAULT_CLIP_MODEL = "openai/clip-vit-large-patch14"
"""CLIP score backbone (``get_image_features``: the projected, pooled CLS embedding)."""
PSNR_CAP_DB = 100.0
"""PSNR is capped at this value (reached when the two images are identical), so that it stays finite and JSON-safe;
:func:`background_metrics` also reports ``identical`` for that case."""
DEFAULT_SHAPE_THRESHOLD = 24
"""Default colour difference (0-255, max over R, G, B) above which a pixel counts as changed in :func:`shape_iou`."""

Pooling = Literal["cls", "pooled", "mean"]


# --------------------------------------------------------------------------------------------------- conversions


def to_rgb_array(image: ImageLike) -> np.ndarray:
    """An image as a contiguous ``H x W x 3`` uint8 array (see the module docstring for what is accepted)."""
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8:
            raise TypeError(f"image tensors must be uint8 (0-255), got {image.dtype}")
        arr = image.detach().cpu().numpy()
        if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
            arr = arr.transpose(1, 2, 0)  # C x H x W -> H x W x C
        return to_rgb(arr)
    return to_rgb(image)


def to_mask(mask: MaskLike) -> np.ndarray:
    """A mask as a 2-D boolean array (:func:`imprint.geometry.binarize`). A 3-channel mask uses its first channel."""
    if isinstance(mask, Image.Image):
        arr = np.asarray(mask.convert("L"))
    elif isinstance(mask, torch.Tensor):
        arr = mask.detach().cpu().numpy()
    elif isinstance(mask, np.ndarray):
        arr = mask
    else:
        raise TypeError(f"expected a mask as PIL image, numpy array or torch tensor, got {type(mask).__name__}")
    shape = arr.shape
    arr = np.squeeze(arr)
    if arr.ndim == 3:
        arr = arr[..., 0] if arr.shape[-1] in (3, 4) else arr[0]
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {tuple(shape)}")
    return binarize(arr)


def _same_size(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"{name_a} is {a.shape[1]}x{a.shape[0]} but {name_b} is {b.shape[1]}x{b.shape[0]} (W x H)")


# --------------------------------------------------------------------------------------------------- crops


def crop_to_box(image: ImageLike, box: Box, pad: int = 0, square: bool = False) -> np.ndarray:
    """The pixels of ``box = [x0, y0, x1, y1)``, grown by ``pad`` pixels on every side, clipped to the image.

    With ``square`` the shorter side is grown (evenly, then clipped) to the longer one before clipping, as
    reference crops usually are. Returns an ``h x w x 3`` uint8 array.
    """
    arr = to_rgb_array(image)
    h, w = arr.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"empty box {list(box)}: need x0 < x1 and y0 < y1")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    x0, y0, x1, y1 = x0 - pad, y0 - pad, x1 + pad, y1 + pad
    if square:
        side = max(x1 - x0, y1 - y0)
        gx, gy = side - (x1 - x0), side - (y1 - y0)
        x0, x1 = x0 - gx // 2, x1 + gx - gx // 2
        y0, y1 = y0 - gy // 2, y1 + gy - gy // 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {list(box)} lies outside the {w}x{h} image")
    return arr[y0:y1, x0:x1].copy()


def mask_box(mask: MaskLike) -> tuple[int, int, int, int]:
    """``[x0, y0, x1, y1)`` of the mask's pixels (:func:`imprint.masks.mask_bbox`; ValueError when empty)."""
    box = mask_bbox(to_mask(mask))
    if box is None:
        raise ValueError("the mask is empty")
    return box


def reference_object(image: ImageLike, mask: MaskLike, fill: int | Sequence[int] = 0, pad: int = 0,
                     square: bool = False) -> np.ndarray:
    """The reference as the identity metrics see it: background removed, then cropped to the mask's box."""
    arr, m = to_rgb_array(image), to_mask(mask)
    return crop_to_box(remove_background(arr, m, fill), mask_box(m), pad=pad, square=square)


# --------------------------------------------------------------------------------------------------- backbones


def _transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


def _load_image_processor(name_or_path: str | Path, what: str) -> Any:
    """The checkpoint's image processor, with the PIL backend (same pixels with or without torchvision)."""
    from transformers import AutoImageProcessor

    backend: dict[str, Any] = {"backend": "pil"} if _transformers_major() >= 5 else {"use_fast": False}
    return load_pretrained(AutoImageProcessor.from_pretrained, name_or_path, f"the image processor of {what}",
                           **backend)


class FeatureBackbone:
    """An image-embedding model and its image processor: ``embed(images) -> N x D`` float32 (CPU) features.

    Two kinds, both loaded with ``from_pretrained`` from a hub id or a local folder holding the model and
    its ``preprocessor_config.json``:

    - ``"dino"``: any ViT that ``AutoModel`` loads (DINOv2, DINO ViT). ``pooling`` chooses the embedding:
      ``"cls"`` (default, the DINO-score convention) is the final-layer-normalised CLS token
      ``last_hidden_state[:, 0]``; ``"pooled"`` is the model's ``pooler_output`` (the same tensor for
      DINOv2; a trained tanh head for ``ViTModel``); ``"mean"`` is the mean of the patch tokens (register
      tokens excluded).
    - ``"clip"``: ``CLIPModel.get_image_features``, the projected pooled embedding (``pooling`` must stay
      ``"cls"``).

    Images are resized, cropped and normalised by the checkpoint's own processor. The model runs in eval
    mode without gradients, ``batch_size`` images at a time.
    """

    def __init__(self, model: "PreTrainedModel", processor: Any, kind: Literal["dino", "clip"],
                 pooling: Pooling = "cls", batch_size: int = 32, name: str = "") -> None:
        if kind not in ("dino", "clip"):
            raise ValueError(f"kind must be 'dino' or 'clip', got {kind!r}")
        if pooling not in ("cls", "pooled", "mean"):
            raise ValueError(f"pooling must be one of cls, pooled, mean; got {pooling!r}")
        if kind == "clip" and pooling != "cls":
            raise ValueError("a CLIP backbone always embeds with get_image_features; leave pooling='cls'")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        self.processor = processor
        self.kind = kind
        self.pooling = pooling
        self.batch_size = batch_size
        self.name = name
        self._dim: int | None = None

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, kind: Literal["auto", "dino", "clip"] = "auto",
                        pooling: Pooling = "cls", device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32, batch_size: int = 32) -> "FeatureBackbone":
        """Load a backbone by hub id or folder; ``kind="auto"`` is ``"clip"`` for a CLIP config, else ``"dino"``.

        A backbone that cannot be had (offline and not cached, a mistyped id, an incomplete folder) raises
        :class:`imprint.hub.ModelUnavailable`, one line that says what to do.
        """
        from transformers import AutoConfig, AutoModel, CLIPModel

        what = "the metric backbone" if kind == "auto" else f"the {kind.upper()} metric backbone"
        config = load_pretrained(AutoConfig.from_pretrained, name_or_path, what)
        load: dict[str, Any] = {"dtype" if _transformers_major() >= 5 else "torch_dtype": dtype}
        if kind == "auto":
            kind = "clip" if config.model_type == "clip" else "dino"
        if kind == "clip":
            if config.model_type != "clip":
                raise ValueError(f"{name_or_path} is a {config.model_type!r} model, not a CLIP model")
            model = load_pretrained(CLIPModel.from_pretrained, name_or_path, what, **load)
        elif kind == "dino":
            if config.model_type == "clip":
                raise ValueError(f"{name_or_path} is a CLIP model: load it with kind='clip'")
            model = load_pretrained(AutoModel.from_pretrained, name_or_path, what, **load)
        else:
            raise ValueError(f"kind must be 'auto', 'dino' or 'clip', got {kind!r}")
        model = cast(Any, model).to(device)  # transformers' typing of the wrapped .to() confuses mypy
        return cls(model, _load_image_processor(name_or_path, what), kind, pooling, batch_size, name=str(name_or_path))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _pixels(self, images: list[np.ndarray]) -> torch.Tensor:
        pil = [Image.fromarray(a) for a in images]
        pixels = self.processor(images=pil, return_tensors="pt")["pixel_values"]
        return pixels.to(self.device, next(self.model.parameters()).dtype)

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.kind == "clip":
            out = self.model.get_image_features(pixel_values=pixels)
            # transformers 4.x returns the tensor, 5.x a BaseModelOutputWithPooling (projected pooler_output).
            return out if isinstance(out, torch.Tensor) else out.pooler_output
        out = self.model(pixel_values=pixels)
        if self.pooling == "pooled":
            if getattr(out, "pooler_output", None) is None:
                raise ValueError(f"{self.name or type(self.model).__name__} has no pooler_output: use pooling='cls'")
            return out.pooler_output
        tokens = out.last_hidden_state
        if self.pooling == "cls":
            return tokens[:, 0]
        registers = int(getattr(self.model.config, "num_register_tokens", 0) or 0)
        return tokens[:, 1 + registers:].mean(dim=1)

    @torch.no_grad()
    def embed(self, images: Sequence[ImageLike] | torch.Tensor) -> torch.Tensor:
        """Embed images: a list of images, or a uint8 tensor ``N x 3 x H x W`` (or ``N x H x W x 3``)."""
        if isinstance(images, torch.Tensor):
            if images.ndim != 4:
                raise ValueError(f"an image batch tensor must be 4-D, got shape {tuple(images.shape)}")
            images = list(images.unbind(0))
        arrays = [to_rgb_array(im) for im in images]
        if not arrays:
            raise ValueError("no images to embed")
        chunks = [self._forward(self._pixels(arrays[i:i + self.batch_size])).float().cpu()
                  for i in range(0, len(arrays), self.batch_size)]
        return torch.cat(chunks)


# --------------------------------------------------------------------------------------------------- identity


def _as_2d_float64(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    arr = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a vector or an N x D matrix, got shape {arr.shape}")
    return arr


def cosine_similarity(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, eps: float = 1e-12
                      ) -> np.ndarray:
    """Row-wise ``<a/|a|, b/|b|>`` for two ``N x D`` (or two ``D``) embeddings; returns shape ``(N,)``."""
    x, y = _as_2d_float64(a, "a"), _as_2d_float64(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"embeddings must have the same shape, got {x.shape} and {y.shape}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)
    y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), eps)
    return np.sum(x * y, axis=1)


def identity_scores(generated_crops: Sequence[ImageLike], references: Sequence[ImageLike],
                    backbone: FeatureBackbone) -> np.ndarray:
    """Per sample: cosine similarity of the backbone's embeddings of ``generated_crops[i]`` and ``references[i]``.

    ``generated_crops`` are the outputs cropped to the object's box (:func:`crop_to_box`), ``references`` the
    reference objects with their background removed (:func:`reference_object`). DINO or CLIP score,
    depending on the backbone; higher is better (1 = same embedding direction). The checkpoint's processor
    resizes and centre-crops (DINOv2: short side 256, crop 224), which cuts the ends off an elongated crop:
    pass square crops (``square=True``) to keep the whole object.
    """
    if len(generated_crops) != len(references):
        raise ValueError(f"{len(generated_crops)} generated crops but {len(references)} references")
    if not len(references):
        return np.zeros(0, dtype=np.float64)
    return cosine_similarity(backbone.embed(list(generated_crops)), backbone.embed(list(references)))


def dreamsim_available() -> bool:
    """Whether the optional ``dreamsim`` package is importable."""
    try:
        importlib.import_module("dreamsim")
    except ImportError:
        return False
    return True


def dreamsim_scores(generated_crops: Sequence[ImageLike], references: Sequence[ImageLike],
                    device: str | torch.device = "cpu", cache_dir: str | Path | None = None,
                    batch_size: int = 16) -> np.ndarray | None:
    """Per-sample DreamSim distance (lower is better), or ``None`` when ``dreamsim`` is not installed.

    Uses ``dreamsim.dreamsim(pretrained=True)`` (its weights must be in ``cache_dir`` or downloadable);
    ``None`` means "not computed", for the report to say so. Install with ``pip install dreamsim``.
    """
    if len(generated_crops) != len(references):
        raise ValueError(f"{len(generated_crops)} generated crops but {len(references)} references")
    if not dreamsim_available():
        return None
    from dreamsim import dreamsim

    kwargs: dict[str, Any] = {"pretrained": True, "device": str(device)}
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    model, preprocess = dreamsim(**kwargs)
    scores: list[np.ndarray] = []
    with torch.no_grad():
        for i in range(0, len(references), batch_size):
            a = torch.cat([preprocess(Image.fromarray(to_rgb_array(im))) for im in generated_crops[i:i + batch_size]])
            b = torch.cat([preprocess(Image.fromarray(to_rgb_array(im))) for im in references[i:i + batch_size]])
            scores.append(np.atleast_1d(model(a.to(device), b.to(device)).detach().cpu().double().numpy()))
    return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float64)


# --------------------------------------------------------------------------------------------------- realism


def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``mu`` (D,) and covariance ``sigma`` (D x D, unbiased: divided by N - 1) of ``N x D`` features."""
    x = _as_2d_float64(features, "features")
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {x.shape[0]}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6, imaginary_atol: float = 1e-3) -> float:
    """Fréchet distance of two Gaussians: ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``.

    As in the reference FID code (pytorch-fid): when ``sqrtm(S1 S2)`` is not finite (singular product),
    ``eps`` is added to both diagonals and the root is taken again; a numerically complex result has its
    imaginary part dropped when the diagonal's imaginary parts are within ``imaginary_atol``, and is an error
    otherwise.
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shapes do not match: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / {sigma2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=imaginary_atol):
            raise ValueError(f"sqrtm(S1 S2) has an imaginary component of {np.max(np.abs(covmean.imag)):.3g}: "
                             "the covariances are too ill-conditioned (use more samples or fewer dimensions)")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid(features_a: np.ndarray | torch.Tensor, features_b: np.ndarray | torch.Tensor) -> float:
    """Fréchet distance between the Gaussians fitted to two ``N x D`` feature sets (lower is better).

    On Inception pool features this is FID; on DINOv2 features it is FD-DINOv2.
    """
    mu1, s1 = feature_statistics(features_a)
    mu2, s2 = feature_statistics(features_b)
    if mu1.shape != mu2.shape:
        raise ValueError(f"feature widths differ: {mu1.shape[0]} and {mu2.shape[0]}")
    return frechet_distance(mu1, s1, mu2, s2)


@dataclass(frozen=True)
class KIDResult:
    """KID as mean and standard deviation (ddof=0) of the unbiased MMD² over ``subsets`` random subsets."""

    mean: float
    std: float
    subsets: int
    subset_size: int

    def as_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "std": self.std, "subsets": self.subsets, "subset_size": self.subset_size}


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                      coef0: float = 1.0) -> np.ndarray:
    """``k(x, y) = (gamma <x, y> + coef0)^degree`` for all row pairs; ``gamma`` defaults to ``1 / D``."""
    g = 1.0 / x.shape[1] if gamma is None else gamma
    return (g * (x @ y.T) + coef0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 3) -> float:
    """Unbiased MMD² with the polynomial kernel, for two sets of ``m`` rows each.

    ``[sum_{i!=j} k(x_i, x_j) + sum_{i!=j} k(y_i, y_j)] / (m (m - 1)) - 2 sum_{i,j} k(x_i, y_j) / m^2``.
    """
    m = x.shape[0]
    if y.shape[0] != m or m < 2:
        raise ValueError(f"need two sets of the same size >= 2, got {x.shape[0]} and {y.shape[0]}")
    kxx, kyy, kxy = polynomial_kernel(x, x, degree), polynomial_kernel(y, y, degree), polynomial_kernel(x, y, degree)
    same = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(same - 2.0 * kxy.sum() / (m * m))


def kid(features_a: np.ndarray | torch.Tensor, features_b: np.ndarray | torch.Tensor, subsets: int = 100,
        subset_size: int = 1000, degree: int = 3, seed: int = 0) -> KIDResult:
    """Kernel Inception Distance (Bińkowski et al., 2018): :func:`mmd2_unbiased` over random subsets.

    Each of ``subsets`` rounds draws ``min(subset_size, N_a, N_b)`` rows of each set without replacement
    (seeded), as torchmetrics and torch-fidelity do. Lower is better; the estimate is unbiased, so two sets
    from one distribution give values around 0, slightly negative ones included.
    """
    a, b = _as_2d_float64(features_a, "features_a"), _as_2d_float64(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature widths differ: {a.shape[1]} and {b.shape[1]}")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {a.shape[0]} and {b.shape[0]}")
    rng = np.random.default_rng(seed)
    values = np.array([mmd2_unbiased(a[rng.choice(a.shape[0], m, replace=False)],
                                     b[rng.choice(b.shape[0], m, replace=False)], degree) for _ in range(subsets)])
    return KIDResult(float(values.mean()), float(values.std()), subsets, m)


# --------------------------------------------------------------------------------------------------- background


def _ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM (Wang et al. 2004: gaussian window sigma 1.5, K1 0.01, K2 0.03), averaged over channels."""
    from skimage.metrics import structural_similarity

    if min(a.shape[:2]) < 11:
        raise ValueError(f"SSIM needs images of at least 11 x 11 pixels (its window), got {a.shape[1]}x{a.shape[0]}")
    _, smap = structural_similarity(a, b, channel_axis=2, data_range=255, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, full=True)
    return smap.mean(axis=2)


def background_metrics(output: ImageLike, background: ImageLike, mask: MaskLike, exclude_border: int = 0
                       ) -> dict[str, float | bool | int]:
    """PSNR, SSIM and L1 between ``output`` and ``background``, over the pixels OUTSIDE ``mask`` only.

    With ``O`` the outside pixels (``~mask``, grown inwards by ``exclude_border`` pixels of dilation of the
    mask, to ignore a feathered seam) and values in 0-255:

    - ``l1`` = mean over O and channels of ``|output - background| / 255`` (0 is perfect);
    - ``psnr`` = ``10 log10(255^2 / MSE)`` with MSE over O and channels, capped at :data:`PSNR_CAP_DB`
      (the value when identical, keeping JSON finite);
    - ``ssim`` = the SSIM map (:func:`_ssim_map`) averaged over O, computed after the output's inside pixels
      are replaced by the background's, so that windows straddling the mask's edge compare outside pixels
      only (identical outside pixels give exactly 1);
    - ``identical`` = no pixel of O differs; ``n_pixels`` = ``|O|``.
    """
    out, bg = to_rgb_array(output), to_rgb_array(background)
    m = to_mask(mask)
    _same_size("output", out, "background", bg)
    _same_size("output", out, "mask", m)
    if exclude_border > 0:
        import cv2

        kernel = np.ones((2 * exclude_border + 1, 2 * exclude_border + 1), np.uint8)
        m = cv2.dilate(m.astype(np.uint8), kernel) > 0
    outside = ~m
    n = int(outside.sum())
    if n == 0:
        raise ValueError("the mask covers the whole image: there is no background to compare")
    diff = out[outside].astype(np.float64) - bg[outside].astype(np.float64)
    mse = float(np.mean(diff ** 2))
    psnr = PSNR_CAP_DB if mse == 0 else min(PSNR_CAP_DB, 10.0 * math.log10(255.0 ** 2 / mse))
    restricted = np.where(outside[:, :, None], out, bg)  # inside pixels equal in both: only O can differ
    ssim = float(_ssim_map(restricted, bg)[outside].mean())
    return {"psnr": psnr, "ssim": ssim, "l1": float(np.mean(np.abs(diff)) / 255.0), "identical": mse == 0,
            "n_pixels": n}


# --------------------------------------------------------------------------------------------------- shape


def changed_pixels(output: ImageLike, background: ImageLike, threshold: int = DEFAULT_SHAPE_THRESHOLD,
                   region: MaskLike | None = None) -> np.ndarray:
    """Pixels (inside ``region``, if given) where ``max_c |output - background| > threshold`` (0-255)."""
    out, bg = to_rgb_array(output), to_rgb_array(background)
    _same_size("output", out, "background", bg)
    changed = np.abs(out.astype(np.int16) - bg.astype(np.int16)).max(axis=2) > threshold
    if region is not None:
        r = to_mask(region)
        _same_size("output", out, "region", r)
        changed &= r
    return changed


def iou(a: MaskLike, b: MaskLike) -> float:
    """``|a ∩ b| / |a ∪ b|`` of two masks; 1.0 when both are empty."""
    x, y = to_mask(a), to_mask(b)
    if x.shape != y.shape:
        raise ValueError(f"masks differ in shape: {x.shape} and {y.shape}")
    union = int((x | y).sum())
    return 1.0 if union == 0 else int((x & y).sum()) / union


def shape_iou(output: ImageLike, background: ImageLike, guidance_mask: MaskLike,
              threshold: int = DEFAULT_SHAPE_THRESHOLD, region: MaskLike | None = None) -> float:
    """Shape adherence: IoU of the generated object's estimated foreground with the guidance mask.

    A proxy, without a segmenter: the foreground is every pixel of the editable ``region`` whose colour
    differs from the original background by more than ``threshold`` (:func:`changed_pixels`). ``region``
    defaults to the guidance mask's bounding box (the level-0 mask, which contains every finer level), so an
    object spilling out of a fine mask lowers the IoU as well as one that does not fill it. The proxy
    counts repainted background as object and misses object pixels that happen to match the background; it
    is meant to compare models and mask levels on the same samples, not as an absolute segmentation score.
    """
    g = to_mask(guidance_mask)
    if not g.any():
        raise ValueError("the guidance mask is empty")
    if region is None:
        x0, y0, x1, y1 = mask_box(g)
        region = np.zeros_like(g)
        region[y0:y1, x0:x1] = True
    return iou(changed_pixels(output, background, threshold, region), g)


# --------------------------------------------------------------------------------------------------- summaries


def summarise(values: Iterable[float | int | None]) -> dict[str, float | int | None]:
    """``{mean, std, median, n}`` of the values that are not None (std with ddof=0); Nones when none are left.

    Non-finite values are an error: metrics are expected to be finite (PSNR is capped for that reason).
    """
    kept = np.array([float(v) for v in values if v is not None], dtype=np.float64)
    if not np.isfinite(kept).all():
        raise ValueError("summarise() got a non-finite value (NaN or inf)")
    if kept.size == 0:
        return {"mean": None, "std": None, "median": None, "n": 0}
    return {"mean": float(kept.mean()), "std": float(kept.std()), "median": float(np.median(kept)),
            "n": int(kept.size)}
