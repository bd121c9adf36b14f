"""Training settings: one frozen dataclass, loaded from a named recipe in ``configs/train/`` or a file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "train"
MIXED_PRECISION = ("no", "fp16", "bf16")


@dataclass(frozen=True)
class AdapterConfig:
    """The content adapter (ObjectStitch): a transformer over all DINOv2 tokens, LayerNorm, Linear."""

    layers: int = 5
    width: int = 1024
    heads: int = 16
    mlp_ratio: float = 4.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.layers < 1 or self.width < 1 or self.heads < 1 or self.width % self.heads:
            raise ValueError("adapter needs layers >= 1 and a width divisible by heads")


@dataclass(frozen=True)
class SCTConfig:
    """Sequential Collaborative Training (stage 2): 2n epochs; adapter/UNet learning rates swap after n."""

    n_epochs: int = 1
    adapter_lr: float = 4e-5  # first n epochs
    unet_lr: float = 4e-6  # first n epochs; the two are swapped for the next n

    def __post_init__(self) -> None:
        if self.n_epochs < 1 or self.adapter_lr <= 0 or self.unet_lr <= 0:
            raise ValueError("sct needs n_epochs >= 1 and positive learning rates")


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of ``imprint train`` (``configs/train/*.yaml``; ``key=value`` on the command line).

    ``pretrained``: a Stable Diffusion checkpoint (hub id or local folder with ``unet/``, ``vae/``,
    ``scheduler/``); None builds random components from ``unet``, ``vae``, ``scheduler`` (dicts of their
    diffusers config). ``encoder``: a DINOv2 hub id or folder, or None with ``encoder_config`` (a
    ``Dinov2Config`` dict). ``inpainting``: an SD inpainting checkpoint for the stage-2 UNet (9 input
    channels); otherwise the text-to-image UNet gets 5 zero-initialised input channels.
    """

    stage: int = 1
    pretrained: str | None = None
    inpainting: str | None = None
    unet: dict[str, Any] = field(default_factory=dict)
    vae: dict[str, Any] = field(default_factory=dict)
    scheduler: dict[str, Any] = field(default_factory=dict)
    encoder: str | None = None
    encoder_config: dict[str, Any] = field(default_factory=dict)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    resolution: int = 512
    object_size: int = 224
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_steps: int = 0  # 0: run the epochs (stage 2: 2 * sct.n_epochs; stage 1: epochs)
    epochs: int = 1  # stage 1
    encoder_lr: float = 1e-5  # stage 1: DINOv2
    adapter_lr: float = 1e-4  # stage 1: adapter
    unet_lr: float = 1e-5  # stage 1: UNet decoder blocks
    sct: SCTConfig = field(default_factory=SCTConfig)
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    cfg_drop_prob: float = 0.2  # stage 2: the learned null embedding replaces the object tokens
    outside_weight: float = 0.0  # stage 2: loss weight outside the mask (the paper's M ⊙ …: 0)
    prediction_type: str | None = None  # None: the scheduler's own (epsilon, v_prediction)
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    ema: bool = False  # an EMA of every parameter that trains in the stage; the export takes its weights
    ema_decay: float = 0.9999
    seed: int = 0  # models are built from it on every rank; rank r > 0 then draws its noise from seed + r
    num_workers: int = 0
    shuffle_buffer: int = 256
    source_weights: dict[str, float] | None = None  # relative sampling weight per source (the loader's)
    level_probs: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25)
    checkpoint_every: int = 500
    checkpoints_total_limit: int = 3
    validate_every: int = 500
    num_validation: int = 4
    validation_steps: int = 25
    log_every: int = 10
    log_with: str = "tensorboard"  # tensorboard | wandb | none
    cpu: bool = False

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise ValueError("stage must be 1 or 2")
        if self.pretrained is None and not (self.unet and self.vae):
            raise ValueError("give pretrained (an SD checkpoint) or unet and vae configs for random init")
        if self.encoder is None and not self.encoder_config:
            raise ValueError("give encoder (a DINOv2 hub id or folder) or encoder_config for random init")
        if self.resolution % 8 or self.resolution < 8:
            raise ValueError("resolution must be a positive multiple of 8")
        if self.batch_size < 1 or self.gradient_accumulation_steps < 1 or self.max_steps < 0 or self.epochs < 1:
            raise ValueError("batch_size, gradient_accumulation_steps, epochs >= 1 and max_steps >= 0")
        if not 0.0 <= self.cfg_drop_prob < 1.0 or self.outside_weight < 0:
            raise ValueError("cfg_drop_prob in [0, 1) and outside_weight >= 0")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}")
        if self.prediction_type not in (None, "epsilon", "v_prediction"):
            raise ValueError("prediction_type must be epsilon or v_prediction (or null: the scheduler's)")
        if self.checkpoint_every < 1 or self.validate_every < 1 or self.checkpoints_total_limit < 1:
            raise ValueError("checkpoint_every, validate_every and checkpoints_total_limit must be >= 1")
        if len(self.level_probs) != 4 or abs(sum(self.level_probs) - 1) > 1e-6:
            raise ValueError("level_probs: four probabilities summing to 1")
        if self.log_with not in ("tensorboard", "wandb", "none"):
            raise ValueError("log_with must be tensorboard, wandb or none")
        if self.source_weights is not None and not (
                isinstance(self.source_weights, dict)
                and all(isinstance(w, (int, float)) and not isinstance(w, bool) and 0 <= w < float("inf")
                        for w in self.source_weights.values())):
            raise ValueError("source_weights maps source names to finite weights >= 0, e.g. {ytvos: 1, vipseg: 0.5}")


def resolve_config_path(name_or_path: str) -> Path:
    """``stage1-tiny`` -> ``configs/train/stage1-tiny.yaml``; a path is taken as is."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"training config {path} does not exist")
        return path
    named = CONFIG_DIR / f"{name_or_path}.yaml"
    if not named.is_file():
        names = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"no training config named {name_or_path!r}; named configs: {names}")
    return named
