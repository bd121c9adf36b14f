"""``imprint train --dry-run``: the model before the GPU.

Assembles the configured models without weights (every module on the meta device, built from its
architecture config: :mod:`imprint.train.architectures`), applies the paper's trainable split
(:func:`imprint.train.parts.set_trainable`, as the trainer does), runs the trainer's own training step on
the meta device (VAE encode, encoder on the object image, UNet on the noisy latent — with the mask and the
masked-background latent in stage 2 — loss, backward, gradient clipping, AdamW, EMA) at the config's batch
size and resolution, and reports parameter counts, the trainable split, the tensor shapes and an estimate
of peak GPU memory per device (:data:`MEMORY_METHOD`). No weights, no GPU, no network, no shards.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imprint.errors import ImprintError
from imprint.storage import Location, Where
from imprint.train.architectures import (SCHEDULER_CONFIG, TRANSFORMERS_CONFIG, UNET_CONFIG, VAE_CONFIG,
                                         Architecture, architecture)
from imprint.train.config import AdapterConfig, TrainConfig
from imprint.train.memory import MIXED_PRECISION_DTYPES, GpuKernels, LiveBytes

DRY_RUN_FILE = "dry-run.json"
GIB = 2**30
MEMORY_METHOD = (
    "peak = weights + the peak of the tensors alive during a simulated training step. Weights: every parameter "
    "as the trainer holds it (fp32: accelerate's fp16/bf16 mixed precision autocasts and keeps no second copy). "
    "The step is the trainer's own, run twice on the meta device (the second with the optimizer states present): "
    "VAE encode (no grad), encoder on the object image, UNet, loss, backward, gradient clipping, AdamW "
    "(foreach, as on CUDA: two fp32 states per trainable parameter and its temporaries), EMA update (an fp32 "
    "copy of every trainable parameter, as the trainer keeps it), with gradient checkpointing as configured (torch.utils.checkpoint, non-reentrant). "
    "Every tensor an op creates is followed by storage from creation until freed (a TorchDispatchMode), so "
    "gradients, optimizer states, activations saved for backward, checkpoint recomputation and temporaries "
    "are all counted when they are alive. What a GPU does differently from the meta device is emulated: "
    "autocast's casts under fp16/bf16 (the ops on torch's autocast lists) and fused attention (the "
    "memory-efficient kernel keeps q, k, v, output and log-sum-exp, not the score matrix). 'activations' is "
    "what the forward leaves alive for backward. With DDP on several GPUs, add one fp32 copy of the trainable "
    "parameters (gradient buckets): per_device_ddp_bytes.")
NOT_COUNTED = (
    "the CUDA context and kernel workspaces (cuBLAS, cuDNN: about 0.5-1 GiB)",
    "the caching allocator's reserve and fragmentation (plan 10-20% headroom)",
    "validation sampling and checkpoint saving (they run outside the training step)",
)
APPROXIMATIONS = (
    "the content adapter's attention (nn.MultiheadAttention, a Python-level composite the emulation cannot enter) "
    "is measured as the meta device runs it, in fp32 with the score matrix: at paper scale (batch 8, 257 tokens, "
    "5 layers) this overstates the peak by about 0.4 GiB",
)


class DryRunError(ImprintError):
    """The configured models do not fit together or the shards do not fit them; the message says what to fix."""


@dataclass
class Assembled:
    """The stage's models on the meta device and where each architecture config came from."""

    encoder: Any  # ImageEncoder
    unet: Any  # diffusers UNet2DConditionModel
    vae: Any  # diffusers AutoencoderKL
    scheduler: Any
    sources: dict[str, str]


# --- assembling --------------------------------------------------------------------------------------------


