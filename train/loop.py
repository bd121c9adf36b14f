"""``imprint train``: the thin loop over the tested parts (step, log, validate, save)."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from imprint import __version__
from imprint.errors import ImprintError
from imprint.shards.loader import LoaderConfig, ManifestError, ShardLoader, prepare_batch, read_manifest
from imprint.storage import Location, Where
from imprint.train import checkpoint as ckpt
from imprint.train.config import TrainConfig
from imprint.train.models import (COMPOSITOR_TYPE, ImageEncoder, ModelFolderError, latent_factor,
                                  load_components, read_model_config)
from imprint.train.parts import (apply_lrs, condition, diffusion_loss, group_lrs, sct_schedule, set_trainable,
                                 stage_inputs, warmup_factor)


class TrainError(ImprintError, RuntimeError):
    """Training cannot go on; the message says what to do."""


def _check_shards(shards: Where, stage: int) -> dict:
    try:
        manifest = read_manifest(shards)
    except ManifestError as exc:
        raise TrainError(str(exc)) from None
    if manifest.get("stage") != stage:
        raise TrainError(f"{shards} holds stage-{manifest.get('stage')} pairs; stage {stage} trains on "
                         f"DATA/shards/stage{stage} (built by `imprint pairs`)")
    return manifest


def _load_encoder(cfg: TrainConfig, encoder_path: Path | None, cross_dim: int) -> ImageEncoder:
    if encoder_path is None:
        return ImageEncoder.build(cfg, cross_dim)
    try:
        config = read_model_config(encoder_path)
        if config.get("type") == COMPOSITOR_TYPE:
            raise TrainError(f"{encoder_path} is a stage-2 compositor export; --encoder takes the encoder/ "
                             f"folder of a stage-1 run (RUN1/encoder)")
        encoder = ImageEncoder.from_pretrained(encoder_path)
    except ModelFolderError as exc:
        raise TrainError(str(exc)) from None
    if encoder.out_dim != cross_dim:
        raise TrainError(f"the encoder in {encoder_path} outputs {encoder.out_dim}-d tokens but the UNet's "
                         f"cross-attention takes {cross_dim}: train stage 1 with the same UNet checkpoint")
    return encoder


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


class _Timed:
    """Wraps a loader: the time spent waiting for each batch (the loader's stall)."""

    def __init__(self) -> None:
        self.wait = 0.0

    def __call__(self, loader):
        it = iter(loader)
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            finally:
                self.wait += time.perf_counter() - t0
            yield batch


def export(run: Path, cfg: TrainConfig, encoder: ImageEncoder, unet: torch.nn.Module, vae: torch.nn.Module,
           scheduler: Any) -> Path:
    """``final/`` (unet/, encoder/, and for stage 2 vae/ + scheduler/, config.json); stage 1 also ``encoder/``."""
    final = run / "final"
    unet.save_pretrained(final / "unet", safe_serialization=True)
    encoder.save_pretrained(final / "encoder", stage=cfg.stage)
    config = {"type": COMPOSITOR_TYPE if cfg.stage == 2 else "imprint-stage1", "stage": cfg.stage,
              "version": __version__, "resolution": cfg.resolution, "object_size": cfg.object_size,
              "train_config": dataclasses.asdict(cfg)}
    if cfg.stage == 2:
        vae.save_pretrained(final / "vae", safe_serialization=True)
        scheduler.save_pretrained(final / "scheduler")
    else:
        encoder.save_pretrained(run / "encoder", stage=1)
    (final / "config.json").write_text(json.dumps(config, indent=1, default=str))
    return final


def train(cfg: TrainConfig, shards: Where, run: Path, *, encoder_path: Path | None = None, resume: str | None = None,
          val_shards: Where | None = None, log=None) -> dict[str, Any]:
    """Train one stage from ``shards`` into the run folder ``run``; returns a summary."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers import DDIMScheduler

    from imprint.train.validate import load_examples, render_validation, save_grid

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    shards, run = Location.of(shards), Path(run)  # shards: a path or a URI; the run folder: a filesystem
    _check_shards(shards, cfg.stage)
    resume_from = ckpt.resolve_resume(run, resume) if resume else None
    set_seed(cfg.seed)
    accelerator = Accelerator(
        cpu=cfg.cpu, mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        log_with=None if cfg.log_with == "none" else cfg.log_with,
        project_config=ProjectConfiguration(project_dir=str(run), logging_dir=str(run / "logs")))
    unet, vae, scheduler = load_components(cfg)
    if cfg.prediction_type:
        scheduler.register_to_config(prediction_type=cfg.prediction_type)
    encoder = _load_encoder(cfg, encoder_path, unet.config.cross_attention_dim)
    groups = set_trainable(cfg.stage, encoder, unet, vae)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW([{"params": ps, "name": name, "lr": 0.0} for name, ps in groups.items()],
                                  weight_decay=cfg.weight_decay)
    loader = ShardLoader(shards, LoaderConfig(
        batch_size=cfg.batch_size, object_size=cfg.object_size, target_size=cfg.resolution,
        latent_factor=latent_factor(vae), shuffle_buffer=cfg.shuffle_buffer, seed=cfg.seed,
        num_workers=cfg.num_workers, levels={"probs": tuple(cfg.level_probs)}, drop_last=True),
        rank=accelerator.process_index, world_size=accelerator.num_processes)
    if len(loader) == 0:
        raise TrainError(f"{shards} gives no full batch of {cfg.batch_size}: lower batch_size or build more pairs")
    unet, encoder, optimizer = accelerator.prepare(unet, encoder, optimizer)
    vae.to(accelerator.device)
    ema = None
    if cfg.ema:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(accelerator.unwrap_model(unet).parameters(), decay=cfg.ema_decay)
        accelerator.register_for_checkpointing(ema)
    epochs = 2 * cfg.sct.n_epochs if cfg.stage == 2 else cfg.epochs
    steps_per_epoch = max(1, len(loader) // cfg.gradient_accumulation_steps)
    total = cfg.max_steps or epochs * steps_per_epoch
    step, epoch = 0, 0
    if resume_from is not None:
        state = ckpt.load_checkpoint(accelerator, resume_from)
        step, epoch = state["step"], state["epoch"]
        loader.load_state_dict(state["loader"])
        log(f"[train] resumed from {resume_from} at step {step}, epoch {epoch}")
    schedule = sct_schedule(cfg)
    for line in schedule:
        log(f"[train] {line}")
    (run / "logs").mkdir(parents=True, exist_ok=True)
    (run / "schedule.txt").write_text("\n".join(schedule) + "\n")
    if cfg.log_with != "none":
        accelerator.init_trackers("imprint", config=_flat({"stage": cfg.stage, **dataclasses.asdict(cfg)}))
    val_dir = val_shards if val_shards is not None else shards
    examples = load_examples(val_dir, cfg.num_validation, cfg.object_size, cfg.resolution)
    val_scheduler = DDIMScheduler.from_config(scheduler.config)
    base_encoder, base_unet = accelerator.unwrap_model(encoder), accelerator.unwrap_model(unet)

    def validate() -> Path:
        was_training = base_unet.training
        base_unet.eval(), base_encoder.eval()
        grid = render_validation(cfg.stage, examples, base_encoder, base_unet, vae, val_scheduler,
                                 cfg.validation_steps, cfg.seed)
        base_unet.train(was_training), base_encoder.train(was_training)
        path = save_grid(grid, run / "validation" / f"step-{step:06d}.png")
        for tracker in accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.writer.add_image("validation", grid, step, dataformats="HWC")
        return path

    def save() -> Path:
        state = {"step": step, "epoch": epoch, "loader": loader.state_dict(), "version": __version__,
                 "config": dataclasses.asdict(cfg)}
        return ckpt.save_checkpoint(accelerator, run, step, state, cfg.checkpoints_total_limit)

    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=step, desc=f"stage {cfg.stage}", disable=not accelerator.is_main_process)
    unet.train(), encoder.train()
    t_start, samples, last_loss, first_step = time.perf_counter(), 0, float("nan"), step
    timed = _Timed()
    while step < total:
        loader.set_epoch(epoch)
        lrs = group_lrs(cfg, epoch)
        for batch in timed(loader):
            with accelerator.accumulate(unet, encoder):
                x = prepare_batch(batch, accelerator.device)
                apply_lrs(optimizer, lrs, warmup_factor(step, cfg.warmup_steps))
                try:
                    inputs = stage_inputs(cfg, x, vae, scheduler)
                    cond = condition(encoder, x["object"], cfg.cfg_drop_prob if cfg.stage == 2 else 0.0)
                    pred = unet(inputs.unet_input, inputs.timesteps, encoder_hidden_states=cond).sample
                    loss = diffusion_loss(pred, inputs.target, inputs.weight)
                    if not torch.isfinite(loss):
                        raise TrainError(f"loss is {loss.item()} at step {step} (epoch {epoch}) on pairs "
                                         f"{batch['pair_id']}: lower the learning rates, use bf16 rather than "
                                         f"fp16, or check those pairs with `imprint preview`")
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                        accelerator.clip_grad_norm_([p for ps in groups.values() for p in ps], cfg.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                except torch.OutOfMemoryError:
                    raise TrainError(f"out of memory at step {step} with batch_size {cfg.batch_size} at "
                                     f"{cfg.resolution} px: lower batch_size (raise gradient_accumulation_steps "
                                     f"to keep the effective batch), set gradient_checkpointing=true or "
                                     f"mixed_precision=bf16") from None
            samples += x["object"].shape[0]
            last_loss = loss.detach().item()
            if not accelerator.sync_gradients:
                continue
            step += 1
            if ema is not None:
                ema.step(base_unet.parameters())
            elapsed = max(time.perf_counter() - t_start, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{optimizer.param_groups[-1]['lr']:.2g}",
                            samples_s=f"{samples / elapsed:.1f}")
            if step % cfg.log_every == 0:
                accelerator.log({"loss": last_loss, "epoch": epoch, "samples_per_s": samples / elapsed,
                                 **{f"lr/{g['name']}": g["lr"] for g in optimizer.param_groups}}, step=step)
            if step % cfg.validate_every == 0 and accelerator.is_main_process:
                validate()
            if step % cfg.checkpoint_every == 0 or step == total:
                save()
            if step >= total:
                break
        else:
            epoch += 1
            continue
        break
    bar.close()
    loop_seconds = time.perf_counter() - t_start
    if ema is not None:
        ema.copy_to(base_unet.parameters())
    final = export(run, cfg, base_encoder, base_unet, vae, scheduler) if accelerator.is_main_process else run / "final"
    grid = validate() if accelerator.is_main_process else None
    accelerator.end_training()
    summary = {"stage": cfg.stage, "steps": step, "last_epoch": epoch, "final": str(final), "loss": last_loss,
               "validation": str(grid) if grid else None, "loop_seconds": round(loop_seconds, 4),
               "steps_run": step - first_step, "samples": samples, "data_wait_seconds": round(timed.wait, 4),
               "seconds": round(time.perf_counter() - t_start, 3)}
    (run / "summary.json").write_text(json.dumps(summary, indent=1))
    log(f"[train] stage {cfg.stage} done: {step} steps, loss {last_loss:.4f}; final model in {final}")
    return summary
