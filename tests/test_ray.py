"""The Ray executor: same records as the local one, lost workers retried, our exceptions not."""

import pytest
from helpers import ingest, read_report

import ray_tasks
from imprint.executor import RayExecutor

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_executor(ray_local):
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(ray_tasks)
    return RayExecutor(max_retries=2)


@pytest.mark.parametrize("source", ["ytvos", "vipseg", "ppr10k", "mvimgnet"])
def test_ray_and_local_write_identical_parts(sample_roots, tmp_path, ray_executor, source):
    cfg = {"groups_per_part": 1, "split": "all" if source == "vipseg" else "train"}
    ingest(source, sample_roots[source], tmp_path / "local", **cfg)
    ingest(source, sample_roots[source], tmp_path / "ray", ray_executor, **cfg)
    local = sorted((tmp_path / "local" / "records" / source).glob("part-*.parquet"))
    remote = sorted((tmp_path / "ray" / "records" / source).glob("part-*.parquet"))
    assert len(local) >= 2 and [p.name for p in local] == [p.name for p in remote]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(local, remote))
    ref, got = read_report(tmp_path / "local", source), read_report(tmp_path / "ray", source)
    assert got["executor"] == "ray"
    assert (got["seen"], got["kept"], got["dropped"]) == (ref["seen"], ref["kept"], ref["dropped"])


def test_a_task_lost_with_its_worker_is_retried(tmp_path, ray_executor):
    outcomes = sorted(ray_executor.run(ray_tasks.die_once_then_square, [(str(tmp_path), x) for x in range(3)]),
                      key=lambda o: o.index)
    assert [o.result for o in outcomes] == [0, 1, 4]
    assert all(o.ok for o in outcomes)


def test_an_exception_in_our_code_is_a_failure_not_a_retry(tmp_path, ray_executor):
    outcomes = list(ray_executor.run(ray_tasks.count_and_raise, [(str(tmp_path), 7)]))
    assert len(outcomes) == 1 and not outcomes[0].ok
    assert "ValueError: bad input 7" in outcomes[0].error
    assert (tmp_path / "calls-7").read_text() == "1"


@pytest.mark.parametrize("stage,sources", [(1, {"mvimgnet": 3}), (2, {"ytvos": 3, "ppr10k": 2})])
def test_pairs_on_ray_are_byte_identical_to_local(sample_data, tmp_path, ray_executor, stage, sources):
    from imprint.pairing.config import PairsConfig
    from imprint.pairing.job import run_pairs

    cfg = PairsConfig(resolution=64, object_resolution=32, shard_rows=8)
    for name, ex in (("local", None), ("ray", ray_executor)):
        from imprint.executor import LocalExecutor

        run_pairs(sample_data / "records", tmp_path / name, stage, sources, cfg, ex or LocalExecutor(),
                  log=lambda _m: None)
    local = sorted((tmp_path / "local").glob("part-*.parquet"))
    remote = sorted((tmp_path / "ray").glob("part-*.parquet"))
    assert len(local) >= 2 and [p.read_bytes() for p in local] == [p.read_bytes() for p in remote]
    assert (tmp_path / "local" / "manifest.json").read_text() == (tmp_path / "ray" / "manifest.json").read_text()
