"""Shared fixtures: the generated sample data (official layouts) and one local Ray per session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def sample_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The embedded sample, generated once per session (read-only for tests: copy before changing)."""
    from imprint.ingest.sample import generate

    return generate(tmp_path_factory.mktemp("sample"), seed=0)


@pytest.fixture()
def copy_root(tmp_path: Path):
    """Copy a generated root into this test's folder, to damage it safely."""

    def _copy(src: Path, name: str = "root") -> Path:
        dst = tmp_path / name
        shutil.copytree(src, dst)
        return dst

    return _copy


@pytest.fixture(scope="session")
def s3_server():
    """A local S3-compatible server (moto's, on 127.0.0.1 and a free port) for the whole session, reached
    the standard way: ``AWS_ENDPOINT_URL`` and dummy credentials in the environment. Stopped at the end."""
    import s3_fixture

    server, stop = s3_fixture.start()
    old = s3_fixture.set_env(s3_fixture.environment(server))
    yield server
    s3_fixture.restore_env(old)
    stop()


@pytest.fixture()
def s3_bucket(s3_server) -> str:
    """A fresh bucket of the session's S3 server, as ``s3://NAME``."""
    return s3_server.bucket()


@pytest.fixture(scope="session")
def ray_local(s3_server):
    """One private local Ray shared by the Ray tests: 2 CPUs, no dashboard, logs in a short temp folder.

    It starts after the S3 server, so its workers inherit ``AWS_ENDPOINT_URL`` and the credentials, as the
    nodes of a real cluster have them from their environment.

    It declares one GPU that this machine does not have, so that the GPU requests of the executor are real
    Ray requests: a task that asks for it gets ``CUDA_VISIBLE_DEVICES`` from Ray, finds no device in torch
    and runs on the CPU.
    """
    import ray

    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a length limit
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, _temp_dir=temp_dir,
             configure_logging=False)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture()
def short_tmp():
    """A temp folder with a short path under /tmp (Ray's socket paths have a length limit), removed after."""
    path = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory: pytest.TempPathFactory, sample_roots: dict[str, Path]) -> Path:
    """DATA with records of every sample source (read-only for tests)."""
    from imprint.executor import LocalExecutor
    from imprint.ingest.config import IngestConfig
    from imprint.ingest.job import run_ingest

    data = tmp_path_factory.mktemp("data")
    for source, root in sample_roots.items():
        cfg = IngestConfig(split="all" if source == "vipseg" else "train")
        run_ingest(source, root, data, cfg, LocalExecutor())
    return data


@pytest.fixture(scope="session")
def sample_shards(tmp_path_factory: pytest.TempPathFactory, sample_data: Path) -> Path:
    """DATA/shards with stage1/ and stage2/ at the tiny models' sizes (read-only for tests)."""
    from imprint.executor import LocalExecutor
    from imprint.pairing.config import PairsConfig
    from imprint.pairing.job import run_pairs
    from imprint.quality.filters import NO_FILTERS

    out = tmp_path_factory.mktemp("shards")
    cfg = PairsConfig(resolution=64, object_resolution=56, shard_rows=16, row_group_rows=8, pairs_per_instance=3,
                      filters=NO_FILTERS)  # every pair the sample makes (tests/test_quality_* filter)
    run_pairs(sample_data / "records", out / "stage1", 1, {"mvimgnet": 3}, cfg, LocalExecutor())
    run_pairs(sample_data / "records", out / "stage2", 2, {"ytvos": 3, "vipseg": 3}, cfg, LocalExecutor())
    return out


@pytest.fixture(scope="session")
def compositor(tmp_path_factory: pytest.TempPathFactory, sample_shards: Path) -> Path:
    """A tiny stage-2 export (RUN/final), trained for one step."""
    from imprint.config import load_config
    from imprint.train.config import TrainConfig, resolve_config_path
    from imprint.train.loop import train

    run = tmp_path_factory.mktemp("run2")
    cfg = load_config(TrainConfig, resolve_config_path("stage2-tiny"), ["max_steps=1", "log_with=none"])
    train(cfg, sample_shards / "stage2", run, from_dinov2=True)
    return run / "final"
