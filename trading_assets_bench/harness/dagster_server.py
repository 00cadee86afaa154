"""Start `dagster dev` (webserver + daemon) on a loopback port and drive it through its GraphQL API.

Used by `trading-assets bench backfill` and by the end-to-end tests, so it imports no test framework.
`DagsterServer` starts `dagster dev -w workspace.yaml -h 127.0.0.1 -p <free port>` with a given
DAGSTER_HOME and environment in its own session (its own process group), waits until the GraphQL
endpoint answers and the code location is loaded, launches partition backfills with the same
`launchPartitionBackfill` mutation the UI sends, polls them, and `stop()` ends the process group it
started (SIGTERM, then SIGKILL after a timeout) and nothing else.

Multi-partition keys are strings with the dimensions sorted by name and joined by "|": for
symbol x date that is "2024-01-02|BTC-USD".
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from trading_assets.settings import PROJECT_ROOT

HOST = "127.0.0.1"
#: Backfill states after which nothing more happens (COMPLETED is the pre-1.9 name of COMPLETED_SUCCESS).
TERMINAL_BACKFILL_STATUSES = frozenset(
    {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
)
TERMINAL_RUN_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})

_PYTHON_ERROR = "... on PythonError { message stack }"

LAUNCH_BACKFILL_MUTATION = f"""
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {{
  launchPartitionBackfill(backfillParams: $backfillParams) {{
    __typename
    ... on LaunchBackfillSuccess {{ backfillId launchedRunIds }}
    ... on PartitionSetNotFoundError {{ message }}
    ... on PartitionKeysNotFoundError {{ message }}
    ... on UnauthorizedError {{ message }}
    ... on InvalidStepError {{ invalidStepKey }}
    ... on InvalidOutputError {{ stepKey invalidOutputName }}
    ... on PipelineNotFoundError {{ message }}
    ... on RunConflict {{ message }}
    ... on ConflictingExecutionParamsError {{ message }}
    ... on PresetNotFoundError {{ message }}
    ... on RunConfigValidationInvalid {{ pipelineName errors {{ message path reason }} }}
    {_PYTHON_ERROR}
  }}
}}
"""

BACKFILL_STATUS_QUERY = f"""
query BackfillStatus($backfillId: String!) {{
  partitionBackfillOrError(backfillId: $backfillId) {{
    __typename
    ... on PartitionBackfill {{
      id
      status
      numPartitions
      timestamp
      endTimestamp
      error {{ message stack }}
      runs {{ runId status startTime endTime tags {{ key value }} }}
      assetBackfillData {{
        assetBackfillStatuses {{
          __typename
          ... on AssetPartitionsStatusCounts {{
            assetKey {{ path }}
            numPartitionsTargeted
            numPartitionsInProgress
            numPartitionsMaterialized
            numPartitionsFailed
          }}
          ... on UnpartitionedAssetStatus {{ assetKey {{ path }} inProgress materialized failed }}
        }}
      }}
    }}
    ... on BackfillNotFoundError {{ message }}
    {_PYTHON_ERROR}
  }}
}}
"""

WORKSPACE_QUERY = f"""
query Workspace {{
  workspaceOrError {{
    __typename
    ... on Workspace {{
      locationEntries {{
        name
        loadStatus
        locationOrLoadError {{
          __typename
          ... on RepositoryLocation {{ name repositories {{ name }} }}
          {_PYTHON_ERROR}
        }}
      }}
    }}
    {_PYTHON_ERROR}
  }}
}}
"""

LAUNCH_RUN_MUTATION = f"""
mutation LaunchRun($executionParams: ExecutionParams!) {{
  launchRun(executionParams: $executionParams) {{
    __typename
    ... on LaunchRunSuccess {{ run {{ runId }} }}
    ... on RunConfigValidationInvalid {{ errors {{ message }} }}
    ... on InvalidStepError {{ invalidStepKey }}
    ... on PipelineNotFoundError {{ message }}
    ... on UnauthorizedError {{ message }}
    {_PYTHON_ERROR}
  }}
}}
"""

RUN_STATUS_QUERY = f"""
query RunStatus($runId: ID!) {{
  runOrError(runId: $runId) {{
    __typename
    ... on Run {{ status }}
    ... on RunNotFoundError {{ message }}
    {_PYTHON_ERROR}
  }}
}}
"""

DAEMONS_QUERY = """
query Daemons {
  instance { daemonHealth { allDaemonStatuses { daemonType required healthy lastHeartbeatTime } } }
}
"""


class DagsterServerError(RuntimeError):
    """The server did not start, a GraphQL call failed, or a wait ran out (the message says which)."""


def free_port(host: str = HOST) -> int:
    """A TCP port that was free on `host` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def dagster_command() -> list[str]:
    """The `dagster` CLI of the running interpreter's environment."""
    script = Path(sys.executable).with_name("dagster")
    if script.is_file():
        return [str(script)]
    found = shutil.which("dagster")
    return [found] if found else [sys.executable, "-m", "dagster"]


