from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from trading_assets.alerts import AlertLog
from trading_assets.definitions import defs
from trading_assets.defs.resources import DuckDBStoreResource, MarketDataResource
from trading_assets.defs.sensors import build_alert_sensors
from trading_assets.market.candles import day_bounds
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.settings import load_settings
from trading_assets_tests.defs.code_location import raw_candles
from trading_assets_tests.webhook_receiver import WebhookReceiver

DAY = date(2024, 1, 2)


def check_failure_alerts(context: dg.SensorEvaluationContext) -> None:
    """The sensor as the code location builds it from the current environment (alert dir, webhook)."""
    build_alert_sensors(load_settings())[0](context)


def run_failure_alerts(context: dg.RunFailureSensorContext) -> None:
    build_alert_sensors(load_settings())[1](context)


@pytest.fixture
def gappy_resources(tmp_path: Path, db_path: Path) -> dict:
    """A files source whose day misses its first 3 hours: the coverage check fails (WARN)."""
    candles = SyntheticSource().fetch("BTC-USD", *day_bounds(DAY))
    files = tmp_path / "files"
    files.mkdir()
    candles.filter(pl.col("minute").dt.hour() >= 3).write_parquet(files / "BTC-USD.parquet")
    return {
        "market_data": MarketDataResource(source="files", files_dir=str(files)),
        "store": DuckDBStoreResource(path=str(db_path)),
    }


def evaluate_check_sensor(instance: dg.DagsterInstance) -> None:
    context = dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def())
    check_failure_alerts(context)


def test_failed_checks_alert_once_across_restarts_and_reach_the_webhook(
    dagster_instance, gappy_resources, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("TA_DATA_DIR", str(tmp_path / "data"))
    result = dg.materialize(
        [raw_candles], partition_key=f"{DAY}|BTC-USD", resources=gappy_resources, instance=dagster_instance
    )
    assert result.success, "a WARN check does not fail the run"
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("TA_ALERT_WEBHOOK_URL", receiver.url)
        evaluate_check_sensor(dagster_instance)
        evaluate_check_sensor(dagster_instance)  # a second tick, as after a daemon restart
    alerts = _logged(tmp_path)
    assert [a.details["check"] for a in alerts] == ["coverage"]
    assert alerts[0].details["partition"] == f"{DAY}|BTC-USD"
    [payload] = receiver.received
    assert "check coverage on raw_candles [2024-01-02|BTC-USD] failed" in payload["text"]


def test_a_webhook_that_is_down_does_not_break_the_sensor(
    dagster_instance, gappy_resources, tmp_path, monkeypatch
):
    monkeypatch.setenv("TA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TA_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/unreachable")
    dg.materialize(
        [raw_candles], partition_key=f"{DAY}|BTC-USD", resources=gappy_resources, instance=dagster_instance
    )
    evaluate_check_sensor(dagster_instance)
    assert len(AlertLog(tmp_path / "data" / "alerts").pending()) == 1


def test_a_failed_run_alerts(dagster_instance, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TA_DATA_DIR", str(tmp_path / "data"))

    @dg.asset
    def always_fails() -> None:
        raise RuntimeError("boom")

    result = dg.materialize([always_fails], instance=dagster_instance, raise_on_error=False)
    run = dagster_instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts",
        dagster_instance=dagster_instance,
        dagster_run=run,
        dagster_event=failure,
    ).for_run_failure()
    run_failure_alerts(context)
    run_failure_alerts(context)
    [alert] = _logged(tmp_path)
    assert alert.key == f"run:{run.run_id}" and "failed" in alert.text


def _logged(tmp_path: Path) -> list:
    return AlertLog(tmp_path / "data" / "alerts").alerts()


SYMBOL_PARTITIONS = dg.StaticPartitionsDefinition(["BTC-USD"])


@dg.asset(
    key="lstm_model",
    partitions_def=SYMBOL_PARTITIONS,
    check_specs=[
        dg.AssetCheckSpec(
            "accuracy_gate", asset="lstm_model", blocking=True, partitions_def=SYMBOL_PARTITIONS
        )
    ],
)
def gated_model():
    """Stands in for a model whose blocking accuracy gate fails (no training needed)."""
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(
        check_name="accuracy_gate",
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"measured": 0.51234, "threshold": 0.68, "samples": 5000},
    )


@dg.asset(deps=[gated_model], partitions_def=SYMBOL_PARTITIONS)
def promoted_stand_in() -> None:
    pass


def run_failure_context(instance: dg.DagsterInstance, result) -> dg.RunFailureSensorContext:
    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    return dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts", dagster_instance=instance, dagster_run=run, dagster_event=failure
    ).for_run_failure()


def test_a_failed_gate_alerts_once_with_measured_and_threshold_and_the_run_not_again(
    dagster_instance, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("TA_DATA_DIR", str(tmp_path / "data"))
    result = dg.materialize(
        [gated_model, promoted_stand_in],
        partition_key="BTC-USD",
        instance=dagster_instance,
        raise_on_error=False,
    )
    assert not result.success
    repository = dg.Definitions(assets=[gated_model, promoted_stand_in]).get_repository_def()
    check_failure_alerts(dg.build_sensor_context(instance=dagster_instance, repository_def=repository))
    run_failure_alerts(run_failure_context(dagster_instance, result))
    [alert] = _logged(tmp_path)
    assert alert.text == (
        f"ERROR: check accuracy_gate on lstm_model [BTC-USD] failed in run {result.run_id[:8]}: "
        "measured 0.5123 vs threshold 0.6800 (5000 samples)"
    )
    assert (alert.details["check"], alert.details["partition"]) == ("accuracy_gate", "BTC-USD")


def test_a_run_failing_for_another_reason_names_the_step_and_redacts_credentials(
    dagster_instance, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("TA_DATA_DIR", str(tmp_path / "data"))

    @dg.asset
    def exchange_down() -> None:
        raise RuntimeError("GET https://trader:hunter2@proxy.example/candles answered 502")

    result = dg.materialize([exchange_down], instance=dagster_instance, raise_on_error=False)
    run_failure_alerts(run_failure_context(dagster_instance, result))
    [alert] = _logged(tmp_path)
    assert "exchange_down: RuntimeError: GET https://***@proxy.example/candles answered 502" in alert.text
    assert "hunter2" not in (tmp_path / "data" / "alerts" / "alerts.jsonl").read_text()
