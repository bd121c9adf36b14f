"""The streaming shard loader: samples, mask levels, ranks, determinism, exact resume, source weights.

The shard folder is ``shard_sets.write_shard_set``'s (tests/shard_sets.py), shared with verify, preview and
the storage tests.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from imprint.augment.mask_levels import MaskLevelConfig
from imprint.masks import mask_bbox
from imprint.shards.loader import (
    LoaderConfig,
    ManifestError,
    ShardLoader,
    prepare_batch,
    ShardStream,
    read_manifest,
    replay_round_robin,
)

from shard_sets import OBJ, SOURCES, TGT, small_cfg, write_shard_set


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shards") / "stage2"
    write_shard_set(root)
    return root



def epoch_batches(loader: ShardLoader) -> list[dict]:
    return list(loader)


def flat_ids(batches: list[dict]) -> list[str]:
    return [pid for b in batches for pid in b["pair_id"]]


def assert_same_batches(a: list[dict], b: list[dict]) -> None:
    assert flat_ids(a) == flat_ids(b)
    for x, y in zip(a, b):
        for key in ("object", "target", "mask", "mask_latent", "level"):
            assert torch.equal(x[key], y[key]), key


# --- config and manifest --------------------------------------------------------------------------------


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="latent_factor"):
        LoaderConfig(target_size=100, latent_factor=8)
    with pytest.raises(ValueError, match="batch_size"):
        LoaderConfig(batch_size=0)
    with pytest.raises(ValueError, match="source_weights"):
        LoaderConfig(source_weights={"ytvos": -1})
    cfg = LoaderConfig(levels={"probs": (1, 0, 0, 0)}, source_weights={"ytvos": 2})
    assert cfg.levels == MaskLevelConfig(probs=(1.0, 0.0, 0.0, 0.0))
    assert cfg.source_weights == {"ytvos": 2.0}


def test_read_manifest_errors(tmp_path: Path, shards: Path) -> None:
    with pytest.raises(ManifestError, match="has no manifest.json; build it with `imprint pairs`"):
        read_manifest(tmp_path)
    (tmp_path / "stage2").mkdir()
    (tmp_path / "stage2" / "manifest.json").write_text(json.dumps({"schema": "shards/0", "shards": []}))
    with pytest.raises(ManifestError, match="pass one of them"):
        read_manifest(tmp_path)
    with pytest.raises(ManifestError, match="schema 'shards/0'"):
        read_manifest(tmp_path / "stage2")
    assert read_manifest(shards)["rows"] == 26


# --- samples --------------------------------------------------------------------------------------------


def test_sample_shapes_ranges_dtypes(shards: Path) -> None:
    cfg = small_cfg(target_size=48, object_size=40, latent_factor=8)  # stored 64/32: both resize paths
    batches = epoch_batches(ShardLoader(shards, cfg))
    assert len(batches) == 26 // 3
    b = batches[0]
    assert b["object"].shape == (3, 40, 40, 3) and b["object"].dtype == torch.uint8
    assert b["target"].shape == (3, 48, 48, 3) and b["target"].dtype == torch.uint8
    assert b["mask"].dtype == torch.uint8 and b["mask_latent"].dtype == torch.uint8
    assert b["mask"].shape == (3, 1, 48, 48) and b["mask_latent"].shape == (3, 1, 6, 6)
    assert b["level"].dtype == torch.int64 and b["level"].shape == (3,)
    assert isinstance(b["pair_id"], list) and isinstance(b["source"], list) and b["source"][0] in SOURCES
    for raw in batches:
        batch = prepare_batch(raw)
        assert batch["object"].dtype == torch.float32 and batch["mask"].dtype == torch.float32
        assert batch["object"].shape == (3, 3, 40, 40) and batch["target"].shape == (3, 3, 48, 48)
        assert torch.equal(batch["object"], raw["object"].permute(0, 3, 1, 2).float() / 255)
        assert 0 <= batch["object"].min() and batch["object"].max() <= 1
        assert -1 <= batch["target"].min() and batch["target"].max() <= 1
        assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0}
        assert batch["mask"].sum() > 0


def test_mask_latent_is_maxpool_of_mask(shards: Path) -> None:
    for sample in ShardStream(shards, small_cfg()):
        pooled = torch.nn.functional.max_pool2d(sample["mask"][None].float(), 8)[0]
        assert torch.equal(sample["mask_latent"].float(), pooled)


def test_samples_match_stored_rows(shards: Path) -> None:
    """Level 3 is the stored mask; level 0 its box; target values are the stored pixels scaled to [-1, 1]."""
    rows = {r["pair_id"]: r for r in pq.read_table(shards / "part-00001.parquet").to_pylist()}
    for probs, level in (((0, 0, 0, 1), 3), ((1, 0, 0, 0), 0)):
        for s in ShardStream(shards, small_cfg(levels=MaskLevelConfig(probs=probs))):
            if s["pair_id"] not in rows:
                continue
            row = rows[s["pair_id"]]
            fine = np.asarray(Image.open(io.BytesIO(row["mask"]["bytes"])).convert("L")) > 127
            want = fine if level == 3 else np.zeros_like(fine)
            if level == 0:
                x0, y0, x1, y1 = row["bbox"]
                want[y0:y1, x0:x1] = True
            assert int(s["level"]) == level
            assert np.array_equal(s["mask"][0].numpy().astype(bool), want)
            tgt = np.array(Image.open(io.BytesIO(row["target"]["bytes"])).convert("RGB"))
            want_t = torch.from_numpy(tgt).int()
            assert (s["target"].int() - want_t).abs().max() <= 1  # decoders may differ by 1


def test_levels_follow_probs(shards: Path) -> None:
    stream = ShardStream(shards, small_cfg(levels=MaskLevelConfig(probs=(0.5, 0.0, 0.2, 0.3))))
    levels = []
    for epoch in range(8):
        stream.set_epoch(epoch)
        levels += [int(s["level"]) for s in stream]
    counts = np.bincount(levels, minlength=4) / len(levels)
    assert len(levels) == 8 * 26 and counts[1] == 0
    assert abs(counts[0] - 0.5) < 0.12 and abs(counts[2] - 0.2) < 0.1 and abs(counts[3] - 0.3) < 0.1


# --- ranks, determinism, weights ------------------------------------------------------------------------


def test_ranks_get_disjoint_shards(shards: Path) -> None:
    all_ids = {f"s2-{k:04d}" for k in range(26)}
    seen: list[set[str]] = []
    for rank in range(2):
        stream = ShardStream(shards, small_cfg(), rank=rank, world_size=2)
        seen.append({s["pair_id"] for s in stream})
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == all_ids
    with pytest.raises(ValueError, match="rank 3 of 4 gets no shard"):
        ShardStream(shards, small_cfg(), rank=3, world_size=4)


def test_deterministic_and_epochs_differ(shards: Path) -> None:
    a, b = ShardLoader(shards, small_cfg()), ShardLoader(shards, small_cfg())
    first = epoch_batches(a)
    assert_same_batches(first, epoch_batches(b))
    a.set_epoch(1)
    second = epoch_batches(a)
    assert flat_ids(second) != flat_ids(first) and sorted(flat_ids(second)) != []
    other = epoch_batches(ShardLoader(shards, small_cfg(seed=8)))
    assert flat_ids(other) != flat_ids(first)
    assert len(a) == len(first) == len(second)


@pytest.mark.parametrize("workers", [0, 2])
def test_len_is_exact_per_epoch_and_rank_under_source_weights(shards: Path, workers: int) -> None:
    cfg = small_cfg(batch_size=2, num_workers=workers, source_weights={"ytvos": 1.0, "vipseg": 0.2})
    for rank in range(2):
        loader = ShardLoader(shards, cfg, rank=rank, world_size=2)
        unweighted = ShardLoader(shards, small_cfg(batch_size=2, num_workers=workers), rank=rank, world_size=2)
        for epoch in range(3):
            loader.set_epoch(epoch)
            batches = epoch_batches(loader)
            assert len(loader) == loader.batches_in(epoch) == len(batches)
        # the thinned rows are not counted
        assert sum(map(loader.batches_in, range(3))) < sum(map(unweighted.batches_in, range(3)))


def test_every_rank_refuses_a_layout_with_too_few_shards(shards: Path) -> None:
    for rank in range(4):  # rank 0 has a shard, but the job cannot run: every rank says so alike
        with pytest.raises(ValueError, match="rank 3 of 4 gets no shard"):
            ShardLoader(shards, small_cfg(), rank=rank, world_size=4)


def test_source_weight_zero_drops_source(shards: Path) -> None:
    cfg = small_cfg(source_weights={"vipseg": 0.0, "ytvos": 1.0}, drop_last=False)
    ids = flat_ids(epoch_batches(ShardLoader(shards, cfg)))
    sources = [s for b in epoch_batches(ShardLoader(shards, cfg)) for s in b["source"]]
    assert set(sources) == {"ytvos"} and len(ids) == 13
    with pytest.raises(ValueError, match="leave out every source"):
        ShardStream(shards, small_cfg(source_weights={"vipseg": 0.0, "ytvos": 0.0}))


# --- resume ---------------------------------------------------------------------------------------------


def test_replay_round_robin() -> None:
    assert replay_round_robin([2, 1], 3) == ([2, 1], 1)
    assert replay_round_robin([1, 3, 2], 4) == ([1, 2, 1], 2)  # w0 exhausted after round 0
    assert replay_round_robin([1, 3, 2], 5) == ([1, 2, 2], 0)
    assert replay_round_robin([0, 2], 1) == ([0, 1], 0)
    assert replay_round_robin([1, 1], 9) == ([1, 1], 0)


@pytest.mark.parametrize("workers,weights,k", [(0, None, 3), (0, {"ytvos": 0.7}, 10), (2, None, 3),
                                               (2, {"vipseg": 0.5}, 2)])
def test_exact_resume(shards: Path, workers: int, weights: dict | None, k: int,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = small_cfg(num_workers=workers, batch_size=2, source_weights=weights)
    full_loader = ShardLoader(shards, cfg)
    full_loader.set_epoch(1)
    full = epoch_batches(full_loader)
    assert len(full) == len(full_loader)  # exact, source weights included

    first = ShardLoader(shards, cfg)
    first.set_epoch(1)
    head = []
    for batch in first:
        head.append(batch)
        if len(head) == k:
            break
    state = first.state_dict()
    assert state["epoch"] == 1 and state["batches"] == k

    resumed = ShardLoader(shards, cfg)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    resumed.set_epoch(1)  # a trainer re-selecting the same epoch keeps the loaded position
    made = []
    decode_batch = ShardStream.decode_batch
    monkeypatch.setattr(ShardStream, "decode_batch", lambda self, rows, epoch, batch: made.extend(rows) or decode_batch(
        self, rows, epoch, batch))
    tail = epoch_batches(resumed)
    assert_same_batches(head + tail, full)
    if workers == 0:  # skipped samples are not decoded
        assert len(made) == sum(len(b["pair_id"]) for b in tail)
    assert resumed.state_dict()["batches"] == len(full)
    assert len(epoch_batches(resumed)) == len(full)  # the next iteration is a whole epoch again


# --- batch buffers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers,drop_last", [(0, True), (2, False)])
def test_batches_equal_the_dataloader_batching_the_samples(shards: Path, workers: int, drop_last: bool) -> None:
    """The loader's batches (decoded phase by phase straight into a batch) are what PyTorch's DataLoader makes
    of the sample stream (each sample decoded alone, then stacked): same samples, values and order."""
    from torch.utils.data import DataLoader

    cfg = small_cfg(num_workers=workers, drop_last=drop_last, target_size=48)  # stored 64: the resize path
    stream = ShardStream(shards, cfg)
    stream.set_epoch(2)
    ctx = torch.multiprocessing.get_context("forkserver") if workers else None
    reference = list(DataLoader(stream, batch_size=cfg.batch_size, num_workers=workers, drop_last=drop_last,
                                multiprocessing_context=ctx))
    loader = ShardLoader(shards, cfg)
    loader.set_epoch(2)
    assert_same_batches(epoch_batches(loader), reference)
    assert len(reference) == len(loader)


def _sample_before(row: dict, cfg: LoaderConfig, epoch: int) -> dict:
    """One sample as the loader made it before batches were decoded in place: each image decoded into a new
    array, all four mask levels computed and one taken, the latent max-pool of that level."""
    from imprint.augment.mask_levels import draw_level, mask_levels
    from imprint.shards.loader import decode_mask, decode_rgb, latent_mask, sample_rng

    level = draw_level(sample_rng(cfg.seed, epoch, row["seed"], row["pair_id"]), cfg.levels)
    mask = mask_levels(decode_mask(row["mask"], cfg.target_size), cfg.levels)[level]
    return {"object": torch.from_numpy(decode_rgb(row["object"], cfg.object_size)),
            "target": torch.from_numpy(decode_rgb(row["target"], cfg.target_size)),
            "mask": torch.from_numpy(mask[None].astype(np.uint8)),
            "mask_latent": torch.from_numpy(latent_mask(mask, cfg.latent_factor)[None].astype(np.uint8)),
            "level": torch.tensor(level, dtype=torch.int64), "pair_id": row["pair_id"], "source": row["source"]}


def _batches_before(shards: Path, cfg: LoaderConfig, epoch: int) -> list[dict]:
    """An epoch as it was batched before: each worker's rows cut into batches, each batch stacked from its samples
    (``default_collate``), the workers' batches taken round-robin (an exhausted worker passed over)."""
    from torch.utils.data import default_collate

    stream, n, size = ShardStream(shards, cfg), max(1, cfg.num_workers), cfg.batch_size
    per_worker = []
    for w in range(n):
        rows = [r.data for r in stream.shuffled_rows(epoch, w, n)]
        cuts = [rows[i:i + size] for i in range(0, len(rows), size)]
        per_worker.append([c for c in cuts if len(c) == size or not cfg.drop_last])
    return [default_collate([_sample_before(r, cfg, epoch) for r in cuts[i]])
            for i in range(max(map(len, per_worker))) for cuts in per_worker if i < len(cuts)]


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("sizes", [(OBJ, TGT), (24, 48)])  # as stored; both shrunk (the resize path)
def test_batches_are_bit_identical_to_before(shards: Path, workers: int, sizes: tuple[int, int]) -> None:
    """Every value of every batch (images, all four mask levels, latent masks, levels, ids, order) equals what
    per-sample decoding and stacking gave, over epochs, with and without the last short batch."""
    levels = MaskLevelConfig(probs=(0.25, 0.25, 0.25, 0.25))
    for drop_last in (True, False):
        cfg = small_cfg(num_workers=workers, drop_last=drop_last, object_size=sizes[0], target_size=sizes[1],
                        levels=levels)
        loader = ShardLoader(shards, cfg)
        for epoch in (0, 1):
            loader.set_epoch(epoch)
            got, want = epoch_batches(loader), _batches_before(shards, cfg, epoch)
            assert_same_batches(got, want)
            assert len(got) == len(want) == len(loader) and [b["source"] for b in got] == [b["source"] for b in want]
            assert {int(v) for b in got for v in b["level"]} == {0, 1, 2, 3}


