"""Runs launched through the code location of workspace.yaml, as the UI and the daemon launch them.

`CodeLocationRuns` loads the workspace (a code server process, like `dagster dev` starts), builds each run
from the code location's remote job (`__ASSET_JOB` subset to the selected assets), so the run carries its
`remote_job_origin` (re-executable from the UI, shown on the Overview timeline as "Job: __ASSET_JOB"), and
hands it to the instance's run launcher (the DefaultRunLauncher starts a run worker process). The
instance's run coordinator is bypassed on purpose: a queued run would wait for a daemon the demo does
not start.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import dagster as dg
from dagster import DagsterEventType, DagsterRunStatus

from trading_assets.defs.dagster_private import (
    JobSubsetSelector,
    WorkspaceFileTarget,
    WorkspaceProcessContext,
)

#: The implicit job of all assets that the UI's "Materialize" launches a subset of.
ASSET_JOB = "__ASSET_JOB"
#: Why a step failed when its own blocking check failed: an expected result, not an error of the stage.
BLOCKING_CHECK_FAILED = "DagsterAssetCheckFailedError"
ENDED = frozenset({DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED})
POLL_SECONDS = 0.5


@dataclass
class RunOutcome:
    """What one run did: status, its errors (not counting blocking check failures), check evaluations and
    the metadata of each asset it materialized (by asset key string)."""

    run_id: str
    status: DagsterRunStatus
    seconds: float
    errors: list[str] = field(default_factory=list)
    evaluations: list[dg.AssetCheckEvaluation] = field(default_factory=list)
    materialized: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    def checks_of(self, asset: str) -> list[dg.AssetCheckEvaluation]:
        return [e for e in self.evaluations if e.asset_key.to_user_string() == asset]


class CodeLocationRuns:
    """Launch asset runs through the workspace's only code location and wait for them (a context manager:
    leaving it stops the code server)."""

    def __init__(self, instance: dg.DagsterInstance, workspace_file: Path) -> None:
        self.instance = instance
        self.workspace_file = Path(workspace_file)
        self._process: WorkspaceProcessContext | None = None

    def __enter__(self) -> CodeLocationRuns:
        self._process = WorkspaceProcessContext(
            self.instance, WorkspaceFileTarget(paths=[str(self.workspace_file)])
        )
        self._process.__enter__()
        self.workspace = self._process.create_request_context()
        names = self.workspace.code_location_names
        if len(names) != 1:
            raise RuntimeError(f"{self.workspace_file} must name one code location, found {list(names)}")
        error = self.workspace.get_code_location_error(names[0])
        if error is not None:
            raise RuntimeError(f"code location {names[0]} failed to load: {error.message.strip()}")
        self.location = self.workspace.get_code_location(names[0])
        (self.repository,) = self.location.get_repositories().values()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            self._process.__exit__(exc_type, exc, tb)

    def launch(
        self,
        assets: Sequence[str],
        tags: Mapping[str, str] | None = None,
        run_config: Mapping[str, Any] | None = None,
    ) -> str:
        """Launch a run materializing `assets` (and their checks); its run id."""
        selector = JobSubsetSelector(
            location_name=self.location.name,
            repository_name=self.repository.name,
            job_name=ASSET_JOB,
            op_selection=None,
            asset_selection=[dg.AssetKey.from_user_string(asset) for asset in assets],
        )
        remote_job = self.location.get_job(selector)
        config = dict(run_config or {})
        plan = self.location.get_execution_plan(
            remote_job, config, step_keys_to_execute=None, known_state=None, instance=self.instance
        )
        run = self.instance.create_run(
            job_name=ASSET_JOB,
            run_id=None,
            run_config=config,
            resolved_op_selection=None,
            step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
            status=DagsterRunStatus.NOT_STARTED,
            op_selection=None,
            root_run_id=None,
            parent_run_id=None,
            tags={**remote_job.tags, **(tags or {})},
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=frozenset(selector.asset_selection or ()),
            asset_check_selection=remote_job.asset_check_selection,
            asset_graph=self.repository.asset_graph,
        )
        self.instance.launch_run(run.run_id, self.workspace)
        return run.run_id

    def wait(self, run_id: str, on_message: Callable[[str], None] | None = None) -> RunOutcome:
        """Wait for the run to end, passing each new log message (`context.log` lines) to `on_message`."""
        started = time.monotonic()
        cursor: str | None = None
        while True:
            run = self.instance.get_run_by_id(run_id)
            ended = run is not None and run.status in ENDED
            connection = self.instance.get_records_for_run(run_id, cursor=cursor)
            cursor = connection.cursor
            for record in connection.records:
                entry = record.event_log_entry
                if entry.dagster_event is None and on_message is not None:
                    on_message(entry.user_message)
            if ended and not connection.has_more:
                return self._outcome(run_id, run.status, time.monotonic() - started)
            if not connection.has_more:
                time.sleep(POLL_SECONDS)

    def _outcome(self, run_id: str, status: DagsterRunStatus, seconds: float) -> RunOutcome:
        outcome = RunOutcome(run_id, status, seconds)
        for entry in self.instance.all_logs(run_id):
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
                materialization = entry.asset_materialization
                outcome.materialized[materialization.asset_key.to_user_string()] = materialization.metadata
            elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
                outcome.evaluations.append(event.asset_check_evaluation_data)
            elif event.event_type == DagsterEventType.STEP_FAILURE:
                error = event.step_failure_data.error
                if error is not None and BLOCKING_CHECK_FAILED not in _error_classes(error):
                    outcome.errors.append(f"step {event.step_key}: {_why(event.step_failure_data)}")
            elif event.event_type == DagsterEventType.RUN_FAILURE and not outcome.errors:
                failure = event.event_specific_data
                reason = getattr(failure, "failure_reason", None)
                if reason is not None and reason.value != "STEP_FAILURE":
                    outcome.errors.append(f"run: {_first_line(entry.message or reason.value)}")
        if status == DagsterRunStatus.CANCELED:
            outcome.errors.append("run: canceled")
        return outcome


def _error_classes(error) -> set[str]:
    """Class names of a serialized error and its causes (Dagster wraps user errors)."""
    names = set()
    while error is not None:
        names.add(error.cls_name or "")
        error = error.cause
    return names


def _why(failure) -> str:
    """A failed step's reason: a `Failure`'s description, else the first line of the innermost error (the
    user's exception, not Dagster's "Error occurred while executing op" wrapper)."""
    user = failure.user_failure_data
    if user is not None and user.description:
        return _first_line(user.description)
    error = failure.error
    while error.cause is not None:
        error = error.cause
    return _first_line(error.message)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text and text.strip() else "(no message)"