def _diffusion_architectures(cfg: TrainConfig) -> tuple[Architecture, Architecture, Architecture]:
    """(UNet, VAE, scheduler) configs, from the same places ``load_components`` loads the models from."""
    if cfg.pretrained:
        unet = architecture(cfg.pretrained, UNET_CONFIG, "the UNet")
        vae = architecture(cfg.pretrained, VAE_CONFIG, "the VAE")
        scheduler = architecture(cfg.pretrained, SCHEDULER_CONFIG, "the noise scheduler")
    else:
        unet = Architecture(dict(cfg.unet), "training config: unet")
        vae = Architecture(dict(cfg.vae), "training config: vae")
        scheduler = Architecture(dict(cfg.scheduler), "training config: scheduler")
    if cfg.stage == 2 and cfg.inpainting:
        unet = architecture(cfg.inpainting, UNET_CONFIG, "the inpainting UNet")
    return unet, vae, scheduler


def _encoder_architecture(cfg: TrainConfig, encoder_path: Path | None,
                          cross_dim: int) -> tuple[Architecture, AdapterConfig, int, int]:
    """(DINOv2 config, adapter config, token width, object size) as the trainer would build the encoder."""
    from imprint.train.models import COMPOSITOR_TYPE, ENCODER_TYPE, read_model_config

    if encoder_path is None:
        arch = (architecture(cfg.encoder, TRANSFORMERS_CONFIG, "the DINOv2 encoder") if cfg.encoder
                else Architecture(dict(cfg.encoder_config), "training config: encoder_config"))
        return arch, cfg.adapter, cross_dim, cfg.object_size
    config = read_model_config(encoder_path)
    if config.get("type") != ENCODER_TYPE:
        kind = "a stage-2 compositor export" if config.get("type") == COMPOSITOR_TYPE else "not an encoder export"
        raise DryRunError(f"{encoder_path} is {kind}; --encoder takes the encoder/ folder of a stage-1 run "
                          f"(RUN1/encoder)")
    out_dim = int(config["out_dim"])
    if out_dim != cross_dim:
        raise DryRunError(f"the encoder in {encoder_path} outputs {out_dim}-d tokens but the UNet's cross-attention "
                          f"takes {cross_dim}: train stage 1 with the same UNet checkpoint")
    arch = architecture(str(Path(encoder_path) / "dinov2"), TRANSFORMERS_CONFIG, "the DINOv2 of --encoder")
    return arch, AdapterConfig(**config["adapter"]), out_dim, int(config["image_size"])