def multi_partition_key(**dimensions: str) -> str:
    """The string key of a multi-partition: values ordered by dimension name, joined by "|"."""
    return "|".join(value for _, value in sorted(dimensions.items()))


@dataclass(frozen=True)
class BackfillStatus:
    """One poll of a backfill: its status, its runs and per-asset partition counts."""

    backfill_id: str
    status: str
    runs: list[dict[str, Any]]
    assets: dict[str, dict[str, int]]
    error: str | None
    raw: dict[str, Any] = field(repr=False)

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_BACKFILL_STATUSES

    @property
    def unfinished_runs(self) -> list[dict[str, Any]]:
        return [run for run in self.runs if run["status"] not in TERMINAL_RUN_STATUSES]

    def summary(self) -> str:
        runs = ", ".join(f"{run['runId'][:8]}={run['status']}" for run in self.runs) or "none"
        assets = "; ".join(
            f"{key}: {counts.get('numPartitionsMaterialized', 0)}/{counts.get('numPartitionsTargeted', 0)} "
            f"done, {counts.get('numPartitionsInProgress', 0)} in progress, "
            f"{counts.get('numPartitionsFailed', 0)} failed"
            for key, counts in self.assets.items()
        )
        return f"backfill {self.backfill_id} {self.status}; runs: {runs}; {assets}"


