"""``imprint train``: one stage, read top to bottom as setup → epochs of steps → finish over a small state.

:func:`train` is the whole loop::

    state = setup(...)                  # models, optimizer, loader, the agreed epoch plan, resume
    while state.step < state.total:
        run_epoch(state)                # batches -> train_step; after each optimizer step: EMA, log,
                                        # validate (main process), checkpoint (every rank)
    return finish(state)                # EMA weights in, export, last validation grid, summary.json

The same code runs on one process or several (``torchrun --nproc_per_node N -m imprint.cli train ...``,
or ``accelerate launch``): every rank builds the same models from the same seed, then draws its own
noise (seed + rank), reads its own shards, and takes exactly the steps every rank agreed on
(:mod:`imprint.train.epochs`), so epochs, the SCT swap, checkpoints and the end fall on the same step
everywhere. Only the main process logs, validates and exports. Rank 0 of a multi-process run and a
one-process run draw the same random numbers.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imprint import __version__
from imprint.augment.mask_levels import MaskLevelConfig
from imprint.errors import UsageError
from imprint.io import write_json_atomic, write_text_atomic
from imprint.shards.loader import LoaderConfig, ManifestError, ShardLoader, prepare_batch, read_manifest, split_shards
from imprint.storage import Location, Where
from imprint.train import checkpoint as ckpt
from imprint.train.config import TrainConfig
from imprint.train.epochs import EpochPlan
from imprint.train.errors import TrainError
from imprint.train.export import Compositor, export_stage1
from imprint.train.models import (COMPOSITOR_TYPE, ImageEncoder, ModelFolderError, latent_factor,
                                  load_components, read_model_config)
from imprint.train.parts import (apply_lrs, condition, diffusion_loss, group_lrs, sct_schedule, set_trainable,
                                 stage_inputs, warmup_factor)

__all__ = ["TrainError", "TrainState", "finish", "run_epoch", "setup", "train", "train_step"]

logger = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Everything one run holds. ``unet`` and ``encoder`` are as prepared (DDP wrappers under several
    processes); ``base_unet`` and ``base_encoder`` the modules inside; ``trainable`` every parameter the
    optimizer steps, in group order (the EMA covers exactly these)."""

    cfg: TrainConfig
    run: Path
    accelerator: Any
    unet: nn.Module
    encoder: nn.Module
    base_unet: nn.Module
    base_encoder: ImageEncoder
    vae: nn.Module
    scheduler: Any
    trainable: list[nn.Parameter]
    optimizer: Any
    loader: ShardLoader
    plan: EpochPlan
    total: int
    ema: Any = None
    encoder_init: str = ""
    validation: dict[str, Any] | None = None  # examples and scheduler (main process only)
    step: int = 0
    first_step: int = 0
    samples: int = 0
    last_loss: float = float("nan")
    data_wait: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    @property
    def main(self) -> bool:
        return bool(self.accelerator.is_main_process)


def train(cfg: TrainConfig, shards: Where, run: Path, *, encoder_path: Path | None = None, from_dinov2: bool = False,
          resume: str | None = None, val_shards: Where | None = None) -> dict[str, Any]:
    """Train one stage from ``shards`` into the run folder ``run``; returns the summary (also summary.json).

    Stage 2 starts from the stage-1 encoder (``encoder_path``, RUN1/encoder); ``from_dinov2`` starts it from
    a fresh DINOv2 + adapter instead (the paper's ablation), and one of the two is required.
    """
    state = setup(cfg, shards, run, encoder_path=encoder_path, from_dinov2=from_dinov2, resume=resume,
                  val_shards=val_shards)
    while state.step < state.total:
        run_epoch(state)
    return finish(state)


# --- setup ------------------------------------------------------------------------------------------------