def assemble(cfg: TrainConfig, encoder_path: Path | None = None) -> Assembled:
    """The stage's encoder, UNet, VAE (all on the meta device, no weights) and noise scheduler."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import Dinov2Config, Dinov2Model

    from imprint.train.models import ImageEncoder, inpainting_unet

    unet_arch, vae_arch, scheduler_arch = _diffusion_architectures(cfg)
    sources = {"unet": unet_arch.source, "vae": vae_arch.source}
    with torch.device("meta"):
        unet: Any = UNet2DConditionModel.from_config(unet_arch.config)
        vae = AutoencoderKL.from_config(vae_arch.config)
        if cfg.stage == 2:
            channels = unet.conv_in.in_channels
            unet = inpainting_unet(unet)
            if unet.conv_in.in_channels != channels:
                sources["unet"] += f" (+{unet.conv_in.in_channels - channels} zero-initialised input channels)"
        enc_arch, adapter_cfg, out_dim, size = _encoder_architecture(
            cfg, encoder_path, int(unet.config.cross_attention_dim))
        dinov2 = Dinov2Model(Dinov2Config.from_dict(enc_arch.config))
        encoder = ImageEncoder(dinov2, adapter_cfg, out_dim, size)
    vae.eval()  # as from_pretrained leaves it
    sources["encoder"] = enc_arch.source
    sources["adapter"] = "training config: adapter" if encoder_path is None else f"--encoder {encoder_path}"
    scheduler = DDPMScheduler.from_config(scheduler_arch.config)
    sources["scheduler"] = scheduler_arch.source
    return Assembled(encoder, unet, vae, scheduler, sources)


# --- counting ----------------------------------------------------------------------------------------------


def _count(params: list[nn.Parameter]) -> dict[str, int]:
    return {"params": sum(p.numel() for p in params), "trainable": sum(p.numel() for p in params if p.requires_grad)}


def module_counts(m: Assembled) -> dict[str, dict[str, int]]:
    """Parameters and trainable parameters of unet, encoder (DINOv2), adapter (everything else of the image
    encoder: the content adapter and the null embedding) and vae."""
    adapter = [p for name, p in m.encoder.named_parameters() if not name.startswith("dinov2.")]
    return {"unet": _count(list(m.unet.parameters())), "encoder": _count(list(m.encoder.dinov2.parameters())),
            "adapter": _count(adapter), "vae": _count(list(m.vae.parameters()))}


def _bytes(tensors: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


# --- the simulated training step -----------------------------------------------------------------------------


def _meta_batch(cfg: TrainConfig, factor: int) -> dict[str, torch.Tensor]:
    """A loader batch (as :class:`imprint.shards.loader.ShardLoader` yields it) on the meta device."""
    b, r, s = cfg.batch_size, cfg.resolution, cfg.object_size

    def u8(*shape: int) -> torch.Tensor:
        return torch.empty(shape, dtype=torch.uint8, device="meta")

    return {"object": u8(b, s, s, 3), "target": u8(b, r, r, 3), "mask": u8(b, 1, r, r),
            "mask_latent": u8(b, 1, r // factor, r // factor)}


def _forward(cfg: TrainConfig, m: Assembled) -> tuple[torch.Tensor, dict[str, list[int]]]:
    """The trainer's forward on a meta batch: (loss, the shapes met on the way)."""
    from imprint.shards.loader import prepare_batch
    from imprint.train.models import latent_factor
    from imprint.train.parts import condition, diffusion_loss, stage_inputs

    x = prepare_batch(_meta_batch(cfg, latent_factor(m.vae)), "meta")
    try:
        inputs = stage_inputs(cfg, x, m.vae, m.scheduler)
        cond = condition(m.encoder, x["object"], cfg.cfg_drop_prob if cfg.stage == 2 else 0.0)
        pred = m.unet(inputs.unet_input, inputs.timesteps, encoder_hidden_states=cond).sample
    except RuntimeError as exc:
        raise DryRunError(f"the configured models do not fit together (stage {cfg.stage}, batch {cfg.batch_size}, "
                          f"{cfg.resolution} px, objects {cfg.object_size} px): {exc}") from exc
    if pred.shape != inputs.target.shape:
        raise DryRunError(f"the UNet predicts {list(pred.shape)} but the target is {list(inputs.target.shape)}: "
                          f"its out_channels must equal the VAE's latent_channels")
    shapes = {"object": list(x["object"].shape), "target_image": list(x["target"].shape),
              "tokens": list(cond.shape), "unet_input": list(inputs.unet_input.shape),
              "unet_output": list(pred.shape)}
    return diffusion_loss(pred, inputs.target, inputs.weight), shapes


def _step(cfg: TrainConfig, m: Assembled, params: list[nn.Parameter], optimizer: torch.optim.Optimizer,
          ema: Any, live: LiveBytes) -> dict[str, list[int]]:
    """One training step as the trainer runs it, with the live bytes marked at its phases."""
    live.mark("step_start")
    with live.phase("forward"):
        loss, shapes = _forward(cfg, m)
    live.mark("forward_end")
    with live.phase("backward"):
        loss.backward()
    with live.phase("optimizer"):
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(params)
    return shapes


