"""``imprint train`` under torchrun, as the CLI runs it, keeping what each rank did (for the DDP tests).

    torchrun --standalone --nproc_per_node 2 tests/ddp_driver.py OUT train --stage 2 ...

Runs ``imprint.cli.main(["train", ...])`` unchanged, watching two of the loop's functions: every
optimizer step's (step, epoch, learning rates), and, just before :func:`imprint.train.loop.finish`, the
rank's weights (every parameter of the UNet and encoder, and the EMA's shadows, named ``ema.<parameter>``). Each rank writes
``OUT/rank-R.safetensors`` and ``OUT/rank-R.json`` (rank, world size, steps, its loader's state, its
epoch lengths and its torch seed), so a test compares the replicas bit for bit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

import imprint.train.loop as loop
from imprint.cli import main


def watch(out: Path) -> None:
    steps: list[dict[str, Any]] = []
    real_step, real_finish = loop.train_step, loop.finish

    def train_step(state: loop.TrainState, batch: dict[str, Any], epoch: int, lrs: dict[str, float]) -> bool:
        synced = real_step(state, batch, epoch, lrs)
        if synced:
            steps.append({"step": state.step, "epoch": epoch, "lrs": dict(lrs), "pairs": list(batch["pair_id"])})
        return synced

    def finish(state: loop.TrainState) -> dict[str, Any]:
        rank, world = state.accelerator.process_index, state.accelerator.num_processes
        tensors = {f"unet.{k}": v for k, v in state.base_unet.named_parameters()}
        tensors |= {f"encoder.{k}": v for k, v in state.base_encoder.named_parameters()}
        if state.ema is not None:  # each EMA shadow under the name of the parameter it averages
            names = {id(v): k for k, v in tensors.items()}
            tensors |= {f"ema.{names[id(p)]}": s for p, s in zip(state.trainable, state.ema.shadow_params)}
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(out / f"rank-{rank}.safetensors"))
        epochs = range(state.plan.locate(state.step - 1)[0] + 1)
        info = {"rank": rank, "world_size": world, "steps": steps, "loader": state.loader.state_dict(),
                "torch_seed": torch.initial_seed(),
                "own_batches": [state.loader.batches_in(e) for e in epochs],
                "rank_batches": [state.plan.rank_batches(e) for e in epochs]}
        (out / f"rank-{rank}.json").write_text(json.dumps(info, indent=1))
        return real_finish(state)

    loop.train_step, loop.finish = train_step, finish  # type: ignore[assignment]


if __name__ == "__main__":
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    watch(out_dir)
    sys.exit(main(sys.argv[2:]))
