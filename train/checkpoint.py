"""Checkpoints that resume exactly, on one process or many; their rotation; resolving ``--resume``.

Every rank writes a checkpoint together with the others, in three phases with a barrier between each:

1. the main process makes an empty temporary folder (``checkpoints/.checkpoint-N.tmp``);
2. every rank writes its part: accelerate's state (the main process: weights, optimizer, EMA; every rank:
   its own RNG states, ``random_states_<rank>.pkl``) and ``rank-<rank>.json`` (its loader position);
3. the main process writes ``trainer_state.json`` (step, config, number of processes: the mark of a
   finished checkpoint), renames the folder to ``checkpoint-N`` and removes the oldest beyond the limit.

So no rank deletes or renames what another is still writing. On resume every rank loads accelerate's
state (its own RNG states) and its own ``rank-<rank>.json``; a checkpoint resumes only with the number of
processes that wrote it (each rank's position in its own shards is part of it).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from imprint.errors import ImprintError
from imprint.io import read_json, replace_dir, write_json_atomic

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"


class ResumeError(ImprintError, FileNotFoundError):
    """``--resume`` named nothing usable: never a silent fresh start."""


def rank_file(rank: int) -> str:
    return f"rank-{rank}.json"


def weights_digest(tensors: Iterable[torch.Tensor]) -> str:
    """sha256 over the bytes of ``tensors`` in order: equal on two ranks iff their replicas are identical."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().reshape(-1).contiguous().view(torch.uint8).cpu().numpy().tobytes())
    return h.hexdigest()


def checkpoint_dirs(run: Path) -> list[Path]:
    """Finished checkpoints of a run, oldest first (a checkpoint is finished once its state file exists)."""
    root = Path(run) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := CHECKPOINT_RE.match(p.name))
             and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def resolve_resume(run: Path, resume: str) -> Path:
    """``latest`` -> the newest finished checkpoint of ``run``; a path -> that checkpoint."""
    if resume == "latest":
        found = checkpoint_dirs(run)
        if not found:
            raise ResumeError(f"--resume latest: {Path(run) / 'checkpoints'} holds no finished checkpoint; "
                              f"drop --resume to start a new run")
        return found[-1]
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise ResumeError(f"--resume {resume}: not a finished checkpoint (no {STATE_FILE}); pass a "
                          f"RUN/checkpoints/checkpoint-N folder or 'latest'")
    return path


def save_checkpoint(accelerator: Any, run: Path, step: int, state: dict[str, Any], rank_state: dict[str, Any],
                    limit: int) -> Path:
    """Write ``checkpoint-<step>`` with every rank (see the module docstring); rotate to ``limit``.

    ``state``: the main process's trainer state; ``rank_state``: this rank's own (its loader position).
    Every rank must call this at the same step.
    """
    root = Path(run) / "checkpoints"
    final = root / f"checkpoint-{step}"
    tmp = root / f".checkpoint-{step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    write_json_atomic(tmp / rank_file(accelerator.process_index), rank_state)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json_atomic(tmp / STATE_FILE, {**state, "world_size": accelerator.num_processes})
        replace_dir(tmp, final)
        for old in checkpoint_dirs(run)[:-limit]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Any, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load a checkpoint into every rank: ``(trainer state, this rank's state)``; the RNG states, weights,
    optimizer and registered objects (EMA) through accelerate."""
    path = Path(path)
    state: dict[str, Any] = read_json(path / STATE_FILE)
    written_by = int(state.get("world_size", 1))
    if written_by != accelerator.num_processes:
        raise ResumeError(f"{path} was written by {written_by} process(es) and this run has "
                          f"{accelerator.num_processes}: resume it with {written_by} (torchrun --nproc_per_node "
                          f"{written_by} …), since each process's place in its own shards is part of it")
    own = path / rank_file(accelerator.process_index)
    if not own.is_file():
        raise ResumeError(f"{path} has no {own.name}: it was not written by this version of imprint train, "
                          f"or not finished; resume from another checkpoint or drop --resume")
    accelerator.load_state(str(path))
    rank_state: dict[str, Any] = read_json(own)
    return state, rank_state