def _shared_maps() -> set[str]:
    """The shared-memory files this process has mapped (torch's, unlinked as soon as made)."""
    with open("/proc/self/maps") as f:
        return {line.split(None, 5)[5].strip() for line in f if "/dev/shm/" in line}


def test_worker_slots_shared_memory_is_released(shards: Path) -> None:
    """The workers' shared slots (and any buffer a worker sent when no slot was free) are unlinked from
    /dev/shm as soon as made, and unmapped once the loader and its batches are gone; no pipe is left open."""
    import gc
    import os

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    cfg = small_cfg(num_workers=2, batch_size=2, drop_last=False)
    epoch_batches(ShardLoader(shards, cfg))  # the fork server (kept for the session) is started
    gc.collect()
    before, open_before = _shared_maps(), fds()
    loader = ShardLoader(shards, cfg)
    held = epoch_batches(loader)  # kept: the workers run out of free slots and send new buffers too
    loader.set_epoch(1)
    epoch_batches(loader)
    made = _shared_maps() - before
    assert len(made) > 2 * 4  # the 4 slots of each worker, and more
    assert all(name.endswith("(deleted)") for name in made)  # no file left in /dev/shm, even if killed
    assert not any(os.path.exists(name.split()[0]) for name in made)
    kept = held[-1]
    copy = {k: v.clone() for k, v in kept.items() if isinstance(v, torch.Tensor)}
    del loader, held
    gc.collect()
    assert 0 < len(_shared_maps() - before) < len(made)  # only what the kept batch still refers to
    assert all(torch.equal(kept[k], v) for k, v in copy.items())
    del kept
    gc.collect()
    assert _shared_maps() <= before and fds() == open_before


