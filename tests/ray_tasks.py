"""Task functions for the Ray tests (shipped to workers by value)."""

from __future__ import annotations

import os
from pathlib import Path


def die_once_then_square(task: tuple[str, int]) -> int:
    """Kill the worker process the first time (a lost worker), succeed on Ray's retry."""
    flag_dir, x = task
    flag = Path(flag_dir) / f"attempt-{x}"
    if not flag.exists():
        flag.write_text("1")
        os._exit(1)
    return x * x


def count_and_raise(task: tuple[str, int]) -> int:
    """Raise (a bug in our code): counted as a failure, never retried."""
    flag_dir, x = task
    calls = Path(flag_dir) / f"calls-{x}"
    calls.write_text(str(int(calls.read_text()) + 1 if calls.exists() else 1))
    raise ValueError(f"bad input {x}")
