"""Trainer benchmark: the tiny-config CPU step time of ``imprint train`` against a minimal loop over the same
modules, as the marginal time of the extra steps between a short and a long run (start-up and export cancel
out); and the fraction of the loop spent waiting for data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from imprint.bench.common import tiny_shards
from imprint.config import load_config
from imprint.shards.loader import LoaderConfig, ShardLoader, prepare_batch
from imprint.train.config import TrainConfig, resolve_config_path
from imprint.train.loop import train
from imprint.train.models import ImageEncoder, latent_factor, load_components
from imprint.train.parts import condition, diffusion_loss, set_trainable, stage_inputs


def _minimal_loop(cfg: TrainConfig, shards: Path, steps: int) -> float:
    """A hand-written loop over the same modules and batches (batches decoded beforehand): seconds."""
    torch.manual_seed(cfg.seed)
    unet, vae, scheduler = load_components(cfg)
    unet_config: Any = unet.config  # diffusers' config (an nn.Module attribute to a type checker)
    encoder = ImageEncoder.build(cfg, unet_config.cross_attention_dim)
    groups = set_trainable(cfg.stage, encoder, unet, vae)
    opt = torch.optim.AdamW([{"params": ps, "lr": 1e-4} for ps in groups.values()])
    loader = ShardLoader(shards, LoaderConfig(batch_size=cfg.batch_size, object_size=cfg.object_size,
                                              target_size=cfg.resolution, latent_factor=latent_factor(vae)))
    batches: list[Any] = []
    while len(batches) < steps:
        batches += list(loader)
    unet.train(), encoder.train()
    t0 = time.perf_counter()
    for batch in batches[:steps]:
        x = prepare_batch(batch)
        inputs = stage_inputs(cfg, x, vae, scheduler)
        cond = condition(encoder, x["object"], cfg.cfg_drop_prob)
        loss = diffusion_loss(unet(inputs.unet_input, inputs.timesteps, encoder_hidden_states=cond).sample,
                              inputs.target, inputs.weight)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for ps in groups.values() for p in ps], cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def measure(work: Path, quick: bool) -> dict[str, Any]:
    torch.set_num_threads(1)
    shards = tiny_shards(work)
    n1, n2 = (4, 12) if quick else (10, 50)
    base = ["log_with=none", "checkpoint_every=100000", "validate_every=100000", "batch_size=4", "num_validation=1",
            "validation_steps=1", "sct.n_epochs=100"]

    def run(steps: int, name: str) -> dict[str, Any]:
        cfg = load_config(TrainConfig, resolve_config_path("stage2-tiny"), [*base, f"max_steps={steps}"])
        return train(cfg, shards, work / name, from_dinov2=True)

    run(2, "warm")
    short, long = run(n1, "short"), run(n2, "long")
    cfg = load_config(TrainConfig, resolve_config_path("stage2-tiny"), base)
    _minimal_loop(cfg, shards, 2)
    m_short, m_long = _minimal_loop(cfg, shards, n1), _minimal_loop(cfg, shards, n2)
    trainer_step = (long["loop_seconds"] - short["loop_seconds"]) / (n2 - n1)
    minimal_step = (m_long - m_short) / (n2 - n1)
    stall = (long["data_wait_seconds"] - short["data_wait_seconds"]) / (long["loop_seconds"] - short["loop_seconds"])
    ratio = trainer_step / minimal_step
    return {
        "config": "stage2-tiny (CPU, batch 4, 64 px, 1 thread)", "steps": [n1, n2],
        "trainer_ms_per_step": round(1e3 * trainer_step, 2),
        "minimal_loop_ms_per_step": round(1e3 * minimal_step, 2),
        "ratio_to_minimal": round(ratio, 3),
        "loader_stall_fraction": round(stall, 4),
        "gpu": "no GPU lent to this task: the sd21-size step time and memory at 512 px, bf16, batch 8 were not "
               "measured",
        "targets": {"ratio_to_minimal": "<= 1.10", "loader_stall_fraction": "< 0.05"},
        "meets_target": {"ratio_to_minimal": ratio <= 1.10, "loader_stall_fraction": stall < 0.05},
    }
