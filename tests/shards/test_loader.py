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
from imprint.shards.loader import (
    LoaderConfig,
    ManifestError,
    ShardLoader,
    prepare_batch,
    ShardStream,
    read_manifest,
    replay_round_robin,
)

from shard_sets import OBJ, SOURCES, TGT, small_cfg, write_shard_set  # noqa: F401 (sizes of the set)


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
    make_sample = ShardStream.make_sample
    monkeypatch.setattr(ShardStream, "make_sample", lambda self, row, epoch: made.append(1) or make_sample(
        self, row, epoch))
    tail = epoch_batches(resumed)
    assert_same_batches(head + tail, full)
    if workers == 0:  # skipped samples are not decoded
        assert len(made) == sum(len(b["pair_id"]) for b in tail)
    assert resumed.state_dict()["batches"] == len(full)
    assert len(epoch_batches(resumed)) == len(full)  # the next iteration is a whole epoch again


def test_resume_state_checks_layout(shards: Path) -> None:
    loader = ShardLoader(shards, small_cfg())
    with pytest.raises(ValueError, match="num_workers=2 \\(now 0\\)"):
        loader.load_state_dict({"epoch": 0, "batches": 2, "num_workers": 2})
    loader.load_state_dict({"epoch": 0, "batches": 8})  # a bare (epoch, batches) state loads
    assert epoch_batches(loader) == []  # the epoch had 8 batches: nothing left
