"""Both stages under DDP on two CPU processes (torchrun, gloo), launched as the README's multi-GPU lines say.

The shards split unevenly on purpose: stage 1 has 3 shards of 4 pairs (rank 0 reads 8 pairs, rank 1 four),
stage 2 the sample's 3 shards (rank 0 reads 26 pairs, rank 1 sixteen). Each run crosses an epoch boundary
(stage 2: the SCT swap) and must end on every rank within TIMEOUT (a hang fails the test there; nothing
here times anything). ``tests/ddp_driver.py`` runs the same CLI and keeps each rank's weights and steps.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).with_name("ddp_driver.py")
TIMEOUT = 300  # seconds before a run counts as hung
TINY = {"stage1-sd21": "stage1-tiny", "stage2-sd21": "stage2-tiny"}


def readme_lines() -> list[str]:
    """The README's multi-GPU launch lines (training section), as written."""
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("torchrun ")]
    assert len(lines) == 2 and "--stage 1" in lines[0] and "--stage 2" in lines[1], lines
    return lines


def as_test(line: str, data: Path, runs: Path, overrides: list[str], driver_out: Path | None = None) -> list[str]:
    """A README line with 2 processes, the tiny config and the test's folders (DATA/ and runs/ replaced);
    with ``driver_out``, ``-m imprint.cli`` becomes the driver (the same CLI, watched)."""
    words = shlex.split(line)
    assert words[:4] == ["torchrun", "--standalone", "--nproc_per_node", "8"] and words[4:6] == ["-m", "imprint.cli"]
    words[0] = str(Path(sys.executable).with_name("torchrun"))
    words[3] = "2"
    if driver_out is not None:
        words[4:6] = [str(DRIVER), str(driver_out)]
    words = [TINY.get(w, w) for w in words]
    words = [str(data / w[len("DATA/"):]) if w.startswith("DATA/") else w for w in words]
    words = [str(runs / w[len("runs/"):]) if w.startswith("runs/") else w for w in words]
    return [*words, "log_with=none", *overrides]


def launch(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def succeeded(proc: subprocess.CompletedProcess[str]) -> bool:
    if proc.returncode != 0:
        print(proc.stdout[-5000:], proc.stderr[-10000:], sep="\n")
    return proc.returncode == 0


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory, sample_data: Path, sample_shards: Path) -> dict[str, Path]:
    """DATA/shards/stage1 (3 shards of 4 pairs), DATA/shards/stage2 (the sample's 3 shards), runs/."""
    from imprint.executor import LocalExecutor
    from imprint.pairing.config import PairsConfig
    from imprint.pairing.job import run_pairs
    from imprint.quality.filters import NO_FILTERS

    root = tmp_path_factory.mktemp("ddp")
    cfg = PairsConfig(resolution=64, object_resolution=56, shard_rows=4, row_group_rows=4, pairs_per_instance=3,
                      filters=NO_FILTERS)  # the uneven shard sizes below are those of every pair
    run_pairs(sample_data / "records", root / "data" / "shards" / "stage1", 1, {"mvimgnet": 3}, cfg, LocalExecutor())
    shutil.copytree(sample_shards / "stage2", root / "data" / "shards" / "stage2")
    return {"data": root / "data", "runs": root / "runs", "root": root}


@pytest.fixture(scope="module")
def stage1(ddp: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    """The README's stage-1 line: 4 steps, 2 per epoch; validation and a checkpoint both at step 2."""
    return launch(as_test(readme_lines()[0], ddp["data"], ddp["runs"], []))


@pytest.fixture(scope="module")
def stage2(ddp: dict[str, Path], stage1: subprocess.CompletedProcess[str]) -> Path:
    """The README's stage-2 line (on stage 1's encoder), watched: batches of 8, so 2 steps per epoch (rank 1
    has 2 batches, rank 0 three) and the SCT swap after step 2; EMA on."""
    assert succeeded(stage1)
    out = ddp["root"] / "watch-straight"
    proc = launch(as_test(readme_lines()[1], ddp["data"], ddp["runs"],
                          ["max_steps=0", "batch_size=8", "ema=true", "ema_decay=0.5"], driver_out=out))
    assert succeeded(proc)
    return out


def test_stage1_two_processes_take_the_same_steps_on_uneven_shards(ddp, stage1):
    assert succeeded(stage1)
    run = ddp["runs"] / "stage1"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 4 and summary["last_epoch"] == 1
    assert summary["steps_per_epoch"] == [2, 2]
    assert "batches per rank: [4, 2]" in stage1.stderr  # rank 0 could go on; it stops where rank 1 must
    for step in (2, 4):
        ckpt = run / "checkpoints" / f"checkpoint-{step}"
        # validation and checkpoint coincide at step 2: rank 1's RNG states and position survive it
        assert {"random_states_0.pkl", "random_states_1.pkl", "rank-0.json", "rank-1.json"} <= {
            p.name for p in ckpt.iterdir()}
        assert json.loads((ckpt / "trainer_state.json").read_text())["world_size"] == 2
        ranks = [json.loads((ckpt / f"rank-{r}.json").read_text()) for r in (0, 1)]
        assert [r["loader"]["rank"] for r in ranks] == [0, 1] and {r["loader"]["world_size"] for r in ranks} == {2}
        assert [r["loader"]["batches"] for r in ranks] == [2, 2]  # each rank 2 batches into its epoch
        assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]  # the replicas are identical
    assert (run / "validation" / "step-000002.png").is_file() and (run / "encoder" / "config.json").is_file()


