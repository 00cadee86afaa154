"""A real Dask cluster on loopback: one scheduler and N workers, each its own OS process.

Used by the tests and by `trading-assets bench backfill --store ducklake`, so it imports no test framework.
Usage::

    with dask_cluster(tmp_path / "dask", env={"TA_DUCKDB_PATH": ...}) as cluster:
        ...  # cluster.address, e.g. "tcp://127.0.0.1:40123"; cluster.worker_pids

The processes are started with the `dask` CLI of this virtual environment, exactly as an operator would
(``dask scheduler`` / ``dask worker ADDRESS --nworkers 1 --nthreads 1``), each in its own session and
process group, with its output in a log file under the given directory. The scheduler listens on
127.0.0.1 on a port the OS picks (``--port 0``; the scheduler writes the address it got into its
``--scheduler-file``), so no free-port race. Workers inherit this process's environment plus ``env``: this
is how settings such as TA_DUCKDB_PATH reach the steps that run in them. Workers also get
``TA_DASK_SCHEDULER=<address>``, as a deployment's workers share the code location's environment.

Each worker is a host of its own as far as the filesystem goes: under ``<log_dir>/<name>/`` it has its own
working directory (``work/``, its cwd), temporary directory (``tmp/``, TMPDIR) and Dask local directory
(``dask/``); ``worker_env(name, directory)`` adds per-worker settings (e.g. a local TA_DATA_DIR).
``preload`` names modules each worker imports before it registers (``dask worker --preload``), so the first
task does not pay for importing the code location.

`DaskCluster.kill_worker` ends a worker as a machine dies: SIGKILL to its whole process group (the
``dask worker`` nanny and the process that runs the tasks), no goodbye to the scheduler.
`DaskCluster.add_worker` starts another (a replacement).

On exit (also when the block raises) exactly the processes started here are stopped: SIGTERM to each,
then SIGKILL to each one's process group once the timeout has passed (the group also holds the worker
process that a worker's nanny spawns). As a safety net for a parent killed with SIGKILL, workers exit when
their scheduler is gone for ``--death-timeout`` and the scheduler closes after ``--idle-timeout`` without
work.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DASK_CLI = Path(sys.executable).with_name("dask")
_START_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 10.0

#: Per-worker settings: (worker name, the worker's own directory) -> extra environment variables.
WorkerEnv = Callable[[str, Path], Mapping[str, str]]


@dataclass
class DaskCluster:
    """A running scheduler and its workers, all started by `dask_cluster`."""

    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]
    log_dir: Path
    #: Worker address -> pid of the process that runs the tasks (a child of the `dask worker` process).
    worker_pids: dict[str, int] = field(default_factory=dict)
    #: Worker name (worker-0, ...) -> its `dask worker` process (the nanny, leader of its process group).
    by_name: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: Worker name -> its own directory (work/, tmp/, dask/ and whatever worker_env puts there).
    directories: dict[str, Path] = field(default_factory=dict)
    _env: dict[str, str] = field(default_factory=dict, repr=False)
    _worker_env: WorkerEnv | None = field(default=None, repr=False)
    _preload: tuple[str, ...] = field(default=(), repr=False)

    def logs(self) -> str:
        """The tail of every process's log, for assertion messages."""
        return "\n".join(f"--- {log.name}\n{_tail(log)}" for log in sorted(self.log_dir.glob("*.log")))

    def pids_by_name(self) -> dict[str, int]:
        """Worker name -> pid of the process that runs its tasks (what a step's events record as `pid`)."""
        import distributed

        with distributed.Client(self.address, timeout=_START_TIMEOUT_S) as client:
            names = {address: info["name"] for address, info in client.scheduler_info()["workers"].items()}
            return {str(names[address]): pid for address, pid in client.run(os.getpid).items()}

    def processing(self) -> dict[str, list[str]]:
        """Worker name -> the keys of the tasks the scheduler has it running now."""
        import distributed

        with distributed.Client(self.address, timeout=_START_TIMEOUT_S) as client:
            names = {address: info["name"] for address, info in client.scheduler_info()["workers"].items()}
            return {
                str(names[address]): [str(key) for key in keys]
                for address, keys in client.processing().items()
            }

    def add_worker(self, name: str | None = None) -> str:
        """Start one more worker (e.g. replacing a dead one) and wait until it has registered; its name."""
        name = name or f"worker-{len(self.by_name)}"
        self.workers.append(_start_worker(self, name))
        self.worker_pids = _wait_for_workers(self, self.live_workers())
        return name

    def kill_worker(self, name: str) -> None:
        """kill -9 the worker's whole process group (its nanny and its task process), as a machine dies."""
        worker = self.by_name[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=_STOP_TIMEOUT_S)
        self.worker_pids = _wait_for_workers(self, self.live_workers())

    def stop_worker(self, name: str) -> None:
        """Stop a worker the orderly way (SIGTERM: it hands its data back and leaves); wait until it is gone."""
        stop_processes([self.by_name[name]])
        self.worker_pids = _wait_for_workers(self, self.live_workers())

    def live_workers(self) -> list[str]:
        return [name for name, process in self.by_name.items() if process.poll() is None]


