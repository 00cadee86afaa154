"""A run the demo launched can be re-executed from the UI: the webserver's GraphQL API re-executes it.

The demo launches its runs through the code location (`trading_assets.demo.runs.CodeLocationRuns`). This
test launches the demo's first stage (raw_candles, one symbol, one day) that way into a temporary
DAGSTER_HOME, then starts `dagster dev` on that home (its own process group, a free loopback port) and
sends `launchPipelineReexecution` with strategy ALL_STEPS, as the UI's "Re-execute all" does, and waits for
the new run to succeed. In-process runs (without `remote_job_origin`) fail this with "Expected non-None value".
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from trading_assets.defs.partitions import partition_range_tags
from trading_assets.demo.runs import CodeLocationRuns
from trading_assets.settings import PROJECT_ROOT
from trading_assets_bench.harness.dagster_server import DagsterServer, command_lines, processes_with_env

pytestmark = pytest.mark.e2e  # starts `dagster dev`

DAY = date(2026, 11, 25)
SYMBOL = "ETH-USD"
RUN_TIMEOUT_S = 120

REEXECUTE = """
mutation Reexecute($parentRunId: String!) {
  launchPipelineReexecution(reexecutionParams: {parentRunId: $parentRunId, strategy: ALL_STEPS}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidStepError { invalidStepKey }
    ... on UnauthorizedError { message }
    ... on PipelineNotFoundError { message }
  }
}
"""

RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status pipelineName parentRunId repositoryOrigin { repositoryLocationName } }
    ... on PythonError { message }
  }
}
"""


def test_a_demo_run_is_re_executed_through_the_webserver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    settings_env = {
        "TA_SYMBOLS": SYMBOL,
        "TA_DATA_DIR": str(tmp_path / "data"),
        "TA_MODELS_DIR": str(tmp_path / "models"),
    }
    for name, value in {**settings_env, "DAGSTER_HOME": str(home)}.items():
        monkeypatch.setenv(name, value)  # the code server and run worker inherit them

    with (
        dg.DagsterInstance.get() as instance,
        CodeLocationRuns(instance, PROJECT_ROOT / "workspace.yaml") as runs,
    ):
        parent_id = runs.launch(["raw_candles"], tags=partition_range_tags(DAY, DAY, (SYMBOL,)))
        parent = runs.wait(parent_id)
    assert parent.status == dg.DagsterRunStatus.SUCCESS and not parent.errors

    server = DagsterServer(home, settings_env)
    try:
        server.start()
        launched = server.graphql(REEXECUTE, {"parentRunId": parent_id})["launchPipelineReexecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        child_id = launched["run"]["runId"]
        child = _wait_for_run(server, child_id)
    finally:
        server.stop()
    assert child["status"] == "SUCCESS", child
    assert child["parentRunId"] == parent_id
    assert child["pipelineName"] == "__ASSET_JOB" and child["repositoryOrigin"] is not None
    assert command_lines(processes_with_env("DAGSTER_HOME", str(home.resolve()))) == []


def _wait_for_run(server: DagsterServer, run_id: str) -> dict:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = server.graphql(RUN, {"runId": run_id})["runOrError"]
        if run.get("status") in ("SUCCESS", "FAILURE", "CANCELED"):
            return run
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not end within {RUN_TIMEOUT_S} s; log:\n{server.log_tail()}")
