"""The Ray executor: same records as the local one, lost workers retried, our exceptions not, GPUs asked for."""

import time

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
    assert all(o.ok for o in outcomes) and [o.retries for o in outcomes] == [1, 1, 1]


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

        run_pairs(sample_data / "records", tmp_path / name, stage, sources, cfg, ex or LocalExecutor())
    local = sorted((tmp_path / "local").glob("part-*.parquet"))
    remote = sorted((tmp_path / "ray").glob("part-*.parquet"))
    assert len(local) >= 2 and [p.read_bytes() for p in local] == [p.read_bytes() for p in remote]
    assert (tmp_path / "local" / "manifest.json").read_text() == (tmp_path / "ray" / "manifest.json").read_text()
    # what the quality filters removed, too (each shard's excluded/ part is written by its own task)
    excluded = [sorted((tmp_path / name / "excluded").glob("*.parquet")) for name in ("local", "ray")]
    assert [p.name for p in excluded[0]] == [p.name for p in excluded[1]]
    assert [p.read_bytes() for p in excluded[0]] == [p.read_bytes() for p in excluded[1]]


def test_a_task_lost_every_time_fails_after_the_retries(ray_executor):
    outcomes = list(ray_executor.run(ray_tasks.always_die, [1]))
    assert len(outcomes) == 1 and not outcomes[0].ok and outcomes[0].retries == 2
    assert "task lost after 2 retries: WorkerCrashedError" in outcomes[0].error


def test_run_parts_reports_the_parts_run_again(tmp_path, ray_executor):
    from imprint.parts import run_parts

    lines = []
    todo = [ray_tasks.Part(f"part-{i:05d}", str(tmp_path), i) for i in range(3)]
    ran = run_parts(ray_executor, ray_tasks.die_once_then_mark, todo, "test", "rows", lambda m: m["rows"],
                    lines.append)
    assert ran.failed == {} and ran.retried == {"part-00000": 1, "part-00001": 1, "part-00002": 1}
    assert ran.retried_list() == [{"part": f"part-{i:05d}", "retries": 1} for i in range(3)]
    assert lines[-1] == ("[test] 3 part(s) ran again after their worker or node was lost: "
                         "part-00000, part-00001, part-00002")


def test_a_gpu_job_gets_a_gpu_and_a_cpu_job_never_does(ray_executor):
    from imprint.executor import GPU_TASK

    # ray_local declares one GPU: Ray hands it to each task of a GPU job (CUDA_VISIBLE_DEVICES=0) in turn
    gpu = sorted((o.result for o in ray_executor.with_resources(GPU_TASK).run(ray_tasks.visible_gpus, range(3))))
    assert gpu == [(0, "0"), (1, "0"), (2, "0")]
    cpu = sorted((o.result for o in ray_executor.run(ray_tasks.visible_gpus, range(3))))
    assert cpu == [(0, None), (1, None), (2, None)]


def test_a_cpu_job_never_waits_for_the_gpu(tmp_path, ray_executor):
    import threading

    from imprint.executor import GPU_TASK

    # A GPU job holds the only GPU until released; a CPU job on the same cluster meanwhile runs to its end.
    held = []
    gpu_job = threading.Thread(target=lambda: held.extend(
        ray_executor.with_resources(GPU_TASK).run(ray_tasks.hold_until, [(str(tmp_path), "gpu")])))
    gpu_job.start()
    try:
        for _ in range(600):
            if (tmp_path / "started-gpu").exists():
                break
            time.sleep(0.1)
        assert (tmp_path / "started-gpu").read_text() == "0"  # it holds GPU 0
        outcomes = list(ray_executor.run(ray_tasks.square, range(4)))
        assert sorted(o.result for o in outcomes) == [0, 1, 4, 9]
        assert not held  # the GPU task is still running: the CPU job did not wait for it
    finally:
        (tmp_path / "release").write_text("")
        gpu_job.join(timeout=120)
    assert [o.result for o in held] == ["gpu"]


def test_the_segmenter_runs_as_a_gpu_job_with_the_masks_of_a_local_run(tmp_path, ray_executor, monkeypatch):
    import io

    import numpy as np
    from http_fixture import FixtureServer
    from PIL import Image

    from imprint.executor import GPU_TASK, LocalExecutor, RayExecutor
    from imprint.ingest.download import DownloadConfig
    from imprint.ingest.segment import SegmentConfig, save_tiny_mask2former
    from imprint.ingest.urls import fetch_urls

    asked = []
    real = RayExecutor.with_resources
    monkeypatch.setattr(RayExecutor, "with_resources", lambda self, r: asked.append(r) or real(self, r))
    model = str(save_tiny_mask2former(tmp_path / "m2f", seed=0))
    seg = SegmentConfig(min_area_frac=0.0, max_area_frac=1.0, min_component_share=0.0, max_border_frac=1.0)
    rng = np.random.default_rng(0)
    with FixtureServer() as srv:
        urls = []
        for i in range(3):
            jpg = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(jpg, "JPEG")
            urls.append(srv.file(f"/im/{i}.jpg", jpg.getvalue()))
        (tmp_path / "list.csv").write_text("url\n" + "\n".join(urls) + "\n")
        roots = {name: fetch_urls(tmp_path / "list.csv", tmp_path / name, model, ex, download=DownloadConfig(),
                                  segment=seg, chunk=1)
                 for name, ex in (("local", LocalExecutor()), ("ray", ray_executor))}
    assert asked == [GPU_TASK]  # the Ray job asked for GPUs (ray_local has one); the local run needs none
    masks = {name: {p.relative_to(root): p.read_bytes() for p in sorted((root / "masks").rglob("*")) if p.is_file()}
             for name, root in roots.items()}
    assert len(masks["local"]) >= 3 and masks["local"] == masks["ray"]
