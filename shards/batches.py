"""Batch buffers of the streaming loader: samples are decoded straight into their slot of a batch, and
batch buffers are reused once nothing refers to them any more.

One batch is one flat uint8 buffer (:class:`BatchLayout`): ``object`` ``B x S_obj x S_obj x 3``, ``target``
``B x S x S x 3``, ``mask`` ``B x 1 x S x S``, ``mask_latent`` ``B x 1 x S/f x S/f`` (uint8) and ``level``
(int64), each at a 64-byte aligned offset. :class:`SampleBatch` gives tensor and numpy views of its parts;
the decoders write into the numpy views, so no sample is stacked into a batch afterwards.

Why reuse. Fresh memory costs a page fault per 4 KiB on first touch, and a batch of eight 512 px samples is
7.4 MB: measured here, ~1.5 ms a batch for ordinary memory that the allocator hands back to the system
between batches, ~5 ms for the shared memory a DataLoader worker must send (PyTorch's collate allocates it
fresh for every batch): more than the stacking copy itself. A buffer is reused only when its storage has no
user left but its owner (:func:`unused`: the storage's reference count, which every tensor view and numpy
array of it holds), so a batch the trainer keeps is never overwritten.

Workers (:class:`WorkerSlots`). Each DataLoader worker fills a few shared buffers (slots) made once by the
main process; it sends only the slot's number and the pair ids, and the trainer gets tensor views of the
slot, as it would get PyTorch's shared batch. The main process hands a slot back to its worker through a
pipe once the slot is unused (checked as batches arrive); the pipe is a system call, so every read of the old
batch is complete before the worker sees the slot free. A worker with no free slot (a trainer that keeps
batches) sends a new shared buffer instead, as PyTorch's collate does: nothing ever waits for a slot.
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import IterableDataset

_ALIGN = 64
_PARTS = ("object", "target", "mask", "mask_latent", "level")  # what the trainer gets
_ALL = (*_PARTS, "boxes")  # and where each slot's mask was written (to clear it when the buffer is reused)


@dataclass(frozen=True)
class BatchLayout:
    """Where each part of a batch of ``size`` samples lies in its flat buffer (offsets and sizes in bytes)."""

    size: int
    shapes: dict[str, tuple[int, ...]]
    offsets: dict[str, int]
    nbytes: int

    @classmethod
    def of(cls, size: int, object_size: int, target_size: int, latent_factor: int) -> BatchLayout:
        s, so, sl = target_size, object_size, target_size // latent_factor
        shapes = {"object": (size, so, so, 3), "target": (size, s, s, 3), "mask": (size, 1, s, s),
                  "mask_latent": (size, 1, sl, sl), "level": (size,), "boxes": (size, 4)}
        offsets, at = {}, 0
        for name in _ALL:
            offsets[name] = at
            at += -(-math.prod(shapes[name]) * _itemsize(name) // _ALIGN) * _ALIGN
        return cls(size, shapes, offsets, at)

    def span(self, name: str) -> tuple[int, int]:
        """Byte range of one part."""
        start = self.offsets[name]
        return start, start + math.prod(self.shapes[name]) * _itemsize(name)

    def tensors(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Tensor views of the parts of ``flat``."""
        out = {}
        for name in _PARTS:
            start, end = self.span(name)
            part = flat[start:end]
            out[name] = (part.view(torch.int64) if name == "level" else part).view(self.shapes[name])
        return out

    def arrays(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Numpy views of the parts of ``flat`` (and ``boxes``, int32 ``x0, y0, x1, y1`` per slot)."""
        out = {}
        for name in _ALL:
            start, end = self.span(name)
            part = flat[start:end]
            typed = part.view(np.int64) if name == "level" else part.view(np.int32) if name == "boxes" else part
            out[name] = typed.reshape(self.shapes[name])
        return out

    def new(self, shared: bool) -> torch.Tensor:
        """A zeroed flat buffer; in shared memory when ``shared`` (PyTorch's collate does the same in a worker:
        the buffer then travels to the main process without a copy)."""
        if not shared:
            return torch.zeros(self.nbytes, dtype=torch.uint8)
        storage = torch.UntypedStorage._new_shared(self.nbytes)
        return torch.empty(0, dtype=torch.uint8).set_(storage, 0, (self.nbytes,), (1,)).zero_()


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
HEAP_MMAP_THRESHOLD = 16 * 2**20
HEAP_TRIM_THRESHOLD = 64 * 2**20


def keep_freed_memory() -> bool:
    """In a DataLoader worker: glibc keeps freed memory for reuse instead of handing it back to the system.

    A worker turns over ~0.3 MB of short-lived memory per sample (row bytes through the shuffle buffer, decoded
    images before they reach their slot). A fresh process starts with glibc's adaptive thresholds low, so that
    memory went back to the system and was faulted in again: ~80 page faults a sample measured here, ~0.15-0.3
    ms, the whole of what a worker cost over decoding in the main process. Fixed thresholds (allocations up to
    16 MiB from the heap, the heap trimmed only above 64 MiB free) keep a worker's memory flat and its pages
    warm. Returns whether the C library took them (False without glibc: nothing changes).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, ...)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD,
                                                                                HEAP_TRIM_THRESHOLD))


