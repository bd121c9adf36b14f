"""Model parts: the image encoder (DINOv2 + content adapter) and the diffusers components.

Nothing here re-implements DINOv2 or the UNet: they are ``transformers`` / ``diffusers`` modules,
loaded by hub id or local folder (through :func:`imprint.hub.load_pretrained`: one clear line when a model
cannot be had, offline say) or built at random from a config.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imprint.errors import ImprintError
from imprint.hub import load_pretrained
from imprint.train.config import AdapterConfig, TrainConfig

# The diffusers and transformers modules: untyped libraries, so ``Any`` to the type checker; the names say
# which class a value is.
UNet = Any  # diffusers.UNet2DConditionModel
VAE = Any  # diffusers.AutoencoderKL
NoiseScheduler = Any  # a diffusers scheduler (DDPM in training, DDIM / DPM-Solver++ for sampling)
DINOv2 = Any  # transformers.Dinov2Model

ENCODER_TYPE = "imprint-image-encoder"
COMPOSITOR_TYPE = "imprint-compositor"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelFolderError(ImprintError, ValueError):
    """A model folder that is not what the caller needs; the message says which one to pass."""


class ContentAdapter(nn.Module):
    """ObjectStitch's content adapter: all image tokens through a small transformer, LayerNorm, Linear
    to the UNet's cross-attention width."""

    def __init__(self, in_dim: int, out_dim: int, cfg: AdapterConfig) -> None:
        super().__init__()
        self.proj_in = nn.Linear(in_dim, cfg.width)
        layer = nn.TransformerEncoderLayer(cfg.width, cfg.heads, int(cfg.width * cfg.mlp_ratio), cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)
        self.proj_out = nn.Linear(cfg.width, out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj_out(self.norm(self.blocks(self.proj_in(tokens))))


class ImageEncoder(nn.Module):
    """``E_u``: DINOv2 (every token) + content adapter, and the learned null embedding for guidance.

    Takes object images ``B x 3 x S x S`` in [0, 1]; returns ``B x N x cross_attention_dim`` tokens. The
    classifier-free-guidance dropout (a sample's tokens replaced by the null embedding) happens inside
    ``forward``, so it works the same through a ``DistributedDataParallel`` wrapper, and the null
    embedding takes part in every training forward (DDP needs a gradient for each trained parameter).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, dinov2: DINOv2, adapter_cfg: AdapterConfig, out_dim: int, image_size: int) -> None:
        super().__init__()
        self.dinov2: DINOv2 = dinov2
        self.adapter_cfg = adapter_cfg
        self.image_size = image_size
        self.adapter = ContentAdapter(dinov2.config.hidden_size, out_dim, adapter_cfg)
        n_tokens = (image_size // dinov2.config.patch_size) ** 2 + 1
        self.null_embedding = nn.Parameter(torch.zeros(1, n_tokens, out_dim))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def out_dim(self) -> int:
        return self.adapter.proj_out.out_features

    def forward(self, images: torch.Tensor, drop_prob: float = 0.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Object tokens; with ``drop_prob > 0`` each sample's are the null embedding with that probability."""
        pixels = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        tokens: torch.Tensor = self.adapter(self.dinov2(pixel_values=pixels).last_hidden_state)
        if drop_prob <= 0:
            return tokens
        drop = torch.rand(tokens.shape[0], generator=generator, device=tokens.device) < drop_prob
        return torch.where(drop[:, None, None], self.null(tokens.shape[0]).to(tokens.dtype), tokens)

    def null(self, batch: int) -> torch.Tensor:
        """The null embedding for ``batch`` samples (the unconditional branch of guidance)."""
        return self.null_embedding.expand(batch, -1, -1)

    @classmethod
    def build(cls, cfg: TrainConfig, out_dim: int) -> "ImageEncoder":
        """DINOv2 from ``cfg.encoder`` (hub id / folder) or at random from ``cfg.encoder_config``; a new adapter."""
        from transformers import Dinov2Config, Dinov2Model

        dinov2 = (load_pretrained(Dinov2Model.from_pretrained, cfg.encoder, "the DINOv2 encoder") if cfg.encoder
                  else Dinov2Model(Dinov2Config(**cfg.encoder_config)))
        return cls(dinov2, cfg.adapter, out_dim, cfg.object_size)

    def save_pretrained(self, folder: str | Path, stage: int) -> Path:
        """``config.json`` + ``dinov2/`` (a transformers folder) + ``adapter.safetensors``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.dinov2.save_pretrained(folder / "dinov2")
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if not k.startswith("dinov2.")}
        save_file(state, str(folder / "adapter.safetensors"))
        config = {"type": ENCODER_TYPE, "stage": stage, "image_size": self.image_size, "out_dim": self.out_dim,
                  "adapter": dataclasses.asdict(self.adapter_cfg),
                  "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
        (folder / "config.json").write_text(json.dumps(config, indent=1))
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "ImageEncoder":
        """Load an encoder exported by stage 1 (or stage 2's ``encoder/``)."""
        from safetensors.torch import load_file
        from transformers import Dinov2Model

        folder = Path(folder)
        config = read_model_config(folder)
        if config.get("type") != ENCODER_TYPE:
            raise ModelFolderError(
                f"{folder} is not an image-encoder export (type {config.get('type')!r}); pass the encoder/ folder "
                f"that `imprint train --stage 1` wrote into its run folder")
        dinov2 = load_pretrained(Dinov2Model.from_pretrained, folder / "dinov2", "the image encoder's DINOv2")
        encoder = cls(dinov2, AdapterConfig(**config["adapter"]), int(config["out_dim"]), int(config["image_size"]))
        missing, unexpected = encoder.load_state_dict(load_file(str(folder / "adapter.safetensors")), strict=False)
        if unexpected or [k for k in missing if not k.startswith("dinov2.")]:
            raise ModelFolderError(f"{folder}/adapter.safetensors does not match its config.json "
                                   f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        return encoder


def read_model_config(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise ModelFolderError(f"{folder} has no config.json: pass a folder exported by imprint train")
    config: dict[str, Any] = json.loads(path.read_text())
    return config


def load_components(cfg: TrainConfig) -> tuple[UNet, VAE, NoiseScheduler]:
    """(UNet, VAE, noise scheduler) from ``cfg.pretrained`` (hub id or folder) or at random from configs."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    if cfg.pretrained:
        what = "the Stable Diffusion checkpoint's"
        unet = load_pretrained(UNet2DConditionModel.from_pretrained, cfg.pretrained, f"{what} UNet", subfolder="unet")
        vae = load_pretrained(AutoencoderKL.from_pretrained, cfg.pretrained, f"{what} VAE", subfolder="vae")
        scheduler = load_pretrained(DDPMScheduler.from_pretrained, cfg.pretrained, f"{what} noise scheduler",
                                    subfolder="scheduler")
    else:
        unet = UNet2DConditionModel(**cfg.unet)
        vae = AutoencoderKL(**cfg.vae)
        scheduler = DDPMScheduler(**cfg.scheduler)
    if cfg.stage == 2:
        if cfg.inpainting:
            unet = load_pretrained(UNet2DConditionModel.from_pretrained, cfg.inpainting, "the inpainting UNet",
                                   subfolder="unet")
        unet = inpainting_unet(unet)
    return unet, vae, scheduler


def inpainting_unet(unet: UNet, in_channels: int = 9) -> UNet:
    """The UNet with ``in_channels`` inputs (noisy latent, mask, masked-background latent): the new
    input channels' weights start at zero, so the model starts as the text-to-image one."""
    old = unet.conv_in
    if old.in_channels == in_channels:
        return unet
    if old.in_channels > in_channels:
        raise ValueError(f"the UNet already has {old.in_channels} input channels, more than {in_channels}")
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        assert new.bias is not None
        new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=in_channels)
    return unet


def latent_factor(vae: VAE) -> int:
    return int(2 ** (len(vae.config.block_out_channels) - 1))
