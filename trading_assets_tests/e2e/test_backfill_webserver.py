"""End to end through `dagster dev`: backfills launched over GraphQL exactly as the UI launches them.

One module-scoped scenario starts webserver + daemon (`trading_assets_bench.harness.dagster_server`) in its own
process group on a free loopback port, with a temporary DAGSTER_HOME (the shipped dagster.yaml: queued
runs, at most 3 at once, training pool), data and models directory, and:

1. backfills `raw_candles` + `features` (one `launchPartitionBackfill` with `assetSelection` and
   `partitionNames`, as the UI's "Materialize → Launch backfill" sends) for the last DAYS complete UTC
   days of three symbols; the history starts on the first of those days, so the first day's features
   need no earlier candles and no feature partition after the last day exists to be pulled in;
2. backfills the model assets (LSTM and scikit-learn) and their promoted_* assets for all symbols;
3. waits for the check-failure alert of SOL-USD, whose synthetic market is pure noise
   (TA_SYNTHETIC_PREDICTABILITY_BY_SYMBOL=SOL-USD=0), so its models fail `accuracy_gate`;
4. stops everything it started.

The tests then assert the final state (stored rows, check results, promotions, alerts, no process left),
not run counts: the daemon's automation sensor may launch runs of its own while this runs.
Training uses TA_TRAIN_EPOCHS / TA_TRAIN_SAMPLES_PER_EPOCH (a GraphQL backfill carries no run config).
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from trading_assets.alerts import AlertLog
from trading_assets.promotion.registry import current, history
from trading_assets.settings import PROJECT_ROOT
from trading_assets_bench.harness.dagster_server import (
    BackfillStatus,
    DagsterServer,
    command_lines,
    processes_with_env,
)

pytestmark = pytest.mark.e2e  # starts `dagster dev` (webserver + daemon)

SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")
LEARNABLE = ("BTC-USD", "ETH-USD")
NOISE = "SOL-USD"
#: Days of candles and features per symbol: the model test's 18 days keep the gates of the learnable
#: symbols reliably above their thresholds (fewer make the calibration gate noisy).
DAYS = 18
#: One torch model and the scikit-learn one. The transformer asset comes from the same factory as the LSTM
#: (`build_model_asset`) and is covered in-process by defs/test_model_assets.py; through the daemon it would
#: add a third training per symbol (about a minute here, with the training pool of 2 and 2 run slots).
MODEL_TYPES = ("lstm", "logistic")
MINUTES_PER_DAY = 1440
#: Generous: the machine is shared; a wait that runs out prints the backfill, the daemons and the log.
BACKFILL_TIMEOUT_S = 900
ALERT_TIMEOUT_S = 150


@dataclass
class Scenario:
    root: Path
    home: Path
    data_dir: Path
    models_dir: Path
    days: list[date]
    data_backfill: BackfillStatus
    model_backfill: BackfillStatus
    started_pids: list[int]
    left_running: list[int]
    left_with_our_home: list[str]  # pid and command line
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "trading_assets.duckdb"


def _raise_system_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _latest_complete_days(count: int) -> list[date]:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    return [yesterday - timedelta(days=offset) for offset in reversed(range(count))]


def _wait_for_alert(alerts_dir: Path, server: DagsterServer, timeout: float) -> None:
    """Until an accuracy_gate alert for the noise symbol is logged (the sensor ticks every 30 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(_is_noise_gate_alert(alert.details) for alert in AlertLog(alerts_dir).alerts()):
            return
        if server.process is not None and server.process.poll() is not None:
            return
        time.sleep(2)


def _is_noise_gate_alert(details: dict) -> bool:
    return details.get("check") == "accuracy_gate" and details.get("partition") == NOISE


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    root = tmp_path_factory.mktemp("e2e-webserver")
    home, data_dir, models_dir = root / "dagster_home", root / "data", root / "models"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    days = _latest_complete_days(DAYS)
    env = {
        "TA_DATA_DIR": str(data_dir),
        "TA_MODELS_DIR": str(models_dir),
        "TA_DUCKDB_PATH": str(data_dir / "trading_assets.duckdb"),
        "TA_SYMBOLS": ",".join(SYMBOLS),
        "TA_HISTORY_START": days[0].isoformat(),
        "TA_SOURCE": "synthetic",
        "TA_SYNTHETIC_PREDICTABILITY": "0.4",
        "TA_FOLDS": "2",  # the demo's policy: 18 days hold 2 walk-forward folds of about 1.3 days
        "TA_SYNTHETIC_PREDICTABILITY_BY_SYMBOL": f"{NOISE}=0",
        "TA_TRAIN_EPOCHS": "2",
        "TA_TRAIN_SAMPLES_PER_EPOCH": "3000",
        "TA_ALERT_WEBHOOK_URL": "",
    }
    server = DagsterServer(home, env)
    seconds: dict[str, float] = {}
    previous_handler = signal.signal(signal.SIGTERM, _raise_system_exit)
    clock = time.monotonic()
    try:
        server.start(timeout=240)
        seconds["startup"] = time.monotonic() - clock
        # 1. Candles and features: the UI's shape (asset selection + partition names "<date>|<symbol>").
        data_id = server.launch_partition_backfill(
            ["raw_candles", "features"],
            [f"{day.isoformat()}|{symbol}" for day in days for symbol in SYMBOLS],
            title="e2e candles and features",
        )
        data_backfill = server.wait_for_backfill(data_id, timeout=BACKFILL_TIMEOUT_S, progress=print)
        seconds["data_backfill"] = time.monotonic() - clock - seconds["startup"]
        # 2. Models and promotions for every symbol. A failed gate is not worth a run retry (the shipped
        # dagster.yaml retries failed runs once), so these runs are tagged not to retry on step failure.
        model_assets = [f"{t}_model" for t in MODEL_TYPES] + [f"promoted_{t}_model" for t in MODEL_TYPES]
        model_id = server.launch_partition_backfill(
            model_assets,
            list(SYMBOLS),
            title="e2e models",
            tags={"dagster/retry_on_asset_or_op_failure": "false"},
        )
        model_backfill = server.wait_for_backfill(model_id, timeout=BACKFILL_TIMEOUT_S, progress=print)
        seconds["model_backfill"] = time.monotonic() - clock - sum(seconds.values())
        # 3. The check-failure sensor raises the alert on its next tick.
        _wait_for_alert(data_dir / "alerts", server, ALERT_TIMEOUT_S)
        seconds["alert_wait"] = time.monotonic() - clock - sum(seconds.values())
        started_pids = server.processes()
    except BaseException:
        print(f"server log tail:\n{server.log_tail(8000)}")
        raise
    finally:
        stop_clock = time.monotonic()
        server.stop()
        seconds["stop"] = time.monotonic() - stop_clock
        signal.signal(signal.SIGTERM, previous_handler)
    print(f"e2e timings (s): { {key: round(value, 1) for key, value in seconds.items()} }")
    yield Scenario(
        root=root,
        home=home,
        data_dir=data_dir,
        models_dir=models_dir,
        days=days,
        data_backfill=data_backfill,
        model_backfill=model_backfill,
        started_pids=started_pids,
        left_running=server.processes(),
        left_with_our_home=command_lines(processes_with_env("DAGSTER_HOME", str(home.resolve()))),
        seconds=seconds,
    )


def _latest_check_results(home: Path, asset: str, check: str) -> dict[str | None, str]:
    """Latest executed (not merely planned) result per partition of one check: SUCCEEDED, FAILED, ..."""
    key = dg.AssetCheckKey(dg.AssetKey(asset), check)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.event_log_storage.get_asset_check_execution_history(key, limit=10_000)
    latest: dict[str | None, str] = {}
    for record in records:  # newest first
        if record.status == AssetCheckExecutionRecordStatus.PLANNED:
            continue
        latest.setdefault(record.partition, record.status.value)
    return latest


def test_candle_and_feature_backfill_stores_every_partition(scenario: Scenario) -> None:
    status = scenario.data_backfill
    assert status.status == "COMPLETED_SUCCESS", status.summary()
    partitions = len(scenario.days) * len(SYMBOLS)
    for asset in ("raw_candles", "features"):
        counts = status.assets[asset]
        assert counts["numPartitionsTargeted"] == partitions, status.summary()
        assert counts["numPartitionsMaterialized"] == partitions, status.summary()
    connection = duckdb.connect(str(scenario.db_path), read_only=True)
    try:
        for table in ("candles", "features"):
            rows = dict(
                connection.execute(f"SELECT symbol, count(*) FROM {table} GROUP BY symbol").fetchall()
            )
            assert rows == {symbol: len(scenario.days) * MINUTES_PER_DAY for symbol in SYMBOLS}, table
        first, last = connection.execute("SELECT min(minute), max(minute) FROM candles").fetchall()[0]
    finally:
        connection.close()
    assert first.date() == scenario.days[0] and last.date() == scenario.days[-1]


def test_a_data_backfill_runs_each_symbol_in_its_own_run(scenario: Scenario) -> None:
    """One symbol's failure fails only its own partitions: the single-run backfill policy over the symbol x
    date partitions makes one run per symbol (each run's partition range names one symbol)."""
    symbols_per_run = []
    for run in scenario.data_backfill.runs:
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        keys = [
            tags.get("dagster/asset_partition_range_start"),
            tags.get("dagster/asset_partition_range_end"),
        ]
        keys = [key for key in [*keys, tags.get("dagster/partition")] if key]
        symbols_per_run.append(sorted({key.split("|")[1] for key in keys}))
    assert all(len(symbols) == 1 for symbols in symbols_per_run), symbols_per_run
    assert {symbols[0] for symbols in symbols_per_run} == set(SYMBOLS)


@pytest.mark.parametrize(
    ("asset", "check"),
    [
        ("raw_candles", "ohlc_consistency"),
        ("raw_candles", "no_duplicate_minutes"),
        ("raw_candles", "stored_rows"),
        ("raw_candles", "coverage"),
        ("features", "finite_values"),
        ("features", "value_ranges"),
        ("features", "stored_rows"),
    ],
)
def test_data_checks_pass_for_every_partition(scenario: Scenario, asset: str, check: str) -> None:
    results = _latest_check_results(scenario.home, asset, check)
    expected = {f"{day.isoformat()}|{symbol}" for day in scenario.days for symbol in SYMBOLS}
    assert set(results) >= expected
    assert {results[key] for key in expected} == {"SUCCEEDED"}, results


def test_gates_pass_for_learnable_symbols_and_fail_for_noise(scenario: Scenario) -> None:
    status = scenario.model_backfill
    assert status.ended, status.summary()
    for model_type in MODEL_TYPES:
        accuracy = _latest_check_results(scenario.home, f"{model_type}_model", "accuracy_gate")
        calibration = _latest_check_results(scenario.home, f"{model_type}_model", "calibration_gate")
        skill = _latest_check_results(scenario.home, f"{model_type}_model", "skill_gate")
        for symbol in LEARNABLE:
            # every model beats the naive rules clearly; accuracy and calibration of a 2-epoch LSTM sit
            # near their thresholds, so only the logistic model's are asserted
            assert skill.get(symbol) == "SUCCEEDED", (model_type, symbol, skill)
            if model_type == "logistic":
                assert accuracy.get(symbol) == "SUCCEEDED", (model_type, symbol, accuracy)
                assert calibration.get(symbol) == "SUCCEEDED", (model_type, symbol, calibration)
        assert accuracy.get(NOISE) == "FAILED", (model_type, accuracy)


def test_learnable_models_promoted_and_noise_models_not(scenario: Scenario) -> None:
    for symbol in LEARNABLE:
        assert current(scenario.models_dir, "logistic", symbol) is not None, symbol
    for model_type in MODEL_TYPES:
        for symbol in LEARNABLE:
            promoted = current(scenario.models_dir, model_type, symbol)
            if promoted is not None:  # promoted only with every gate passed, as recorded in its manifest
                assert all(result["passed"] for result in promoted.manifest["gates"]["results"])
                assert promoted.manifest["metrics"]["calibrated"]["accuracy"] >= 0.68
        assert current(scenario.models_dir, model_type, NOISE) is None, model_type
    promoted_symbols = {
        entry["symbol"] for entry in history(scenario.models_dir) if entry["action"] == "promote"
    }
    assert promoted_symbols == set(LEARNABLE)
    counts = scenario.model_backfill.assets
    for model_type in MODEL_TYPES:
        promoted_here = sum(current(scenario.models_dir, model_type, s) is not None for s in LEARNABLE)
        assert counts[f"promoted_{model_type}_model"]["numPartitionsMaterialized"] == promoted_here, counts


def test_failed_gate_raises_an_alert_naming_symbol_and_check(scenario: Scenario) -> None:
    path = scenario.data_dir / "alerts" / "alerts.jsonl"
    assert path.exists(), "no alert was written"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    gate_alerts = [record for record in records if _is_noise_gate_alert(record["details"])]
    assert gate_alerts, [record["text"] for record in records]
    assert all("SOL-USD" in alert["text"] and "accuracy_gate" in alert["text"] for alert in gate_alerts)
    assert {alert["details"]["asset"] for alert in gate_alerts} <= {f"{t}_model" for t in MODEL_TYPES}
    learnable_gate_alerts = [
        record
        for record in records
        if record["details"].get("check") in ("accuracy_gate", "calibration_gate")
        and record["details"].get("partition") in LEARNABLE
        and record["details"].get("asset") == "logistic_model"  # the 2-epoch LSTM may sit near a threshold
    ]
    assert learnable_gate_alerts == []


def test_everything_started_is_stopped(scenario: Scenario) -> None:
    assert scenario.started_pids, "the server's processes were not seen while it ran"
    assert scenario.left_running == []
    assert scenario.left_with_our_home == []