def _itemsize(name: str) -> int:
    return 8 if name == "level" else 4 if name == "boxes" else 1


def _use_count(buffer: torch.Tensor) -> int:
    """References to ``buffer``'s storage (every tensor view and numpy array of it holds one); -1 when this
    torch cannot tell (then no buffer is ever reused)."""
    try:
        return int(torch._C._storage_Use_Count(buffer.untyped_storage()._cdata))
    except (AttributeError, RuntimeError):  # pragma: no cover - a torch without the call
        return -1


def owned(buffer: torch.Tensor) -> int:
    """The reference count of a buffer nothing but its owner refers to (call it right after making it)."""
    return _use_count(buffer)


def unused(buffer: torch.Tensor, baseline: int) -> bool:
    """Whether only the owner still refers to ``buffer`` (its count is back at ``baseline``, see :func:`owned`)."""
    return baseline > 0 and _use_count(buffer) == baseline


class BufferPool:
    """Ordinary (private) flat buffers of one layout, each reused once unused; at most ``keep`` are kept."""

    def __init__(self, layout: BatchLayout, keep: int = 4) -> None:
        self.layout, self.keep = layout, keep
        self._buffers: list[tuple[torch.Tensor, int]] = []

    def get(self) -> torch.Tensor:
        for buffer, baseline in self._buffers:
            if unused(buffer, baseline):
                return buffer
        buffer = self.layout.new(shared=False)
        if len(self._buffers) < self.keep:
            self._buffers.append((buffer, owned(buffer)))
        return buffer