@pytest.mark.parametrize("workers", [0, 2])
def test_held_batches_keep_their_values_while_buffers_are_reused(shards: Path, workers: int) -> None:
    """Buffers are reused once nothing refers to them: a batch the trainer keeps is never overwritten, and
    a loader iterated again (a second epoch, an iteration broken off) gives what a new loader gives."""
    cfg = small_cfg(num_workers=workers, batch_size=2, drop_last=False)
    loader = ShardLoader(shards, cfg)
    held, copies = [], []
    for epoch in (0, 1, 0):
        loader.set_epoch(epoch)
        for batch in loader:  # keep every batch and a copy of it
            held.append(batch)
            copies.append({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()})
        for i, batch in enumerate(loader):  # drop every batch: buffers and slots come back
            if i == 3:
                break
        fresh = ShardLoader(shards, cfg)
        fresh.set_epoch(epoch)
        assert_same_batches(epoch_batches(loader), epoch_batches(fresh))
    assert_same_batches(held, copies)


@pytest.mark.parametrize("workers", [0, 2])
def test_dropped_batches_reuse_their_buffers(shards: Path, workers: int) -> None:
    """Batches the trainer lets go of are decoded into the same few buffers again (no fresh memory)."""
    loader = ShardLoader(shards, small_cfg(num_workers=workers, batch_size=2))
    for _ in loader:  # the first epoch makes the buffers (and the workers' slots)
        pass
    buffers = {batch["target"].untyped_storage().data_ptr() for batch in loader}
    assert len(loader) >= 12 and len(buffers) <= (4 if workers == 0 else 4 * workers)