def setup(cfg: TrainConfig, shards: Where, run: Path, *, encoder_path: Path | None = None, from_dinov2: bool = False,
          resume: str | None = None, val_shards: Where | None = None) -> TrainState:
    """Check the inputs, build the models and the rank's loader, agree on the epoch plan, resume."""
    from accelerate import Accelerator, PartialState
    from accelerate.utils import ProjectConfiguration, set_seed

    _check_encoder_choice(cfg.stage, encoder_path, from_dinov2)
    shards, run = Location.of(shards), Path(run)  # shards: a path or a URI; the run folder: a filesystem
    resume_from = ckpt.resolve_resume(run, resume) if resume else None
    _check_shards(shards, cfg.stage, PartialState(cpu=cfg.cpu).num_processes)
    set_seed(cfg.seed)  # the same models on every rank
    unet, vae, scheduler = load_components(cfg)
    if cfg.prediction_type:
        scheduler.register_to_config(prediction_type=cfg.prediction_type)
    encoder = _load_encoder(cfg, encoder_path, unet.config.cross_attention_dim)
    groups = set_trainable(cfg.stage, encoder, unet, vae, null_embedding=cfg.cfg_drop_prob > 0)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW([{"params": ps, "name": name, "lr": 0.0} for name, ps in groups.items()],
                                  weight_decay=cfg.weight_decay)
    accelerator = Accelerator(
        cpu=cfg.cpu, mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        log_with=None if cfg.log_with == "none" else cfg.log_with,
        project_config=ProjectConfiguration(project_dir=str(run), logging_dir=str(run / "logs")))
    loader = _loader(cfg, shards, latent_factor(vae), accelerator)
    unet_p, encoder_p, optimizer = accelerator.prepare(unet, encoder, optimizer)
    vae.to(accelerator.device)
    if accelerator.process_index > 0:
        set_seed(cfg.seed, device_specific=True)  # each rank its own noise; rank 0 keeps the one-process stream
    trainable = [p for ps in groups.values() for p in ps]
    plan = _plan(cfg, loader, accelerator)
    epochs = 2 * cfg.sct.n_epochs if cfg.stage == 2 else cfg.epochs
    state = TrainState(cfg, run, accelerator, unet_p, encoder_p, accelerator.unwrap_model(unet_p),
                       accelerator.unwrap_model(encoder_p), vae,
                       scheduler, trainable, optimizer, loader, plan, total=cfg.max_steps or plan.total(epochs),
                       ema=_ema(cfg, trainable, accelerator),
                       encoder_init=str(encoder_path) if encoder_path is not None else "dinov2")
    if resume_from is not None:
        _resume(state, resume_from)
    _start_logs(state, val_shards if val_shards is not None else shards)
    state.started = time.perf_counter()
    return state


def _check_encoder_choice(stage: int, encoder_path: Path | None, from_dinov2: bool) -> None:
    if from_dinov2 and (stage == 1 or encoder_path is not None):
        raise UsageError("--from-dinov2 is for stage 2 without --encoder (stage 1 always starts from DINOv2)")
    if stage == 2 and encoder_path is None and not from_dinov2:
        raise UsageError("stage 2 trains on the stage-1 encoder: pass --encoder RUN1/encoder (the folder "
                         "`imprint train --stage 1` exported), or --from-dinov2 to start from raw DINOv2 "
                         "(the paper's ablation)")


def _check_shards(shards: Location, stage: int, world_size: int) -> None:
    """The shards are of this stage and there is one at least for every rank (checked on every rank alike)."""
    try:
        manifest = read_manifest(shards)
        if manifest.get("stage") != stage:
            raise TrainError(f"{shards} holds stage-{manifest.get('stage')} pairs; stage {stage} trains on "
                             f"DATA/shards/stage{stage} (built by `imprint pairs`)")
        split_shards(manifest["shards"], 0, world_size, shards)
    except ManifestError as exc:
        raise TrainError(str(exc)) from None
    except ValueError as exc:
        raise TrainError(f"{exc} (imprint pairs --set shard_rows=N)") from None


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


def _loader(cfg: TrainConfig, shards: Location, factor: int, accelerator: Any) -> ShardLoader:
    config = LoaderConfig(
        batch_size=cfg.batch_size, object_size=cfg.object_size, target_size=cfg.resolution, latent_factor=factor,
        shuffle_buffer=cfg.shuffle_buffer, seed=cfg.seed, num_workers=cfg.num_workers,
        levels=MaskLevelConfig(probs=cfg.level_probs), source_weights=cfg.source_weights, drop_last=True)
    return ShardLoader(shards, config, rank=accelerator.process_index, world_size=accelerator.num_processes)