@contextmanager
def dask_cluster(
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    n_workers: int = 2,
    worker_env: WorkerEnv | None = None,
    preload: Sequence[str] = (),
    scheduler_env: Mapping[str, str] | None = None,
    base_env: Mapping[str, str] | None = None,
) -> Iterator[DaskCluster]:
    """Start a scheduler and `n_workers` single-threaded workers; stop them all when the block exits.

    The processes' environment is `base_env` (default: this process's) plus `env`."""
    if not DASK_CLI.exists():
        raise RuntimeError(f"{DASK_CLI} not found: install the `dask` extra (pip install -e '.[dask]')")
    log_dir.mkdir(parents=True, exist_ok=True)
    process_env = {
        **(os.environ if base_env is None else base_env),
        "PYTHONUNBUFFERED": "1",
        # Steps load the job by module name (dg.reconstructable); the tests package is not installed.
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
        **(env or {}),
    }
    scheduler: subprocess.Popen[bytes] | None = None
    cluster: DaskCluster | None = None
    try:
        scheduler_file = log_dir / "scheduler.json"
        scheduler_dir = log_dir / "scheduler"
        scheduler_dir.mkdir(exist_ok=True)
        scheduler = start_process(
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
            {**process_env, **(scheduler_env or {})},
            scheduler_dir,
        )
        address = _wait_for_address(scheduler, scheduler_file, log_dir / "scheduler.log")
        # Workers rebuild the job from the code location, which with TA_EXECUTOR=dask reads the address.
        cluster = DaskCluster(
            address=address,
            scheduler=scheduler,
            workers=[],
            log_dir=log_dir,
            _env={**process_env, "TA_DASK_SCHEDULER": address},
            _worker_env=worker_env,
            _preload=tuple(preload),
        )
        for index in range(n_workers):
            cluster.workers.append(_start_worker(cluster, f"worker-{index}"))
        cluster.worker_pids = _wait_for_workers(cluster, cluster.live_workers())
        yield cluster
    finally:
        # Workers first, while their scheduler is still there to say goodbye to (a worker that loses its
        # scheduler while closing makes its nanny wait seconds before killing it), then the scheduler.
        stop_processes(cluster.workers if cluster is not None else [])
        stop_processes([scheduler] if scheduler is not None else [])


def _start_worker(cluster: DaskCluster, name: str) -> subprocess.Popen[bytes]:
    directory = cluster.log_dir / name
    for sub in ("work", "tmp", "dask"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    extra = dict(cluster._worker_env(name, directory)) if cluster._worker_env else {}
    env = {**cluster._env, "TMPDIR": str(directory / "tmp"), **extra}
    command = [
        str(DASK_CLI),
        "worker",
        cluster.address,
        "--host",
        "127.0.0.1",
        "--name",
        name,
        "--nworkers",
        "1",
        "--nthreads",
        "1",
        "--no-dashboard",
        "--death-timeout",
        "60s",
        "--local-directory",
        str(directory / "dask"),
    ]
    for module in cluster._preload:
        command += ["--preload", module]
    worker = start_process(command, cluster.log_dir / f"{name}.log", env, directory / "work")
    cluster.by_name[name] = worker
    cluster.directories[name] = directory
    return worker


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


def start_process(
    command: list[str], log: Path, env: Mapping[str, str], cwd: Path
) -> subprocess.Popen[bytes]:
    """`command` in its own session (a process group to stop whole), output appended to `log`, in `cwd`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            cwd=cwd,
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


def _wait_for_workers(cluster: DaskCluster, names: Sequence[str]) -> dict[str, int]:
    """Block until the scheduler knows exactly the workers `names`; their task-running pids, by address."""
    import distributed

    deadline = time.monotonic() + _START_TIMEOUT_S
    with distributed.Client(cluster.address, timeout=_START_TIMEOUT_S) as client:
        while True:
            known = {str(info["name"]) for info in client.scheduler_info()["workers"].values()}
            if known == set(names):
                return dict(client.run(os.getpid))
            if time.monotonic() >= deadline:
                exited = [p.args[1] for p in [cluster.scheduler, *cluster.workers] if p.poll() is not None]
                raise RuntimeError(
                    f"dask workers {sorted(names)} did not register within {_START_TIMEOUT_S} s (registered: "
                    f"{sorted(known)}; exited: {exited or 'none'}):\n{cluster.logs()}"
                )
            time.sleep(0.2)


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