def simulate(cfg: TrainConfig, m: Assembled, groups: dict[str, list[nn.Parameter]], steps: int = 2) -> dict[str, Any]:
    """Run ``steps`` training steps on the meta device, optimizing ``groups`` (what
    :func:`imprint.train.parts.set_trainable` returned); the live-byte marks of the last step and the peak of
    all. Weights are not in these numbers."""
    from diffusers.training_utils import EMAModel

    from imprint.train.parts import apply_lrs, group_lrs

    kernels = GpuKernels()
    dtype = MIXED_PRECISION_DTYPES[cfg.mixed_precision]
    if cfg.gradient_checkpointing:
        m.unet.enable_gradient_checkpointing(kernels.checkpoint_function())
    hooks = [*kernels.autocast_forward(m.encoder, dtype), *kernels.autocast_forward(m.unet, dtype)]
    params = [p for ps in groups.values() for p in ps]
    modules = (m.encoder, m.unet, m.vae)
    live = LiveBytes(exclude=[t for mod in modules for t in (*mod.parameters(), *mod.buffers())])
    shapes: dict[str, list[int]] = {}
    try:
        with kernels, live:
            optimizer = torch.optim.AdamW([{"params": ps, "name": name, "lr": 0.0} for name, ps in groups.items()],
                                          weight_decay=cfg.weight_decay, foreach=True)
            apply_lrs(optimizer, group_lrs(cfg, 0))
            ema = EMAModel(params, decay=cfg.ema_decay) if cfg.ema else None  # as the trainer: all that trains
            live.mark("ema")
            m.unet.train(), m.encoder.train()
            for _ in range(steps):
                shapes = _step(cfg, m, params, optimizer, ema, live)
            del optimizer, ema
    finally:
        for hook in hooks:
            hook.remove()
    marks = dict(live.marks)
    return {"peak": live.peak, "marks": marks, "shapes": shapes,
            "activations": marks["forward_end"] - marks["step_start"]}


# --- the report ------------------------------------------------------------------------------------------------


def memory_estimate(cfg: TrainConfig, m: Assembled, groups: dict[str, list[nn.Parameter]],
                    sim: dict[str, Any]) -> dict[str, Any]:
    """Peak GPU memory per device (bytes), its parts, the settings it is for and the method."""
    modules = (m.encoder, m.unet, m.vae)
    weights = sum(_bytes([*mod.parameters(), *mod.buffers()]) for mod in modules)
    trainable = _bytes([p for ps in groups.values() for p in ps])
    marks = sim["marks"]
    peak = weights + sim["peak"]
    return {
        "per_device_bytes": peak,
        "per_device_gib": round(peak / GIB, 2),
        "per_device_ddp_bytes": peak + trainable,
        "per_device_ddp_gib": round((peak + trainable) / GIB, 2),
        "parts_bytes": {"weights": weights, "gradients": trainable, "optimizer_states": 2 * trainable,
                        "ema": marks["ema"], "activations": sim["activations"]},
        "phase_peaks_bytes": {phase: weights + marks[f"{phase}_peak"]
                              for phase in ("forward", "backward", "optimizer")},
        "between_steps_bytes": weights + marks["step_start"],
        "settings": {"batch_size": cfg.batch_size, "resolution": cfg.resolution, "object_size": cfg.object_size,
                     "mixed_precision": cfg.mixed_precision, "gradient_checkpointing": cfg.gradient_checkpointing,
                     "ema": cfg.ema, "optimizer": "AdamW", "weights_dtype": "float32"},
        "method": MEMORY_METHOD,
        "not_counted": list(NOT_COUNTED),
        "approximations": list(APPROXIMATIONS),
    }


def check_shards(shards: Where, stage: int) -> dict[str, Any]:
    """The manifest and every part's Arrow schema of a shard folder (a path or a URI), checked without torch
    (footers only)."""
    import pyarrow as pa

    from imprint.io import parquet_schema, read_manifest
    from imprint.shards.verify import schema_problems

    shards = Location.of(shards)
    manifest = read_manifest(shards)
    if manifest.get("stage") != stage:
        raise DryRunError(f"{shards} holds stage-{manifest.get('stage')} pairs; stage {stage} trains on "
                          f"DATA/shards/stage{stage} (built by `imprint pairs`)")
    problems = []
    for entry in manifest["shards"]:
        path = shards / entry["file"]
        try:
            problems += [f"{entry['file']}: {p}" for p in schema_problems(parquet_schema(path))]
        except (OSError, pa.ArrowException) as exc:
            problems.append(f"{entry['file']}: cannot read its schema ({exc})")
    if problems:
        raise DryRunError(f"{shards}: {len(problems)} schema problem(s), e.g. {'; '.join(problems[:3])}. Rebuild "
                          f"them with `imprint pairs`; `imprint verify {shards}` checks them in full")
    return {"path": str(shards), "schema": manifest["schema"], "parts": len(manifest["shards"]),
            "rows": sum(int(s["rows"]) for s in manifest["shards"])}


