"""kill -9 of a run worker: its steps die with it and nothing the run did after the kill reaches anything.

`dagster dev` (webserver + daemon, its own process group, a free loopback port) runs on a temporary
DAGSTER_HOME whose dagster.yaml is the project's with run monitoring polling every 2 s and no automatic
retry (a retry is another run; leaving it out keeps "written after the kill" unambiguous). For an ingest
step (blocked on a loopback exchange that does not answer) and for a training step (an LSTM busy with its
epochs), the test launches the run as the UI does, waits until the step works, kills the run worker with
SIGKILL and then checks: the step processes are gone within seconds, the daemon marks the run FAILURE, and
after the kill the run recorded no step event (no materialization, check result, log or step success), the
store holds no candles of the day, the models directory no artifact. Without the step's parent-death
signal the ingest step lives on, gets its candles once the exchange answers and writes them
(`trading_assets.defs.run_guard`).
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml

from trading_assets.features.build import build_feature_days
from trading_assets.market.candles import day_bounds
from trading_assets.market.ingest import ingest_days
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.settings import PROJECT_ROOT
from trading_assets.store.duckdb_store import read_candles
from trading_assets_bench.harness.dagster_server import (
    DagsterServer,
    command_lines,
    descendants,
    pid_alive,
    processes_with_env,
)
from trading_assets_bench.harness.loopback_exchange import LoopbackExchange

pytestmark = pytest.mark.e2e  # starts `dagster dev`

SYMBOL = "BTC-USD"
YESTERDAY = datetime.now(UTC).date() - timedelta(days=1)
#: Days of stored features the training reads (before the ingested day, which stays empty).
FEATURE_DAYS = [YESTERDAY - timedelta(days=offset) for offset in range(7, 1, -1)]
STEP_GONE_S = 10
RUN_FAILED_S = 120
#: How long the test watches for late writes after the run is FAILURE (the ccxt timeout is 2 s).
LATE_WRITES_S = 12


@dataclass
class Cluster:
    server: DagsterServer
    exchange: LoopbackExchange
    home: Path
    db_path: Path
    models_dir: Path


def _instance_yaml(home: Path) -> None:
    config = yaml.safe_load((PROJECT_ROOT / "dagster_home" / "dagster.yaml").read_text())
    config["run_monitoring"]["poll_interval_seconds"] = 2
    config["run_retries"] = {"enabled": False}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("killed-run")
    home, db_path, models_dir = root / "home", root / "data" / "store.duckdb", root / "models"
    home.mkdir()
    db_path.parent.mkdir()
    _instance_yaml(home)
    source = SyntheticSource()
    ingest_days(source, db_path, SYMBOL, FEATURE_DAYS, 0.0)
    build_feature_days(db_path, SYMBOL, FEATURE_DAYS, FEATURE_DAYS[0])
    exchange = LoopbackExchange(source.fetch, hang=True)
    env = {
        "TA_SYMBOLS": SYMBOL,
        "TA_HISTORY_START": FEATURE_DAYS[0].isoformat(),
        "TA_DATA_DIR": str(db_path.parent),
        "TA_DUCKDB_PATH": str(db_path),
        "TA_MODELS_DIR": str(models_dir),
        "TA_SOURCE": "ccxt",
        "TA_CCXT_TIMEOUT_MS": "2000",
        "TA_CCXT_MAX_RETRIES": "60",  # the step keeps asking (and waiting) until the test kills its run
        "TA_TRAIN_EPOCHS": "500",
        "TA_FOLDS": "2",
    }
    with exchange:
        env["TA_CCXT_API_URL"] = exchange.url
        server = DagsterServer(home, env)
        try:
            server.start()
            yield Cluster(server, exchange, home, db_path, models_dir)
        finally:
            server.stop()
    left = processes_with_env("DAGSTER_HOME", str(home.resolve()))
    assert not left, f"left running: {command_lines(left)}"


def _run_worker(home: Path, run_id: str, timeout: float = 120.0) -> int:
    """The pid of the run's worker, from the multiprocess executor's "parent process (pid: N)" event (the
    code server starts the worker as a multiprocessing child, so no command line names the run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            for record in instance.all_logs(run_id):
                found = re.search(r"multiprocess executor: parent process \(pid: (\d+)\)", record.message)
                if found:
                    return int(found[1])
        time.sleep(0.2)
    raise AssertionError(f"no run worker for {run_id}")


def _wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _kill_worker_and_check(cluster: Cluster, run_id: str, worker: int) -> float:
    """kill -9 the worker; the step processes must go, the run must become FAILURE. The kill's time."""
    _wait_until(lambda: descendants(worker), 60, "the step process")
    steps = descendants(worker)
    assert steps, "the run's step runs in a child process of the worker (multiprocess executor)"
    killed_at = time.time()
    os.kill(worker, signal.SIGKILL)
    _wait_until(lambda: not any(pid_alive(pid) for pid in steps), STEP_GONE_S, "the step processes to end")
    assert cluster.server.wait_for_run(run_id, {"FAILURE", "SUCCESS", "CANCELED"}, RUN_FAILED_S) == "FAILURE"
    return killed_at


def _step_events_after(home: Path, run_id: str, moment: float) -> list[str]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return [
            f"{record.dagster_event.event_type_value if record.dagster_event else 'log'}: {record.message[:80]}"
            for record in instance.all_logs(run_id)
            if record.timestamp > moment and record.step_key is not None
        ]


def test_a_killed_ingest_run_writes_nothing_after_the_kill(cluster: Cluster) -> None:
    run_id = cluster.server.launch_run(
        ["raw_candles"], tags={"dagster/partition": f"{YESTERDAY.isoformat()}|{SYMBOL}"}
    )
    worker = _run_worker(cluster.home, run_id)
    _wait_until(lambda: cluster.exchange.candle_requests, 120, "the ingest step's first candle request")
    killed_at = _kill_worker_and_check(cluster, run_id, worker)
    cluster.exchange.hang = False  # a step that survived would now get its candles and write them
    time.sleep(LATE_WRITES_S)
    assert _step_events_after(cluster.home, run_id, killed_at) == []
    stored = read_candles(cluster.db_path, [SYMBOL], *day_bounds(YESTERDAY))
    assert stored.height == 0


def _training_started(home: Path, run_id: str) -> bool:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return any("epoch" in record.message for record in instance.all_logs(run_id) if record.step_key)


def test_a_killed_training_run_writes_nothing_after_the_kill(cluster: Cluster) -> None:
    run_id = cluster.server.launch_run(["lstm_model"], tags={"dagster/partition": SYMBOL})
    worker = _run_worker(cluster.home, run_id)
    _wait_until(lambda: _training_started(cluster.home, run_id), 180, "the first training epoch")
    killed_at = _kill_worker_and_check(cluster, run_id, worker)
    time.sleep(LATE_WRITES_S)
    assert _step_events_after(cluster.home, run_id, killed_at) == []
    artifacts = list(cluster.models_dir.rglob("manifest.json")) if cluster.models_dir.exists() else []
    assert artifacts == []