def _plan(cfg: TrainConfig, loader: ShardLoader, accelerator: Any) -> EpochPlan:
    def gather(n: int) -> list[int]:
        values: list[int] = accelerator.gather(torch.tensor([n], device=accelerator.device)).tolist()
        return values

    return EpochPlan(loader.batches_in, gather, cfg.gradient_accumulation_steps, cfg.batch_size)


def _ema(cfg: TrainConfig, trainable: list[nn.Parameter], accelerator: Any) -> Any:
    """An EMA of every trained parameter (the UNet's, the adapter's, the null embedding, DINOv2's in stage 1)."""
    if not cfg.ema:
        return None
    from diffusers.training_utils import EMAModel

    ema = EMAModel(trainable, decay=cfg.ema_decay)
    accelerator.register_for_checkpointing(ema)
    return ema


def _resume(state: TrainState, path: Path) -> None:
    """Weights, optimizer, EMA and this rank's RNG states and loader position, from ``path``."""
    trainer, own = ckpt.load_checkpoint(state.accelerator, path)
    state.step = state.first_step = int(trainer["step"])
    epoch, done = state.plan.locate(state.step)
    try:
        state.loader.load_state_dict(own["loader"])
    except ValueError as exc:
        raise ckpt.ResumeError(f"{path}: {exc}") from None
    saved = (state.loader.epoch, state.loader.state_dict()["batches"])
    if saved[1] == state.plan.batches_in(saved[0]):
        saved = (saved[0] + 1, 0)  # a checkpoint at the end of an epoch: the next starts at its first batch
    if saved != (epoch, done * state.cfg.gradient_accumulation_steps):
        raise ckpt.ResumeError(f"{path}: its loader position (epoch {saved[0]}, batch {saved[1]}) is not where step "
                               f"{state.step} falls in these shards: the shards changed since; resume with the same "
                               f"shards or start a new run")
    if state.main:
        logger.info("resumed from %s at step %d (epoch %d)", path, state.step, epoch)


def _start_logs(state: TrainState, val_shards: Where) -> None:
    """The schedule (logged and in schedule.txt), the trackers and the validation examples (main process)."""
    from diffusers import DDIMScheduler

    from imprint.train.validate import load_examples

    cfg, acc = state.cfg, state.accelerator
    epoch = state.plan.locate(state.step)[0]
    per_rank = state.plan.rank_batches(epoch)
    if not state.main:
        return
    schedule = sct_schedule(cfg)
    for line in schedule:
        logger.info("%s", line)
    logger.info("epoch %d: %d steps of %d samples (%d process(es) x batch %d x %d accumulation; batches per rank: "
                "%s); %d steps in all", epoch, state.plan.steps_in(epoch),
                acc.num_processes * cfg.batch_size * cfg.gradient_accumulation_steps, acc.num_processes,
                cfg.batch_size, cfg.gradient_accumulation_steps, per_rank, state.total)
    (state.run / "logs").mkdir(parents=True, exist_ok=True)
    write_text_atomic(state.run / "schedule.txt", "\n".join(schedule) + "\n")
    if cfg.log_with != "none":
        acc.init_trackers("imprint", config=_flat({"stage": cfg.stage, **dataclasses.asdict(cfg)}))
    state.validation = {
        "examples": load_examples(val_shards, cfg.num_validation, cfg.object_size, cfg.resolution),
        "scheduler": DDIMScheduler.from_config(state.scheduler.config)}


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


# --- an epoch and a step ----------------------------------------------------------------------------------


def run_epoch(state: TrainState) -> None:
    """Train from ``state.step`` to the end of its epoch (or to ``state.total``), the same steps on every rank."""
    epoch, done = state.plan.locate(state.step)
    end = min(state.total, state.step + state.plan.steps_in(epoch) - done)
    state.loader.set_epoch(epoch)  # keeps a resumed position in this epoch
    lrs = group_lrs(state.cfg, epoch)
    state.unet.train(), state.encoder.train()
    batches = _timed(state, state.loader)
    try:
        for batch in batches:
            if train_step(state, batch, epoch, lrs):
                state.step += 1
                after_step(state, epoch)
                if state.step >= end:
                    return
    finally:
        batches.close()  # the loader's iterator (and its workers) end here, not whenever it is collected
    raise RuntimeError(f"rank {state.accelerator.process_index}'s loader ended before step {end} of epoch {epoch}, "
                       f"though it counted {state.loader.batches_in(epoch)} batches")


