"""Task functions for the Ray tests (shipped to workers by value)."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def die_once_then_square(task: tuple[str, int]) -> int:
    """Kill the worker process the first time (a lost worker), succeed when the executor runs it again."""
    flag_dir, x = task
    flag = Path(flag_dir) / f"attempt-{x}"
    if not flag.exists():
        flag.write_text("1")
        os._exit(1)
    return x * x


def square(task: int) -> int:
    return task * task


def always_die(task: int) -> int:
    """A worker that is lost every time (killed, out of memory): the task fails after the retries."""
    os._exit(1)


@dataclass(frozen=True)
class Part:
    """A part-like task (it has a ``name``) for ``run_parts``."""

    name: str
    flag_dir: str
    rows: int


def die_once_then_mark(task: Part) -> dict[str, Any]:
    """Lose the worker the first time, then return a part's marker."""
    flag = Path(task.flag_dir) / f"attempt-{task.name}"
    if not flag.exists():
        flag.write_text("1")
        os._exit(1)
    return {"part": task.name, "rows": task.rows}


def count_and_raise(task: tuple[str, int]) -> int:
    """Raise (a bug in our code): counted as a failure, never retried."""
    flag_dir, x = task
    calls = Path(flag_dir) / f"calls-{x}"
    calls.write_text(str(int(calls.read_text()) + 1 if calls.exists() else 1))
    raise ValueError(f"bad input {x}")


def visible_gpus(task: int) -> tuple[int, str | None]:
    """The GPUs Ray gave this task (it sets CUDA_VISIBLE_DEVICES for a task that asked for some)."""
    return task, os.environ.get("CUDA_VISIBLE_DEVICES")


def hold_until(task: tuple[str, str]) -> str:
    """Say the task started (file ``started``), then wait until the file ``release`` appears (at most 2 minutes)."""
    flag_dir, name = task
    Path(flag_dir, f"started-{name}").write_text(os.environ.get("CUDA_VISIBLE_DEVICES") or "")
    deadline = time.monotonic() + 120
    while not Path(flag_dir, "release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return name


@dataclass(frozen=True)
class StallOnDoomedNode:
    """Ingest's ``run_part``, made to lose a node mid-job: fault injection for the lost-node test.

    On the node started with ``IMPRINT_TEST_DOOMED=1`` the task writes ``flags/started-<part>`` and waits to
    be killed with its node. On the other nodes a task first waits (at most ``patience`` seconds) until the
    doomed node has started a part, so that node surely holds one when it is killed. Then it runs the real
    ``run_part`` (imported on the worker, where it is not replaced).
    """

    flags: str
    patience: float = 120.0

    def __call__(self, task: Any) -> dict[str, Any]:
        from imprint.ingest.job import run_part

        flags = Path(self.flags)
        if os.environ.get("IMPRINT_TEST_DOOMED") == "1":
            (flags / f"started-{task.name}").write_text(str(os.getpid()))
            time.sleep(3600)
        deadline = time.monotonic() + self.patience
        while not any(flags.glob("started-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        return run_part(task)


def ingest_with_a_doomed_node(flags: str, argv: list[str]) -> int:
    """``imprint ARGV`` (an ingest on a cluster), with ingest's part step replaced by :class:`StallOnDoomedNode`."""
    from ray import cloudpickle

    import imprint.ingest.job as job
    from imprint.cli import main

    if __name__ != "__main__":  # run as a script, this module is __main__, which is shipped by value anyway
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    job.run_part = StallOnDoomedNode(flags)  # type: ignore[assignment]
    return main(argv)


if __name__ == "__main__":  # python tests/ray_tasks.py FLAGS imprint-args...: the lost-node test's driver
    sys.exit(ingest_with_a_doomed_node(sys.argv[1], sys.argv[2:]))
