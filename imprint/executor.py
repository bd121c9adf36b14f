"""Where a step runs: in-process (``local``) or on Ray (``ray``); the step never imports Ray.

``Executor.run(fn, tasks)`` calls ``fn(task)`` for every task and yields an :class:`Outcome` per task as
they finish. Both executors give the same results; only the order of completion differs.

- **Failures.** An exception raised by ``fn`` (our code) is a failed outcome with its traceback and is
  never retried. A Ray task lost with its worker or its node (killed, out of memory, the node removed) is
  run again, up to ``max_retries`` times, on whatever node is alive; ``Outcome.retries`` says how often.
  Tasks write their outputs themselves and return small markers: no payload passes through the driver.
- **Which Ray** (:mod:`imprint.raycluster`): with no ``--ray-address`` / ``RAY_ADDRESS``, a private local
  Ray sized by ``--workers``; with one, that cluster. Nothing else is ever joined.
- **Resources.** A job's tasks ask for one CPU each and never for a GPU, so CPU stages never wait for GPUs.
  A stage that uses a GPU (segmentation, model-based scoring, EGL rendering) runs its job on
  ``executor.with_resources(GPU_TASK)``: where the cluster has GPUs each task asks for one (or a fraction:
  ``Resources(gpus=0.25)`` puts four tasks on a GPU) and the tasks in flight follow the GPUs; where it
  has none the tasks run on CPUs like any other.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import time
import traceback
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

EXECUTORS = ("local", "ray")

log = logging.getLogger(__name__)

WINDOW_REFRESH_S = 10.0  # how often a job looks again at the cluster's size

# Ray's errors for a task whose worker or node went away (not our code): the task is run again.
LOST_ERRORS = ("WorkerCrashedError", "NodeDiedError", "ObjectLostError", "OutOfMemoryError", "RaySystemError",
               "LocalRayletDiedError")


@dataclass(frozen=True, slots=True)
class Resources:
    """What each task of a job asks of a Ray node.

    ``gpus`` per task where the cluster has GPUs (a fraction shares one GPU between tasks); where it has
    none, the task runs on ``cpus`` CPUs alone. The local executor runs in-process and ignores this.
    """

    cpus: float = 1.0
    gpus: float = 0.0

    def __post_init__(self) -> None:
        if self.cpus <= 0 or self.gpus < 0:
            raise ValueError(f"a task needs cpus > 0 and gpus >= 0, got cpus={self.cpus}, gpus={self.gpus}")


CPU_TASK = Resources()
GPU_TASK = Resources(gpus=1.0)


def task_options(request: Resources, cluster: Mapping[str, float]) -> tuple[dict[str, float], int]:
    """Ray options for one task asking ``request`` on a cluster with ``cluster`` totals, and how many fit at once.

    GPUs are asked for only by a GPU request on a cluster that has them; every other task asks for
    ``num_gpus=0``, so it never waits for a GPU.
    """
    cpus, gpus = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
    if request.gpus and gpus >= request.gpus:
        slots = min(gpus / request.gpus, cpus / request.cpus)
        return {"num_cpus": request.cpus, "num_gpus": request.gpus}, max(1, int(slots))
    return {"num_cpus": request.cpus, "num_gpus": 0}, max(1, int(cpus / request.cpus))


@dataclass(slots=True)
class Outcome(Generic[R]):
    index: int
    result: R | None = None
    error: str | None = None  # traceback or infrastructure error; None when ok
    retries: int = 0  # times the task was run again after its worker or node was lost

    @property
    def ok(self) -> bool:
        return self.error is None


def _call(fn: Callable[[Any], Any], task: Any) -> tuple[bool, Any]:
    """Run one task, turning an exception in our code into a value (so it is never retried)."""
    try:
        return True, fn(task)
    except Exception:  # noqa: BLE001 - reported as the task's failure, with its traceback
        return False, traceback.format_exc()


class Executor(ABC):
    name: str

    @abstractmethod
    def run(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[Outcome[R]]: ...

    def with_resources(self, request: Resources) -> "Executor":
        """This executor, for a job whose tasks ask for ``request`` (e.g. :data:`GPU_TASK`)."""
        return self

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
    """Runs tasks as Ray tasks, with a bounded number in flight (twice the tasks that fit at once).

    ``address`` (or ``RAY_ADDRESS``) joins that cluster; otherwise a private local Ray is started with
    ``num_cpus=workers`` (see :mod:`imprint.raycluster`). A Ray already initialised in this process (a test
    fixture, a notebook) is used as it is and left running.
    """

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None, max_retries: int = 3,
                 temp_dir: str | None = None) -> None:
        from imprint import raycluster

        try:
            import ray
        except ImportError as exc:  # pragma: no cover - ray is a dependency
            raise RuntimeError("the ray executor needs Ray: pip install 'ray[default]' "
                               "(or run with --executor local)") from exc
        self._ray: Any = ray  # the module, typed loosely: Ray ships partial stubs
        self._started = False
        named = raycluster.named_address(address)
        if not ray.is_initialized():
            if named:
                raycluster.join(ray, *named)
            else:
                raycluster.start_local(ray, workers or os.cpu_count() or 1, temp_dir)
            self._started = True
            log.info("ray: %s", raycluster.cluster_info(ray, named[0] if named else None).describe())
        self.max_retries = max_retries
        self.request = CPU_TASK
        self._lost = tuple(getattr(ray.exceptions, n) for n in LOST_ERRORS if hasattr(ray.exceptions, n))
        # Ray's own retries are off: this executor runs a lost task again itself, so it can count and report it.
        self._remote = ray.remote(max_retries=0, retry_exceptions=False)(_call)
        self.workers = int(ray.cluster_resources().get("CPU", workers or 1))  # type: ignore[no-untyped-call]

    def with_resources(self, request: Resources) -> "RayExecutor":
        view = copy.copy(self)
        view.request = request
        view._started = False  # the view never shuts down the Ray its parent started
        return view

    def run(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[Outcome[R]]:
        ray = self._ray
        options, _ = task_options(self.request, ray.cluster_resources())
        remote = self._remote.options(**options)
        fn_ref = ray.put(fn)
        pending: dict[Any, int] = {}
        retried: dict[int, int] = {}
        again: deque[int] = deque()
        next_task = 0
        window, resized = self._window(), time.monotonic()
        while next_task < len(tasks) or again or pending:
            if time.monotonic() - resized > WINDOW_REFRESH_S:  # nodes join (autoscaling) and leave
                window, resized = self._window(), time.monotonic()
            while (again or next_task < len(tasks)) and len(pending) < window:
                if again:
                    index = again.popleft()
                else:
                    index, next_task = next_task, next_task + 1
                pending[remote.remote(fn_ref, tasks[index])] = index
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                index = pending.pop(ref)
                outcome = self._collect(ref, index, retried)
                if outcome is None:
                    again.append(index)
                else:
                    yield outcome

    def _window(self) -> int:
        """Tasks kept in flight: twice those that fit on the cluster now, so that no slot waits for the driver."""
        return max(2, 2 * task_options(self.request, self._ray.cluster_resources())[1])

    def _collect(self, ref: Any, index: int, retried: dict[int, int]) -> Outcome[Any] | None:
        """The task's outcome, or None when its worker or node was lost and it is to run again."""
        retries = retried.get(index, 0)
        try:
            ok, value = self._ray.get(ref)
        except self._lost as exc:
            reason = " ".join(str(exc).split())[:300]
            if retries >= self.max_retries:
                return Outcome(index, None, f"task lost after {retries} retries: {type(exc).__name__}: {reason}",
                               retries)
            retried[index] = retries + 1
            log.warning("ray: a task was lost with its worker or node (%s: %s); running it again (retry %d of %d)",
                        type(exc).__name__, reason, retries + 1, self.max_retries)
            return None
        except self._ray.exceptions.RayError as exc:  # cancelled, or the task could not start: not retried
            return Outcome(index, None, f"{type(exc).__name__}: {exc}", retries)
        return Outcome(index, value, None, retries) if ok else Outcome(index, None, value, retries)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_executor_arguments(p: argparse.ArgumentParser) -> None:
    """``--executor``, ``--workers`` and ``--ray-address``: the same options on every command that runs a job."""
    p.add_argument("--executor", choices=EXECUTORS, default="ray",
                   help="ray (default: a private local Ray, or the cluster named by --ray-address/RAY_ADDRESS) "
                        "or local (in-process, for tests and debugging); both write identical outputs")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="CPUs of the private local Ray (default: all cores); a cluster brings its own")
    p.add_argument("--ray-address", default=None,
                   help="join the Ray cluster at this address, the head's HOST:PORT as `ray start --head` printed "
                        "it (default: $RAY_ADDRESS; with neither, a private local Ray is started)")


def make_executor(name: str, workers: int | None = None, address: str | None = None) -> Executor:
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(workers=workers, address=address)
    raise ValueError(f"--executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