def test_decode_into_a_slot_equals_decoding_alone(tmp_path: Path) -> None:
    from imprint.shards.loader import decode_rgb

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    for fmt in ("JPEG", "PNG", "TGA"):  # TGA: OpenCV cannot read it, PIL does
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, fmt)
        for size in (40, 24, 56):  # as stored, shrunk, grown
            out = np.full((size, size, 3), 7, np.uint8)
            assert decode_rgb(buf.getvalue(), size, out) is out
            assert np.array_equal(out, decode_rgb(buf.getvalue(), size)), (fmt, size)


def test_latent_mask_into_equals_the_maxpool() -> None:
    """The box-limited pool (a word per cell row for factors 2, 4, 8; numpy reductions otherwise) equals
    latent_mask of the whole mask, boxes on and off the cell grid, at the edges, and on a strided view."""
    from imprint.shards.loader import latent_mask, latent_mask_into

    rng = np.random.default_rng(5)
    for factor in (1, 2, 3, 4, 8, 16):
        for _ in range(40):
            size = factor * int(rng.integers(1, 12))
            mask = np.zeros((size, size), bool)
            x0, x1 = sorted(rng.integers(0, size + 1, 2))
            y0, y1 = sorted(rng.integers(0, size + 1, 2))
            mask[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < rng.choice([0.02, 0.5, 1.0])
            box = mask_bbox(mask)
            for m in (mask, np.zeros((size, 2 * size), bool)[:, ::2]):  # the second: not contiguous
                m[...] = mask
                out = np.zeros((size // factor, size // factor), bool)
                latent_mask_into(m, box, factor, out)
                assert np.array_equal(out, latent_mask(mask, factor)), (factor, box)


_HEAP_PROBE = """
import ctypes, sys
from imprint.shards.batches import keep_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                 "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype, libc.malloc.restype = Info, ctypes.c_void_p
libc.malloc.argtypes, libc.free.argtypes = [ctypes.c_size_t], [ctypes.c_void_p]
took = keep_freed_memory() if sys.argv[1] == "1" else None
before = libc.mallinfo2().hblks
block = libc.malloc(8 << 20)
print(took, libc.mallinfo2().hblks - before)
libc.free(block)
"""


def test_workers_keep_freed_memory_on_the_heap() -> None:
    """In a worker, an 8 MiB block (a decoded image, a row's bytes) comes from the heap, which keeps it once
    freed, instead of a fresh mapping of the system's each time (glibc; elsewhere nothing is changed)."""
    import platform
    import subprocess
    import sys

    from imprint.shards.batches import keep_freed_memory

    if platform.libc_ver()[0] != "glibc":
        assert keep_freed_memory() is False
        return
    runs = [subprocess.run([sys.executable, "-c", _HEAP_PROBE, flag], check=True, capture_output=True, text=True)
            for flag in ("0", "1")]
    assert [r.stdout.split() for r in runs] == [["None", "1"], ["True", "0"]]


def test_resume_state_checks_layout(shards: Path) -> None:
    loader = ShardLoader(shards, small_cfg())
    with pytest.raises(ValueError, match="num_workers=2 \\(now 0\\)"):
        loader.load_state_dict({"epoch": 0, "batches": 2, "num_workers": 2})
    loader.load_state_dict({"epoch": 0, "batches": 8})  # a bare (epoch, batches) state loads
    assert epoch_batches(loader) == []  # the epoch had 8 batches: nothing left