def dry_run(cfg: TrainConfig, *, config_name: str = "", encoder_path: Path | None = None,
            shards: Where | None = None, out: Path | None = None) -> dict[str, Any]:
    """The whole dry run: the report (also ``out/dry-run.json`` when ``out`` is given)."""
    import diffusers
    import transformers

    from imprint.io import write_json_atomic
    from imprint.train.parts import set_trainable

    shard_report = check_shards(shards, cfg.stage) if shards is not None else None
    m = assemble(cfg, encoder_path)
    groups = set_trainable(cfg.stage, m.encoder, m.unet, m.vae, null_embedding=cfg.cfg_drop_prob > 0)
    modules = module_counts(m)
    sim = simulate(cfg, m, groups)
    report = {
        "stage": cfg.stage, "config": config_name, "device": "meta",
        "modules": {name: {**counts, "config": m.sources[name]} for name, counts in modules.items()},
        "total": {key: sum(c[key] for c in modules.values()) for key in ("params", "trainable")},
        "trainable_groups": {name: sum(p.numel() for p in ps) for name, ps in groups.items()},
        "scheduler": m.sources["scheduler"],
        "forward": sim["shapes"],
        "memory": memory_estimate(cfg, m, groups, sim),
        "shards": shard_report,
        "train_config": dataclasses.asdict(cfg),
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__},
    }
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_json_atomic(Path(out) / DRY_RUN_FILE, report)
    return report


def _shape(shape: list[int]) -> str:
    return "x".join(str(n) for n in shape)


def format_table(report: dict[str, Any]) -> str:
    """The report as the lines ``imprint train --dry-run`` prints."""
    mem, s = report["memory"], report["memory"]["settings"]
    flags = [s["mixed_precision"] if s["mixed_precision"] != "no" else "fp32",
             "gradient checkpointing" if s["gradient_checkpointing"] else "no gradient checkpointing",
             "EMA" if s["ema"] else "no EMA"]
    lines = [f"stage {report['stage']} ({report['config']}) on the meta device, no weights: batch {s['batch_size']} "
             f"at {s['resolution']} px, objects {s['object_size']} px, {', '.join(flags)}",
             f"{'module':<8} {'parameters':>15} {'trainable':>15}  config"]
    for name, row in [*report["modules"].items(), ("total", {**report["total"], "config": ""})]:
        lines.append(f"{name:<8} {row['params']:>15,} {row['trainable']:>15,}  {row['config']}".rstrip())
    f = report["forward"]
    lines.append(f"forward: objects {_shape(f['object'])} -> tokens {_shape(f['tokens'])}; UNet "
                 f"{_shape(f['unet_input'])} -> {_shape(f['unet_output'])}; loss, backward and optimizer step ran")
    parts = ", ".join(f"{k.replace('_', ' ')} {v / GIB:.2f}" for k, v in mem["parts_bytes"].items())
    lines += [f"peak GPU memory per device (estimate): {mem['per_device_gib']:.2f} GiB on one GPU, "
              f"{mem['per_device_ddp_gib']:.2f} GiB each with DDP",
              f"  of which (GiB): {parts}",
              "  method: a simulated training step on the meta device (dry-run.json: memory.method); not counted: "
              "the CUDA context and workspaces, allocator headroom"]
    if report["shards"]:
        sh = report["shards"]
        lines.append(f"shards: {sh['path']}: {sh['parts']} part(s), {sh['rows']:,} rows, schema {sh['schema']} OK")
    return "\n".join(lines)
