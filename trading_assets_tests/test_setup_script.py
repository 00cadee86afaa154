"""scripts/torch_install.py, which scripts/setup.sh runs: the pip command for each kind of machine, the GPU and
index probes, the fallback with its one line, and nothing to do when torch is already installed."""

from __future__ import annotations

import http.server
import importlib.util
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "torch_install.py"
_spec = importlib.util.spec_from_file_location("torch_install", SCRIPT)
torch_install = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(torch_install)

PY = "/venv/bin/python"
BASE = [PY, "-m", "pip", "--disable-pip-version-check", "-q", "install"]


def test_without_a_gpu_the_cpu_build_comes_from_pytorchs_cpu_index_with_a_short_timeout() -> None:
    command = torch_install.torch_install_command(False, True, "2.13.0", python=PY)
    assert command == [
        *BASE,
        "--index-url",
        "https://download.pytorch.org/whl/cpu",
        "--extra-index-url",
        "https://pypi.org/simple",
        "--timeout",
        "15",
        "--retries",
        "1",
        "torch==2.13.0",
    ]


def test_without_a_gpu_and_an_unreachable_index_plain_pip_decides() -> None:
    assert torch_install.torch_install_command(False, False, "2.13.0", python=PY) == [*BASE, "torch==2.13.0"]


@pytest.mark.parametrize("reachable", [True, False])
def test_a_gpu_machine_gets_pypis_cuda_build(reachable: bool) -> None:
    command = torch_install.torch_install_command(True, reachable, "2.12.1", python=PY)
    assert command == [*BASE, "torch==2.12.1"]
    assert "--index-url" not in command


def test_the_command_uses_the_running_interpreter_by_default() -> None:
    assert torch_install.torch_install_command(False, False, "2.13.0")[0] == sys.executable


def _fake_nvidia_smi(directory: Path, exit_code: int) -> None:
    binary = directory / "nvidia-smi"
    binary.write_text(f"#!/bin/sh\nexit {exit_code}\n")
    binary.chmod(binary.stat().st_mode | stat.S_IEXEC)


def test_a_gpu_is_an_nvidia_smi_that_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not torch_install.has_gpu()  # absent
    _fake_nvidia_smi(tmp_path, 9)  # present, no driver or no GPU
    assert not torch_install.has_gpu()
    _fake_nvidia_smi(tmp_path, 0)
    assert torch_install.has_gpu()


@pytest.fixture
def index_server() -> Iterator[str]:
    class Index(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200 if self.path == "/whl/cpu/torch/" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/whl/cpu"
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_index_probe_is_quick_either_way(index_server: str) -> None:
    assert torch_install.index_reachable(index_server, timeout=2)
    started = time.monotonic()
    assert not torch_install.index_reachable(f"http://127.0.0.1:{_closed_port()}/whl/cpu", timeout=2)
    assert not torch_install.index_reachable("http://no-such-host.invalid/whl/cpu", timeout=2)
    assert time.monotonic() - started < 10


def test_a_silent_index_times_out_instead_of_hanging() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        started = time.monotonic()
        assert not torch_install.index_reachable(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.5)
        assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("installed", "requested", "nothing_to_do"),
    [
        (None, None, False),
        (None, "2.13.0", False),
        ("2.13.0+cpu", None, True),
        ("2.13.0+cpu", "2.13.0", True),
        ("2.13.0", "2.13.0", True),
        ("2.13.0+cpu", "2.12.1", False),
    ],
)
def test_an_installed_torch_is_kept_unless_another_version_is_asked_for(
    installed: str | None, requested: str | None, nothing_to_do: bool
) -> None:
    assert torch_install.wanted_is_installed(installed, requested) is nothing_to_do


class _Machine:
    """main() with the probes and pip replaced: records the pip commands, answers them from `results`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, gpu: bool, reachable: bool, results: list[int]):
        self.commands: list[list[str]] = []
        self.results = results
        monkeypatch.setattr(torch_install, "installed_version", lambda: None)
        monkeypatch.setattr(torch_install, "has_gpu", lambda: gpu)
        monkeypatch.setattr(torch_install, "index_reachable", lambda: reachable)
        monkeypatch.setattr(torch_install, "run_pip", self.run_pip)

    def run_pip(self, command: list[str]) -> int:
        self.commands.append(command)
        return self.results.pop(0)


def test_an_unreachable_index_falls_back_to_plain_pip_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TORCH_VERSION", "2.12.1")
    machine = _Machine(monkeypatch, gpu=False, reachable=False, results=[0])
    assert torch_install.main([]) == 0
    assert machine.commands == [torch_install.torch_install_command(False, False, "2.12.1")]
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "unreachable" in err and "torch==2.12.1" in err


def test_a_failed_install_from_the_cpu_index_falls_back_to_plain_pip(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TORCH_VERSION", raising=False)
    machine = _Machine(monkeypatch, gpu=False, reachable=True, results=[1, 0])
    assert torch_install.main([]) == 0
    version = torch_install.DEFAULT_VERSION
    assert machine.commands == [
        torch_install.torch_install_command(False, True, version),
        torch_install.torch_install_command(False, False, version),
    ]
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_a_gpu_machine_installs_once_and_reports_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORCH_VERSION", raising=False)
    machine = _Machine(monkeypatch, gpu=True, reachable=False, results=[1])
    assert torch_install.main([]) == 1
    assert machine.commands == [
        torch_install.torch_install_command(True, False, torch_install.DEFAULT_VERSION)
    ]


def test_an_installed_torch_means_no_pip_and_no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORCH_VERSION", raising=False)
    machine = _Machine(monkeypatch, gpu=False, reachable=True, results=[])
    monkeypatch.setattr(torch_install, "installed_version", lambda: "2.13.0+cpu")
    monkeypatch.setattr(torch_install, "index_reachable", lambda: pytest.fail("probed"))
    assert torch_install.main([]) == 0
    assert machine.commands == []


def test_the_script_itself_has_nothing_to_do_in_this_environment() -> None:
    """What setup.sh runs on every call: with torch installed it returns at once, installing nothing."""
    env = {name: value for name, value in os.environ.items() if name != "TORCH_VERSION"}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout == result.stderr == ""
    assert time.monotonic() - started < 10
