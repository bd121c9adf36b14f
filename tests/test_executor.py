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