def test_stage2_two_processes_swap_together_and_export_the_ema(ddp, stage2):
    ranks = [json.loads((stage2 / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and {r["world_size"] for r in ranks} == {2}
    assert [r["torch_seed"] for r in ranks] == [0, 1]  # same models from seed 0; rank 1 draws its own noise
    assert ranks[0]["own_batches"] == [3, 3] and ranks[1]["own_batches"] == [2, 2]
    assert ranks[0]["rank_batches"] == ranks[1]["rank_batches"] == [[3, 2], [3, 2]]
    steps = [[(s["step"], s["epoch"], s["lrs"]) for s in r["steps"]] for r in ranks]
    first, swapped = {"adapter": 1e-3, "unet": 1e-4}, {"adapter": 1e-4, "unet": 1e-3}
    assert steps[0] == steps[1] == [(0, 0, first), (1, 0, first), (2, 1, swapped), (3, 1, swapped)]
    pairs = [{p for s in r["steps"] for p in s["pairs"]} for r in ranks]
    assert pairs[0].isdisjoint(pairs[1])  # each rank trains on its own shards
    w0, w1 = (load_file(str(stage2 / f"rank-{r}.safetensors")) for r in (0, 1))
    assert same_tensors(w0, w1)  # identical replicas: weights and EMA, bit for bit
    final = ddp["runs"] / "stage2" / "final"
    unet = load_file(str(final / "unet" / "diffusion_pytorch_model.safetensors"))
    adapter = load_file(str(final / "encoder" / "adapter.safetensors"))
    assert all(torch.equal(v, w0[f"ema.unet.{k}"]) for k, v in unet.items())
    assert set(adapter) == {k[len("ema.encoder."):] for k in w0 if k.startswith("ema.encoder.")}
    assert all(torch.equal(v, w0[f"ema.encoder.{k}"]) for k, v in adapter.items())
    assert not torch.equal(adapter["null_embedding"], w0["encoder.null_embedding"])  # averaged, not the raw one
    assert json.loads((final / "config.json").read_text())["encoder_init"] == str(ddp["runs"] / "stage1" / "encoder")


def test_stage2_two_processes_resume_to_the_same_weights(ddp, stage2):
    straight = ddp["runs"] / "stage2"
    out = ddp["root"] / "watch-resumed"
    line = readme_lines()[1].replace("--out runs/stage2", "--out runs/stage2-resumed")
    proc = launch(as_test(line, ddp["data"], ddp["runs"], ["max_steps=0", "batch_size=8", "ema=true", "ema_decay=0.5",
                                                            "--resume", str(straight / "checkpoints" / "checkpoint-2")],
                          driver_out=out))
    assert succeeded(proc)
    for r in (0, 1):
        a, b = (json.loads((d / f"rank-{r}.json").read_text())["steps"] for d in (stage2, out))
        assert b == a[2:]  # the same steps on the same pairs: each rank's loader position and RNG came back
        assert same_tensors(load_file(str(stage2 / f"rank-{r}.safetensors")),
                            load_file(str(out / f"rank-{r}.safetensors")))
    resumed = ddp["runs"] / "stage2-resumed" / "final"
    for name in ("unet/diffusion_pytorch_model.safetensors", "encoder/adapter.safetensors"):
        assert same_tensors(load_file(str(straight / "final" / name)), load_file(str(resumed / name)))


def test_too_few_shards_for_the_ranks_stops_every_rank_with_one_line(ddp, sample_shards, tmp_path):
    one_shard = tmp_path / "data" / "shards" / "stage1"
    shutil.copytree(sample_shards / "stage1", one_shard)
    assert len(json.loads((one_shard / "manifest.json").read_text())["shards"]) == 1
    proc = launch(as_test(readme_lines()[0], tmp_path / "data", tmp_path / "runs", []))
    assert proc.returncode != 0
    # both ranks say it (their lines share one pipe, so they may interleave: count, don't split)
    assert proc.stderr.count("imprint train: rank 1 of 2 gets no shard") == 2, proc.stderr[-3000:]
    assert "imprint/train" not in proc.stderr  # no traceback from imprint, on either rank
