"""Steps per epoch that every rank agrees on, and the epoch a global step falls in.

Each rank reads its own shards, so its epoch has its own number of batches. Under DDP every rank
must take the same optimizer steps (each step is an all-reduce). So an epoch lasts the fewest whole
steps any rank's loader gives: the ranks' batch counts are gathered once per epoch (and cached), and
the longer ranks leave the rest of that epoch unread. The epoch of global step ``s`` follows from
those lengths alone, so epoch boundaries, and with them Sequential Collaborative Training's
learning-rate swap, fall on the same step on every rank, and a resumed run finds them again.

Every rank must call :meth:`EpochPlan.steps_in` for the same epochs in the same order (it may gather);
:meth:`locate` and :meth:`total` do, when all ranks pass them the same step or epoch count.
"""

from __future__ import annotations

from collections.abc import Callable

from imprint.train.errors import TrainError


class EpochPlan:
    """``local(epoch)``: this rank's batches in ``epoch``; ``gather(n)``: every rank's ``n``, in rank order;
    ``accumulation``: batches per optimizer step (gradient accumulation)."""

    def __init__(self, local: Callable[[int], int], gather: Callable[[int], list[int]], accumulation: int,
                 batch_size: int) -> None:
        if accumulation < 1:
            raise ValueError("accumulation must be >= 1")
        self._local, self._gather = local, gather
        self.accumulation, self.batch_size = accumulation, batch_size
        self._batches: dict[int, list[int]] = {}  # epoch -> batches per rank

    def rank_batches(self, epoch: int) -> list[int]:
        """Every rank's batches in ``epoch`` (gathered once per epoch)."""
        if epoch not in self._batches:
            self._batches[epoch] = [int(n) for n in self._gather(self._local(epoch))]
        return self._batches[epoch]

    def steps_in(self, epoch: int) -> int:
        """Optimizer steps in ``epoch``: the fewest batches any rank has, in whole accumulations."""
        batches = self.rank_batches(epoch)
        steps = min(batches) // self.accumulation
        if steps < 1:
            rank = batches.index(min(batches))
            where = f"rank {rank} of {len(batches)}" if len(batches) > 1 else "the shards"
            raise TrainError(
                f"epoch {epoch}: {where} give(s) {min(batches)} full batch(es) of {self.batch_size}, fewer than "
                f"the {self.accumulation} batch(es) of one optimizer step: lower batch_size or "
                f"gradient_accumulation_steps, use fewer processes, or build more pairs")
        return steps

    def batches_in(self, epoch: int) -> int:
        """Batches every rank takes in ``epoch`` (``steps_in * accumulation``)."""
        return self.steps_in(epoch) * self.accumulation

    def locate(self, step: int) -> tuple[int, int]:
        """``(epoch, steps already taken in it)`` of global step ``step`` (0-based: the next step to take)."""
        epoch, start = 0, 0
        while start + self.steps_in(epoch) <= step:
            start += self.steps_in(epoch)
            epoch += 1
        return epoch, step - start

    def total(self, epochs: int) -> int:
        """Optimizer steps in the first ``epochs`` epochs."""
        return sum(self.steps_in(e) for e in range(epochs))