def _timed(state: TrainState, loader: ShardLoader) -> Generator[dict[str, Any], None, None]:
    """The loader's batches, adding the time spent waiting for each to ``state.data_wait`` (its stall)."""
    batches = iter(loader)
    try:
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return
            finally:
                state.data_wait += time.perf_counter() - t0
            yield batch
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def train_step(state: TrainState, batch: dict[str, Any], epoch: int, lrs: dict[str, float]) -> bool:
    """Forward and backward on one batch, and the optimizer step when the accumulation is complete
    (returns whether it was)."""
    cfg, acc = state.cfg, state.accelerator
    with acc.accumulate(state.unet, state.encoder):
        x = prepare_batch(batch, acc.device)
        apply_lrs(state.optimizer, lrs, warmup_factor(state.step, cfg.warmup_steps))
        try:
            inputs = stage_inputs(cfg, x, state.vae, state.scheduler)
            cond = condition(state.encoder, x["object"], cfg.cfg_drop_prob if cfg.stage == 2 else 0.0)
            pred = state.unet(inputs.unet_input, inputs.timesteps, encoder_hidden_states=cond).sample
            loss = diffusion_loss(pred, inputs.target, inputs.weight)
            if not torch.isfinite(loss):
                raise TrainError(f"loss is {loss.item()} at step {state.step} (epoch {epoch}) on pairs "
                                 f"{batch['pair_id']}: lower the learning rates, use bf16 rather than fp16, or "
                                 f"check those pairs with `imprint preview`")
            acc.backward(loss)
            if acc.sync_gradients and cfg.max_grad_norm > 0:
                acc.clip_grad_norm_(state.trainable, cfg.max_grad_norm)
            state.optimizer.step()
            state.optimizer.zero_grad(set_to_none=True)
        except torch.OutOfMemoryError:
            raise TrainError(f"out of memory at step {state.step} with batch_size {cfg.batch_size} at "
                             f"{cfg.resolution} px: lower batch_size (raise gradient_accumulation_steps to keep "
                             f"the effective batch), set gradient_checkpointing=true or mixed_precision=bf16") from None
    state.samples += x["object"].shape[0]
    state.last_loss = loss.detach().item()
    return bool(acc.sync_gradients)


def after_step(state: TrainState, epoch: int) -> None:
    """After an optimizer step: EMA, log, validate (main process), checkpoint (every rank together)."""
    cfg, step = state.cfg, state.step
    if state.ema is not None:
        state.ema.step(state.trainable)
    if step % cfg.log_every == 0 or step == state.total:
        _log_step(state, epoch)
    if step % cfg.validate_every == 0 and state.main:
        validate(state)
    if step % cfg.checkpoint_every == 0 or step == state.total:
        save(state)


def _log_step(state: TrainState, epoch: int) -> None:
    elapsed = max(time.perf_counter() - state.started, 1e-9)
    lrs = {f"lr/{g['name']}": g["lr"] for g in state.optimizer.param_groups}
    state.accelerator.log({"loss": state.last_loss, "epoch": epoch, "samples_per_s": state.samples / elapsed, **lrs},
                          step=state.step)
    if state.main:
        logger.info("step %d/%d, epoch %d: loss %.4f, %s, %.1f samples/s", state.step, state.total, epoch,
                    state.last_loss, ", ".join(f"{k} {v:.2g}" for k, v in lrs.items()), state.samples / elapsed)


