"""The run guard: a step whose run is no longer STARTED writes nothing; binding applies to step processes only."""

import multiprocessing

import dagster as dg
import pytest

from trading_assets.defs.run_guard import (
    RunNotActiveError,
    bind_to_parent_process,
    guard_step,
    run_still_active,
)


def test_a_step_whose_run_was_marked_failed_stops_before_writing(dagster_instance) -> None:
    written: list[str] = []

    @dg.asset
    def writer(context: dg.AssetExecutionContext) -> None:
        run_active = guard_step(context)
        run_active()  # STARTED: fine
        written.append("first")
        context.instance.report_run_failed(context.run)  # as the daemon does when the worker died
        run_active()
        written.append("second")

    result = dg.materialize([writer], instance=dagster_instance, raise_on_error=False)
    assert written == ["first"]
    [failure] = [event for event in result.all_events if event.is_step_failure]
    error = failure.step_failure_data.error
    while error.cause is not None:
        error = error.cause
    assert error.cls_name == "RunNotActiveError"
    assert error.message.strip().endswith("is FAILURE: this step writes nothing more")


def test_an_unknown_run_is_not_active(dagster_instance) -> None:
    with pytest.raises(RunNotActiveError, match="gone from the instance"):
        run_still_active(dagster_instance, "0" * 36)()


def _bound(queue) -> None:
    queue.put(bind_to_parent_process())


def test_only_a_multiprocessing_child_binds_itself_to_its_parent() -> None:
    assert not bind_to_parent_process()  # the test process: never bound to pytest's parent
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_bound, args=(queue,))
    child.start()
    child.join(60)
    assert queue.get(timeout=5) is True
