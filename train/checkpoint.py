"""Checkpoints that resume exactly, their rotation, and the final exports."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from imprint.errors import ImprintError
from imprint.io import read_json, replace_dir, write_json_atomic

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"


class ResumeError(ImprintError, FileNotFoundError):
    """``--resume`` named nothing usable: never a silent fresh start."""


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


def save_checkpoint(accelerator: Any, run: Path, step: int, state: dict[str, Any], limit: int) -> Path:
    """Save models, optimizer, RNG states (accelerate, safetensors) and the trainer state; rotate."""
    root = Path(run) / "checkpoints"
    final = root / f"checkpoint-{step}"
    tmp = root / f".checkpoint-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    accelerator.save_state(str(tmp), safe_serialization=True)
    if accelerator.is_main_process:
        write_json_atomic(tmp / STATE_FILE, state)
        replace_dir(tmp, final)
        for old in checkpoint_dirs(run)[:-limit]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Any, path: Path) -> dict[str, Any]:
    accelerator.load_state(str(path))
    state: dict[str, Any] = read_json(Path(path) / STATE_FILE)
    return state