def _process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks): tells a process from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _stat_fields() -> dict[int, list[str]]:
    """pid -> the fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, ...)."""
    fields: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            fields[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
    return fields


def _parent_pids() -> dict[int, int]:
    """pid -> parent pid of every process visible in /proc."""
    return {pid: int(stat[1]) for pid, stat in _stat_fields().items()}


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid`, wherever their parent went.

    A process the group spawned after the last look at its descendants (a run worker the daemon was
    launching as the server stopped) is still in the group, and the group id cannot be reused while it is.
    """
    return [pid for pid, stat in _stat_fields().items() if int(stat[2]) == pgid and stat[0] != "Z"]


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (from /proc), parents before their children."""
    children: dict[int, list[int]] = {}
    for child, parent in _parent_pids().items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    pending = list(children.get(pid, []))
    while pending:
        child = pending.pop(0)
        if child not in found:
            found.append(child)
            pending.extend(children.get(child, []))
    return found


def processes_with_env(name: str, value: str) -> list[int]:
    """Live processes (of this user) whose environment has `name=value`, e.g. one temporary DAGSTER_HOME.

    Independent of process groups: every process `dagster dev` starts (webserver, daemon, code servers,
    run workers, step workers) inherits DAGSTER_HOME, so this finds any that outlived `stop()`.
    """
    needle = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0") and pid_alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def command_lines(pids: Iterable[int]) -> list[str]:
    """ "<pid> <command line>" of each pid still readable: names a process that was left behind."""
    lines = []
    for pid in pids:
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            lines.append(f"{pid} {b' '.join(argv).decode(errors='replace').strip()}")
    return lines


def pid_alive(pid: int, start_time: str | None = None) -> bool:
    """True while `pid` runs (and, with `start_time`, is still the same process); zombies count as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return False
    return start_time is None or fields[19] == start_time


class DagsterServer:
    """`dagster dev` for one DAGSTER_HOME, on 127.0.0.1 and a free port, in its own process group.

    Use as a context manager, or call `start()` and `stop()`. The processes get the caller's environment
    without its TA_* variables, plus `env` and DAGSTER_HOME. Output of webserver, daemon and code server
    goes to `log_path` (default <DAGSTER_HOME>/dagster-dev.log).
    """

    def __init__(
        self,
        dagster_home: Path,
        env: Mapping[str, str] | None = None,
        *,
        project_root: Path = PROJECT_ROOT,
        workspace: str = "workspace.yaml",
        port: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.dagster_home = Path(dagster_home).resolve()
        self.project_root = Path(project_root)
        self.workspace = workspace
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.graphql_url = f"{self.url}/graphql"
        self.log_path = Path(log_path) if log_path else self.dagster_home / "dagster-dev.log"
        # The project's own settings come only from `env`: TA_* variables of the caller's shell are dropped,
        # so a benchmark or test is not changed by whatever the operator exported.
        inherited = {key: value for key, value in os.environ.items() if not key.startswith("TA_")}
        self.env = {**inherited, **(env or {}), "DAGSTER_HOME": str(self.dagster_home)}
        self.process: subprocess.Popen[bytes] | None = None
        self._session = requests.Session()
        self._known: dict[int, str | None] = {}

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 180.0) -> DagsterServer:
        """Start `dagster dev` and return once the code location is loaded (raises after `timeout`)."""
        if self.process is not None:
            raise DagsterServerError("already started")
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        command = [*dagster_command(), "dev", "-w", self.workspace, "-h", HOST, "-p", str(self.port)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.project_root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session and process group: stop() ends exactly this group
            )
        self._remember(self.process.pid)
        try:
            self.wait_until_loaded(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> DagsterServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pgid(self) -> int | None:
        return self.process.pid if self.process else None  # session leader: pgid == pid

    def _remember(self, *pids: int) -> None:
        for pid in pids:
            if pid not in self._known:
                self._known[pid] = _process_start_time(pid)

    def processes(self) -> list[int]:
        """Live processes this server started (the `dagster dev` process and its descendants)."""
        if self.process is None:
            return []
        self._remember(*descendants(self.process.pid), *group_members(self.process.pid))
        return [pid for pid, started in self._known.items() if pid_alive(pid, started)]

    def stop(self, timeout: float = 30.0) -> None:
        """End the process group started by `start()` (SIGTERM, then SIGKILL after `timeout`).

        It waits for every process of the group, also those spawned after the last look (a run worker
        launched as the server stopped), not only for the leader. Descendants that left the group (none
        are known to) are ended the same way, by pid and only while their start time still matches, so no
        unrelated process is ever signalled.
        """
        if self.process is None:
            return
        self.processes()  # note every descendant before signalling: they are reparented once we do
        pgid = self.process.pid
        self._signal(pgid, signal.SIGTERM)
        if not self._wait_until_gone(timeout):
            self._signal(pgid, signal.SIGKILL)
            self._wait_until_gone(10)
        self._session.close()

    def _wait_until_gone(self, timeout: float) -> bool:
        """Poll until nothing this server started runs (the leader reaped); False after `timeout`."""
        deadline = time.monotonic() + timeout
        while self._alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)
        return True

    def _alive(self) -> bool:
        """True while the leader, a process of its group, or a known descendant still runs."""
        if self.process is None:
            return False
        return self.process.poll() is None or bool(self.processes())

    def _signal(self, pgid: int, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)
        for pid, started in self._known.items():
            if pid_alive(pid, started):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if os.getpgid(pid) != pgid:
                        os.kill(pid, signum)

    def log_tail(self, chars: int = 6000) -> str:
        """The end of the combined webserver/daemon/code-server log, for diagnostics."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    # -- GraphQL ---------------------------------------------------------------------------------

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None, timeout: float = 60.0) -> dict:
        """POST one GraphQL document; its `data`, or DagsterServerError naming the errors."""
        response = self._session.post(
            self.graphql_url, json={"query": query, "variables": dict(variables or {})}, timeout=timeout
        )
        try:
            body = response.json()
        except ValueError as error:
            raise DagsterServerError(
                f"GraphQL answered {response.status_code}: {response.text[:500]}"
            ) from error
        if body.get("errors"):
            raise DagsterServerError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def wait_until_loaded(self, timeout: float = 180.0) -> None:
        """Poll until the webserver answers and every code location of the workspace has loaded.

        A location that loaded with an error (an import error in the definitions) raises at once.
        """
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise DagsterServerError(
                    f"dagster dev exited with {self.process.returncode}; log:\n{self.log_tail()}"
                )
            try:
                workspace = self.graphql(WORKSPACE_QUERY, timeout=10)["workspaceOrError"]
            except (requests.RequestException, DagsterServerError) as error:
                last = str(error)
                time.sleep(0.5)
                continue
            entries = workspace.get("locationEntries") or []
            loaded = [entry for entry in entries if entry["loadStatus"] == "LOADED"]
            for entry in loaded:
                location = entry.get("locationOrLoadError") or {}
                if location.get("__typename") == "PythonError":
                    raise DagsterServerError(
                        f"code location {entry['name']} failed to load: {location['message']}"
                    )
            if entries and len(loaded) == len(entries):
                return
            last = f"locations: {[(entry['name'], entry['loadStatus']) for entry in entries]}"
            time.sleep(0.5)
        raise DagsterServerError(f"not ready after {timeout:.0f} s ({last}); log:\n{self.log_tail()}")

    def daemon_statuses(self) -> dict[str, bool | None]:
        """Health of each daemon, e.g. {"BACKFILL": True, "QUEUED_RUN_COORDINATOR": True, ...}."""
        statuses = self.graphql(DAEMONS_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
        return {status["daemonType"]: status["healthy"] for status in statuses}

    def launch_partition_backfill(
        self,
        asset_keys: Iterable[str | Sequence[str]],
        partition_keys: Iterable[str],
        *,
        title: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Backfill `partition_keys` of assets that share one partitions definition, as the UI does.

        The UI's "Materialize → Launch backfill" sends this mutation with `assetSelection` and
        `partitionNames`. Returns the backfill id.
        """
        params: dict[str, Any] = {
            "assetSelection": [{"path": _path(key)} for key in asset_keys],
            "partitionNames": list(partition_keys),
            "fromFailure": False,
        }
        return self._launch(params, title, tags)

    def launch_backfill_by_asset(
        self,
        ranges_by_asset: Mapping[str, Sequence[tuple[str, str]]],
        *,
        title: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """One backfill with its own partition ranges per asset (`partitionsByAssets`).

        `ranges_by_asset` maps an asset key ("raw_candles" or "a/b") to inclusive (start, end) ranges;
        on a multi-partitions definition a range is the rectangle spanned by its two corner keys.
        """
        params = {
            "partitionsByAssets": [
                {
                    "assetKey": {"path": _path(key)},
                    "partitions": {"ranges": [{"start": start, "end": end} for start, end in ranges]},
                }
                for key, ranges in ranges_by_asset.items()
            ]
        }
        return self._launch(params, title, tags)

    def _launch(self, params: dict[str, Any], title: str | None, tags: Mapping[str, str] | None) -> str:
        if title:
            params["title"] = title
        if tags:
            params["tags"] = [{"key": key, "value": value} for key, value in tags.items()]
        result = self.graphql(LAUNCH_BACKFILL_MUTATION, {"backfillParams": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise DagsterServerError(f"backfill not launched: {result}")
        return result["backfillId"]

    def launch_run(
        self,
        asset_keys: Iterable[str | Sequence[str]],
        *,
        tags: Mapping[str, str] | None = None,
        run_config: Mapping[str, Any] | None = None,
    ) -> str:
        """Materialize `asset_keys` in one run (the `launchRun` mutation the UI's "Materialize" sends, with
        a partition as the tag `dagster/partition`); returns the run id."""
        [location] = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
        [repository] = location["locationOrLoadError"]["repositories"]
        params = {
            "selector": {
                "repositoryLocationName": location["name"],
                "repositoryName": repository["name"],
                "jobName": "__ASSET_JOB",
                "assetSelection": [{"path": _path(key)} for key in asset_keys],
            },
            "runConfigData": dict(run_config or {}),
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
        }
        result = self.graphql(LAUNCH_RUN_MUTATION, {"executionParams": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise DagsterServerError(f"run not launched: {result}")
        return result["run"]["runId"]

    def run_status(self, run_id: str) -> str:
        """QUEUED, STARTING, STARTED, SUCCESS, FAILURE, CANCELED, ..."""
        data = self.graphql(RUN_STATUS_QUERY, {"runId": run_id})["runOrError"]
        if data["__typename"] != "Run":
            raise DagsterServerError(f"run {run_id}: {data}")
        return data["status"]

    def wait_for_run(self, run_id: str, statuses: Iterable[str], timeout: float = 180.0) -> str:
        """Poll until the run's status is one of `statuses`; that status (DagsterServerError on timeout)."""
        wanted = set(statuses)
        deadline = time.monotonic() + timeout
        status = "unknown"
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                status = self.run_status(run_id)
            if status in wanted:
                return status
            time.sleep(0.5)
        raise DagsterServerError(
            f"run {run_id} is {status}, not {sorted(wanted)}, after {timeout:.0f} s; "
            f"daemons: {self._daemons_or_error()}; log:\n{self.log_tail()}"
        )

    def backfill_status(self, backfill_id: str) -> BackfillStatus:
        """The backfill's status (REQUESTED, COMPLETED_SUCCESS, COMPLETED_FAILED, ...), runs and counts."""
        data = self.graphql(BACKFILL_STATUS_QUERY, {"backfillId": backfill_id})["partitionBackfillOrError"]
        if data["__typename"] != "PartitionBackfill":
            raise DagsterServerError(f"backfill {backfill_id}: {data}")
        statuses = (data.get("assetBackfillData") or {}).get("assetBackfillStatuses") or []
        assets = {
            "/".join(entry["assetKey"]["path"]): {k: v for k, v in entry.items() if k.startswith("num")}
            for entry in statuses
            if entry.get("__typename") == "AssetPartitionsStatusCounts"
        }
        error = data.get("error")
        return BackfillStatus(
            backfill_id=backfill_id,
            status=data["status"],
            runs=data.get("runs") or [],
            assets=assets,
            error=error["message"] if error else None,
            raw=data,
        )

    def wait_for_backfill(
        self,
        backfill_id: str,
        timeout: float = 600.0,
        poll_seconds: float = 2.0,
        progress: Callable[[str], None] | None = None,
    ) -> BackfillStatus:
        """Poll until the backfill has ended and none of its runs is still going; its last status.

        `progress`, if given, is called with each new summary line. On timeout the error carries the
        last status and the end of the server log.
        """
        deadline = time.monotonic() + timeout
        last_summary = ""
        status: BackfillStatus | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise DagsterServerError(
                    f"dagster dev exited with {self.process.returncode} while waiting for {backfill_id}; "
                    f"log:\n{self.log_tail()}"
                )
            try:
                status = self.backfill_status(backfill_id)
            except requests.RequestException as error:  # a busy webserver may time out once
                last_summary = f"poll failed: {error}"
                time.sleep(poll_seconds)
                continue
            summary = status.summary()
            if progress is not None and summary != last_summary:
                progress(summary)
            last_summary = summary
            if status.ended and not status.unfinished_runs:
                return status
            time.sleep(poll_seconds)
        raise DagsterServerError(
            f"backfill {backfill_id} did not end within {timeout:.0f} s: {last_summary}; "
            f"daemons: {self._daemons_or_error()}; log:\n{self.log_tail()}"
        )

    def _daemons_or_error(self) -> str:
        try:
            return str(self.daemon_statuses())
        except (requests.RequestException, DagsterServerError) as error:
            return f"unknown ({error})"


def _path(key: str | Sequence[str]) -> list[str]:
    return key.split("/") if isinstance(key, str) else list(key)