def validate(state: TrainState) -> Path:
    """Render the validation grid at this step (main process) into ``validation/step-N.png`` and TensorBoard."""
    from imprint.train.validate import render_validation, save_grid

    assert state.validation is not None, "validation runs on the main process"
    unet, encoder = state.base_unet, state.base_encoder
    was_training = unet.training
    unet.eval(), encoder.eval()
    grid = render_validation(state.cfg.stage, state.validation["examples"], encoder, unet, state.vae,
                             state.validation["scheduler"], state.cfg.validation_steps, state.cfg.seed)
    unet.train(was_training), encoder.train(was_training)
    path = save_grid(grid, state.run / "validation" / f"step-{state.step:06d}.png")
    for tracker in state.accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_image("validation", grid, state.step, dataformats="HWC")
    return path


def save(state: TrainState) -> Path:
    """A checkpoint at this step, written by every rank (:func:`imprint.train.checkpoint.save_checkpoint`),
    once every rank's trained weights (and EMA) are found identical to the others'."""
    cfg = state.cfg
    digest = _check_replicas(state)
    trainer = {"step": state.step, "epoch": state.plan.locate(state.step - 1)[0], "version": __version__,
               "config": dataclasses.asdict(cfg)}
    own = {"loader": state.loader.state_dict(), "weights_sha256": digest}
    return ckpt.save_checkpoint(state.accelerator, state.run, state.step, trainer, own, cfg.checkpoints_total_limit)


def _check_replicas(state: TrainState) -> str:
    """This rank's digest of its trained weights and EMA; a :class:`TrainError` on every rank if they differ."""
    acc = state.accelerator
    shadows = list(state.ema.shadow_params) if state.ema is not None else []
    digest = ckpt.weights_digest([*state.trainable, *shadows])
    if acc.num_processes > 1:
        mine = torch.tensor(list(bytes.fromhex(digest)), dtype=torch.int64, device=acc.device)
        every = [bytes(row).hex() for row in acc.gather(mine).view(acc.num_processes, -1).tolist()]
        if len(set(every)) > 1:
            raise TrainError(f"the replicas' weights differ at step {state.step} (sha256 per rank: "
                             f"{[d[:12] for d in every]}): this is a bug in the distributed setup; please report it")
    return digest


# --- finish -----------------------------------------------------------------------------------------------


def finish(state: TrainState) -> dict[str, Any]:
    """The EMA weights into the models, the export and last validation grid (main process), summary.json."""
    cfg, acc = state.cfg, state.accelerator
    loop_seconds = time.perf_counter() - state.started
    if state.ema is not None:
        state.ema.copy_to(state.trainable)
    final, grid = state.run / "final", None
    if state.main:
        export(state)
        grid = validate(state)
    last_epoch = state.plan.locate(state.step - 1)[0] if state.step > 0 else 0
    summary = {"stage": cfg.stage, "steps": state.step, "last_epoch": last_epoch, "final": str(final),
               "loss": state.last_loss, "validation": str(grid) if grid else None,
               "loop_seconds": round(loop_seconds, 4), "steps_run": state.step - state.first_step,
               "samples": state.samples, "data_wait_seconds": round(state.data_wait, 4),
               "seconds": round(time.perf_counter() - state.started, 3), "processes": acc.num_processes,
               "steps_per_epoch": [state.plan.steps_in(e) for e in range(last_epoch + 1)]}
    if state.main:
        write_json_atomic(state.run / "summary.json", summary)
        logger.info("stage %d done: %d steps, loss %.4f; final model in %s", cfg.stage, state.step, state.last_loss,
                    final)
    acc.wait_for_everyone()  # every rank returns once the export is in place
    acc.end_training()
    return summary


def export(state: TrainState) -> Path:
    """``final/``: stage 2 the compositor folder (:class:`~imprint.train.export.Compositor`), stage 1 the UNet
    and encoder (and ``RUN/encoder/``, stage 2's ``--encoder``)."""
    cfg = state.cfg
    config = {"stage": cfg.stage, "version": __version__, "resolution": cfg.resolution, "object_size": cfg.object_size,
              "train_config": dataclasses.asdict(cfg), "encoder_init": state.encoder_init}
    if cfg.stage == 2:
        return Compositor(state.base_unet, state.vae, state.scheduler, state.base_encoder, config).save_pretrained(
            state.run / "final")
    return export_stage1(state.run, state.base_unet, state.base_encoder, config)
