"""A real Dask cluster on loopback for tests: one scheduler and N workers, each its own OS process.

Usage::

    with dask_cluster(tmp_path / "dask", env={"TA_DUCKDB_PATH": ...}) as cluster:
        ...  # cluster.address, e.g. "tcp://127.0.0.1:40123"; cluster.worker_pids

The processes are started with the `dask` CLI of this virtual environment, exactly as an operator would
(``dask scheduler`` / ``dask worker ADDRESS --nworkers 1 --nthreads 1``), each in its own session and
process group, with its output in a log file under the given directory. The scheduler listens on
127.0.0.1 on a port the OS picks (``--port 0``; the scheduler writes the address it got into its
``--scheduler-file``), so no free-port race. Workers inherit the test's environment plus ``env``: this is
how settings such as TA_DUCKDB_PATH reach the steps that run in them. Workers also get
``TA_DASK_SCHEDULER=<address>``, as a deployment's workers share the code location's environment.

On exit (also when the block raises) exactly the processes started here are stopped: SIGTERM to each,
then SIGKILL to each one's process group once the timeout has passed (the group also holds the worker
process that a worker's nanny spawns). As a safety net for a test process killed with SIGKILL, workers
exit when their scheduler is gone for ``--death-timeout`` and the scheduler closes after
``--idle-timeout`` without work.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DASK_CLI = Path(sys.executable).with_name("dask")
_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 10.0


@dataclass
class DaskCluster:
    """A running scheduler and its workers, all started by `dask_cluster`."""

    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]
    log_dir: Path
    #: Worker address -> pid of the process that runs the tasks (a child of the `dask worker` process).
    worker_pids: dict[str, int] = field(default_factory=dict)

    def logs(self) -> str:
        """The tail of every process's log, for assertion messages."""
        return "\n".join(f"--- {log.name}\n{_tail(log)}" for log in sorted(self.log_dir.glob("*.log")))


@contextmanager
def dask_cluster(
    log_dir: Path, env: Mapping[str, str] | None = None, n_workers: int = 2
) -> Iterator[DaskCluster]:
    """Start a scheduler and `n_workers` single-threaded workers; stop them all when the block exits."""
    if not DASK_CLI.exists():
        raise RuntimeError(f"{DASK_CLI} not found: install the `dask` extra (pip install -e '.[dask]')")
    log_dir.mkdir(parents=True, exist_ok=True)
    process_env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        # Steps load the job by module name (dg.reconstructable); the tests package is not installed.
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
        **(env or {}),
    }
    started: list[subprocess.Popen[bytes]] = []
    try:
        scheduler_file = log_dir / "scheduler.json"
        scheduler = _start(
            [
                str(DASK_CLI),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(scheduler_file),
                "--idle-timeout",
                "900s",
            ],
            log_dir / "scheduler.log",
            process_env,
        )
        started.append(scheduler)
        address = _wait_for_address(scheduler, scheduler_file, log_dir / "scheduler.log")
        # Workers rebuild the job from the code location, which with TA_EXECUTOR=dask reads the address.
        worker_env = {**process_env, "TA_DASK_SCHEDULER": address}
        workers = []
        for index in range(n_workers):
            worker = _start(
                [
                    str(DASK_CLI),
                    "worker",
                    address,
                    "--host",
                    "127.0.0.1",
                    "--name",
                    f"worker-{index}",
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--death-timeout",
                    "60s",
                    "--local-directory",
                    str(log_dir / f"worker-{index}"),
                ],
                log_dir / f"worker-{index}.log",
                worker_env,
            )
            started.append(worker)
            workers.append(worker)
        cluster = DaskCluster(address=address, scheduler=scheduler, workers=workers, log_dir=log_dir)
        cluster.worker_pids = _wait_for_workers(cluster, n_workers)
        yield cluster
    finally:
        # Workers first, while their scheduler is still there to say goodbye to (a worker that loses its
        # scheduler while closing makes its nanny wait seconds before killing it), then the scheduler.
        stop_processes(started[1:])
        stop_processes(started[:1])


def stop_processes(processes: list[subprocess.Popen[bytes]], timeout_s: float = _STOP_TIMEOUT_S) -> None:
    """SIGTERM each process, then SIGKILL each one's process group once `timeout_s` has passed."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + timeout_s
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        # Started with start_new_session: the group id is the pid. This also reaps a worker process its
        # nanny left behind; the group is empty (ProcessLookupError) when everything exited cleanly.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        if process.poll() is None:
            process.wait(timeout=timeout_s)


def _start(command: list[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            cwd=REPO_ROOT,
            start_new_session=True,
        )


def _wait_for_address(scheduler: subprocess.Popen[bytes], scheduler_file: Path, log: Path) -> str:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if scheduler.poll() is not None:
            raise RuntimeError(f"dask scheduler exited with {scheduler.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError, ValueError):
            return str(json.loads(scheduler_file.read_text())["address"])
        time.sleep(0.1)
    raise RuntimeError(f"dask scheduler wrote no address within {_START_TIMEOUT_S} s:\n{_tail(log)}")


def _wait_for_workers(cluster: DaskCluster, n_workers: int) -> dict[str, int]:
    """Block until `n_workers` workers are registered; their task-running pids, by worker address."""
    import distributed

    with distributed.Client(cluster.address, timeout=_START_TIMEOUT_S) as client:
        try:
            client.wait_for_workers(n_workers, timeout=_START_TIMEOUT_S)
        except TimeoutError as error:
            exited = [p.args[1] for p in [cluster.scheduler, *cluster.workers] if p.poll() is not None]
            raise RuntimeError(
                f"{n_workers} dask workers did not register within {_START_TIMEOUT_S} s "
                f"(exited: {exited or 'none'}):\n{cluster.logs()}"
            ) from error
        return dict(client.run(os.getpid))


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
