"""DagsterServer.stop() ends every process of the group it started, also those born after its last look.

A stand-in for `dagster dev` (a shell in its own session) plays the race that once left a run worker
behind: a child spawned after `stop()` noted the descendants, that takes a while to exit on SIGTERM.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from trading_assets_bench.harness.dagster_server import DagsterServer, group_members, pid_alive


def _start_stand_in(server: DagsterServer, pid_file: Path, child_seconds: float) -> None:
    """The leader starts a child that ignores SIGTERM for `child_seconds` (a run worker cleaning up)."""
    child = f"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep({child_seconds})"
    script = f"{sys.executable} -c '{child}' & echo $! > {pid_file}; wait"
    server.process = subprocess.Popen(["bash", "-c", script], start_new_session=True)


def _wait_for(path: Path) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written")


def test_stop_waits_for_a_group_member_it_never_saw(tmp_path: Path, monkeypatch) -> None:
    server = DagsterServer(tmp_path / "home", port=1)
    # stop() looks at the descendants first; pretend the look found none, as when the child is born after it.
    monkeypatch.setattr("trading_assets_bench.harness.dagster_server.descendants", lambda pid: [])
    pid_file = tmp_path / "child.pid"
    _start_stand_in(server, pid_file, child_seconds=2)
    child = _wait_for(pid_file)
    assert child in group_members(server.process.pid)
    server.stop(timeout=10)
    assert not pid_alive(child)
    assert group_members(server.process.pid) == []


def test_stop_kills_a_group_member_that_outlives_the_timeout(tmp_path: Path, monkeypatch) -> None:
    server = DagsterServer(tmp_path / "home", port=1)
    monkeypatch.setattr("trading_assets_bench.harness.dagster_server.descendants", lambda pid: [])
    pid_file = tmp_path / "child.pid"
    _start_stand_in(server, pid_file, child_seconds=600)
    child = _wait_for(pid_file)
    server.stop(timeout=0.5)
    assert not pid_alive(child)  # it would sleep 10 minutes: SIGKILL ended it
