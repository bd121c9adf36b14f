import pytest

from imprint.executor import LocalExecutor, make_executor


def _square_or_fail(x: int) -> int:
    if x == 3:
        raise ValueError("three is bad input")
    return x * x


def test_local_executor_counts_an_exception_as_a_failed_task_and_goes_on():
    outcomes = list(LocalExecutor().run(_square_or_fail, [1, 2, 3, 4]))
    assert [o.index for o in outcomes] == [0, 1, 2, 3]
    assert [o.result for o in outcomes if o.ok] == [1, 4, 16]
    failed = [o for o in outcomes if not o.ok]
    assert len(failed) == 1 and "three is bad input" in failed[0].error and "Traceback" in failed[0].error


def test_make_executor_names():
    assert make_executor("local").name == "local"
    try:
        make_executor("spark")
    except ValueError as exc:
        assert "local, ray" in str(exc)
    else:
        raise AssertionError("an unknown executor must be refused")


def test_a_cpu_job_never_asks_for_a_gpu():
    from imprint.executor import CPU_TASK, task_options

    for cluster in ({"CPU": 8}, {"CPU": 8, "GPU": 2}):
        options, slots = task_options(CPU_TASK, cluster)
        assert options == {"num_cpus": 1.0, "num_gpus": 0} and slots == 8


def test_a_gpu_job_asks_for_gpus_only_where_the_cluster_has_them():
    from imprint.executor import GPU_TASK, Resources, task_options

    assert task_options(GPU_TASK, {"CPU": 16, "GPU": 2}) == ({"num_cpus": 1.0, "num_gpus": 1.0}, 2)
    # a fraction shares a GPU: four tasks on each of 2 GPUs, but never more tasks than CPUs
    assert task_options(Resources(gpus=0.25), {"CPU": 16, "GPU": 2}) == ({"num_cpus": 1.0, "num_gpus": 0.25}, 8)
    assert task_options(Resources(gpus=0.25), {"CPU": 3, "GPU": 2})[1] == 3
    # no GPU on the cluster: the job runs on CPUs like any other, never waiting for a GPU that will not come
    assert task_options(GPU_TASK, {"CPU": 4}) == ({"num_cpus": 1.0, "num_gpus": 0}, 4)


def test_resources_are_checked():
    from imprint.executor import Resources

    for bad in ({"cpus": 0}, {"gpus": -1}):
        with pytest.raises(ValueError, match="cpus > 0 and gpus >= 0"):
            Resources(**bad)


def test_the_local_executor_runs_a_gpu_job_in_process():
    from imprint.executor import GPU_TASK

    local = LocalExecutor()
    assert local.with_resources(GPU_TASK) is local
    assert [o.result for o in local.with_resources(GPU_TASK).run(_square_or_fail, [2])] == [4]
