"""Where a step runs: in-process (``local``) or on Ray (``ray``); the step never imports Ray.

``Executor.run(fn, tasks)`` calls ``fn(task)`` for every task and yields a
:class:`Outcome` per task as they finish. Both executors give the same results;
only the order of completion differs. An exception raised by ``fn`` (our code) is
a failed outcome with its traceback and is never retried; a Ray task lost with its
worker (killed, out of memory) is retried by Ray up to ``max_retries`` times.
"""

from __future__ import annotations

import argparse
import os
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

EXECUTORS = ("local", "ray")


@dataclass(slots=True)
class Outcome(Generic[R]):
    index: int
    result: R | None = None
    error: str | None = None  # traceback or infrastructure error; None when ok

    @property
    def ok(self) -> bool:
        return self.error is None


def _call(fn: Callable[[Any], Any], task: Any) -> tuple[bool, Any]:
    """Run one task, turning an exception in our code into a value (so Ray does not retry it)."""
    try:
        return True, fn(task)
    except Exception:  # noqa: BLE001 - reported as the task's failure, with its traceback
        return False, traceback.format_exc()


class Executor(ABC):
    name: str

    @abstractmethod
    def run(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[Outcome[R]]: ...

    def close(self) -> None:
        """Release resources the executor started."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """Runs tasks one after another in this process: for tests, debugging and tiny jobs."""

    name = "local"

    def run(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[Outcome[R]]:
        for index, task in enumerate(tasks):
            ok, value = _call(fn, task)
            yield Outcome(index, value, None) if ok else Outcome(index, None, value)


class RayExecutor(Executor):
    """Runs tasks as Ray tasks, one CPU each, with a bounded number in flight.

    ``address`` (or ``RAY_ADDRESS``) joins an existing cluster; otherwise a local
    Ray is started with ``num_cpus=workers``. A Ray that is already initialised in
    this process (a test fixture, a notebook) is used as it is and left running.
    """

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None, max_retries: int = 3,
                 temp_dir: str | None = None) -> None:
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - ray is a dependency
            raise RuntimeError("the ray executor needs Ray: pip install 'ray[default]' "
                               "(or run with --executor local)") from exc
        self._ray = ray
        self._started = False
        address = address or os.environ.get("RAY_ADDRESS")
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True,
                                      "configure_logging": False}
            if address:
                ray.init(address=address, **kwargs)
            else:
                # "local": a private Ray sized by --workers; never join a cluster nobody named (a stale
                # /tmp/ray/ray_current_cluster, or another user's cluster on a shared machine).
                ray.init(address="local", num_cpus=workers or os.cpu_count() or 1, _temp_dir=temp_dir, **kwargs)
            self._started = True
        self.max_retries = max_retries
        self.workers = int(ray.cluster_resources().get(  # type: ignore[no-untyped-call]
                           "CPU", workers or 1))
        self._remote = ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=False)(_call)

    def run(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[Outcome[R]]:
        ray = self._ray
        fn_ref = ray.put(fn)
        pending: dict[Any, int] = {}
        next_task = 0
        window = max(2, 2 * self.workers)
        while next_task < len(tasks) or pending:
            while next_task < len(tasks) and len(pending) < window:
                pending[self._remote.remote(fn_ref, tasks[next_task])] = next_task
                next_task += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                index = pending.pop(ref)
                try:
                    ok, value = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - worker lost after all retries
                    yield Outcome(index, None, f"task lost after {self.max_retries} retries: {exc!r}")
                    continue
                yield Outcome(index, value, None) if ok else Outcome(index, None, value)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def add_executor_arguments(p: argparse.ArgumentParser) -> None:
    """``--executor``, ``--workers`` and ``--ray-address``: the same options on every command that runs a job."""
    p.add_argument("--executor", choices=EXECUTORS, default="ray",
                   help="ray (default; local Ray, or a cluster via --ray-address/RAY_ADDRESS) or local "
                        "(in-process, for tests and debugging); both write identical outputs")
    p.add_argument("--workers", type=int, default=None, help="CPUs for a local Ray (default: all cores)")
    p.add_argument("--ray-address", default=None, help="join an existing Ray cluster (default: $RAY_ADDRESS)")


def make_executor(name: str, workers: int | None = None, address: str | None = None) -> Executor:
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(workers=workers, address=address)
    raise ValueError(f"--executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