class SampleBatch:
    """A batch being filled slot by slot: ``arrays`` (numpy views to decode into), ``pair_id`` and ``source``
    (one entry per slot).

    ``mask`` and ``mask_latent`` are zero when it is made: a buffer is made zeroed (:meth:`BatchLayout.new`),
    a level is written inside its box only and the box is recorded (:meth:`written`), so a reused buffer is
    cleared box by box, not whole.
    """

    __slots__ = ("layout", "flat", "arrays", "pair_id", "source")

    def __init__(self, layout: BatchLayout, flat: torch.Tensor) -> None:
        self.layout, self.flat = layout, flat
        self.arrays = layout.arrays(flat.numpy())
        mask, latent, boxes = self.arrays["mask"], self.arrays["mask_latent"], self.arrays["boxes"]
        f = mask.shape[-1] // latent.shape[-1]
        for slot in np.flatnonzero(boxes[:, 2] > boxes[:, 0]):
            x0, y0, x1, y1 = (int(v) for v in boxes[slot])
            mask[slot, 0, y0:y1, x0:x1] = 0
            latent[slot, 0, y0 // f:-(-y1 // f), x0 // f:-(-x1 // f)] = 0
        boxes[...] = 0
        self.pair_id = [""] * layout.size
        self.source = [""] * layout.size

    def written(self, slot: int, box: tuple[int, int, int, int] | None) -> None:
        """Record that slot ``slot``'s mask (and the latent cells it touches) was written inside ``box`` only."""
        if box is not None:
            self.arrays["boxes"][slot] = box

    def sample(self, slot: int) -> dict[str, Any]:
        """Slot ``slot`` as a sample dict (tensor views; ``level`` a 0-d tensor)."""
        out: dict[str, Any] = {name: t[slot] for name, t in self.layout.tensors(self.flat).items()}
        out["pair_id"], out["source"] = self.pair_id[slot], self.source[slot]
        return out

    def message(self, n: int, slot: int = -1, worker: int = 0) -> dict[str, Any]:
        """The first ``n`` slots as what is sent to the main process (:meth:`WorkerSlots.collect`): the number
        of the worker's slot holding them, or (``slot < 0``) the buffer itself."""
        msg: dict[str, Any] = {"slot": slot, "worker": worker, "size": n, "pair_id": self.pair_id[:n],
                               "source": self.source[:n]}
        if slot < 0:
            msg["buffer"] = self.flat
        return msg


def batch_of(layout: BatchLayout, flat: torch.Tensor, msg: dict[str, Any]) -> dict[str, Any]:
    """The batch dict the trainer gets (what ``default_collate`` makes of the samples): ``msg``'s first
    ``size`` slots of ``flat``."""
    n = int(msg["size"])
    out: dict[str, Any] = {name: t if n == layout.size else t[:n] for name, t in layout.tensors(flat).items()}
    out["pair_id"], out["source"] = list(msg["pair_id"]), list(msg["source"])
    return out


class WorkerSlots:
    """Shared batch buffers reused by DataLoader workers (see the module docstring): ``slots`` per worker.

    Made in the main process and pickled into the workers with the dataset (buffers and pipe ends travel as
    file descriptors). Worker side: :meth:`take`; main side: :meth:`start` before the workers start, then
    :meth:`collect` for each batch.
    """

    def __init__(self, layout: BatchLayout, workers: int, slots: int = 4) -> None:
        self.layout = layout
        self.buffers = [[layout.new(shared=True) for _ in range(slots)] for _ in range(workers)]
        self._baseline = [[owned(b) for b in row] for row in self.buffers]
        self._lent: list[set[int]] = [set() for _ in range(workers)]  # main side: slots the trainer may hold
        self.free: list[list[int]] = []  # per worker, the slots it may fill when it starts
        self.freed: list[Connection] = []  # worker w reads the slots handed back to it
        self.hand_back: list[Connection] = []  # the main process writes them
        self._free: list[int] | None = None  # worker side: slots this worker may fill

    def start(self) -> None:
        """Main side, before the workers start: new pipes (slots handed back to the workers of an earlier
        iteration must not reach the new ones); the new workers may fill every slot but those still lent."""
        for conn in (*self.freed, *self.hand_back):
            conn.close()
        pipes = [multiprocessing.Pipe(duplex=False) for _ in self.buffers]
        self.freed, self.hand_back = [r for r, _ in pipes], [w for _, w in pipes]
        self._lent = [{k for k in lent if not unused(self.buffers[w][k], self._baseline[w][k])}
                      for w, lent in enumerate(self._lent)]
        self.free = [[k for k in range(len(row)) if k not in self._lent[w]] for w, row in enumerate(self.buffers)]

    def take(self, worker: int) -> tuple[int, SampleBatch]:
        """Worker side: a free slot and a batch over it, or ``(-1, a batch over a new shared buffer)``."""
        if self._free is None:
            self._free = list(self.free[worker])
        reader = self.freed[worker]
        while reader.poll():
            self._free.append(reader.recv_bytes()[0])
        if not self._free:
            return -1, SampleBatch(self.layout, self.layout.new(shared=True))
        k = self._free.pop(0)
        return k, SampleBatch(self.layout, self.buffers[worker][k])

    def collect(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Main side: the batch a worker sent (views of its slot, or of the buffer it sent); first hands back
        every lent slot that is unused again."""
        for w, lent in enumerate(self._lent):
            for k in [k for k in lent if unused(self.buffers[w][k], self._baseline[w][k])]:
                lent.discard(k)
                self.hand_back[w].send_bytes(bytes([k]))
        if msg["slot"] < 0:
            return batch_of(self.layout, msg["buffer"], msg)
        w, k = int(msg["worker"]), int(msg["slot"])
        self._lent[w].add(k)
        return batch_of(self.layout, self.buffers[w][k], msg)


class _Batching(Protocol):
    def batches(self, slots: WorkerSlots | None) -> Iterator[dict[str, Any]]: ...


class Batches(IterableDataset):
    """A stream's batch messages (:meth:`imprint.shards.loader.ShardStream.batches`), for a DataLoader that does
    not batch (``batch_size=None``, ``collate_fn=as_is``)."""

    def __init__(self, stream: _Batching, slots: WorkerSlots | None) -> None:
        super().__init__()
        self.stream, self.slots = stream, slots

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.stream.batches(self.slots)


def as_is(item: Any) -> Any:
    """The DataLoader's ``collate_fn`` for messages: nothing to convert."""
    return item
