"""`live_performance` through Dagster: metadata per member, a WARN check when accuracy is below the gate, and
a passing check that says how many outcomes it waits for while too few have arrived."""

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from trading_assets.alerts import AlertLog
from trading_assets.definitions import defs
from trading_assets.defs.resources import DuckDBStoreResource
from trading_assets.defs.sensors import build_alert_sensors
from trading_assets.market.ingest import ingest_day
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.runtime.dryrun import Signal, record_signals
from trading_assets.settings import load_settings
from trading_assets.store.duckdb_store import query
from trading_assets_tests.defs.code_location import live_performance_asset

START = datetime(2024, 3, 1, tzinfo=UTC)


def alerts_after_a_sensor_tick(instance: dg.DagsterInstance, data_dir: Path) -> list[str]:
    """The texts of the alerts `check_failure_alerts` raises on one tick (alerts written under `data_dir`)."""
    settings = replace(load_settings(), data_dir=data_dir, alert_webhook_url=None)
    sensor = build_alert_sensors(settings)[0]
    sensor(dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def()))
    return [alert.text for alert in AlertLog(settings.alerts_dir).alerts()]


def materialize(db_path: Path, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [live_performance_asset],
        partition_key="BTC-USD",
        resources={"store": DuckDBStoreResource(path=str(db_path))},
        instance=instance,
        run_config=dg.RunConfig({"live_performance": {"config": {"as_of": "2024-03-02T00:00:00+00:00"}}}),
    )


@pytest.mark.parametrize("right", [True, False])
def test_live_accuracy_warns_below_the_gate(tmp_path: Path, dagster_instance, right: bool) -> None:
    db_path = tmp_path / "store.duckdb"
    ingest_day(
        SyntheticSource(predictability=0.7), db_path, "BTC-USD", date(2024, 3, 1), max_invalid_share=0.0
    )
    close = query(db_path, "SELECT close FROM candles ORDER BY minute")["close"].to_numpy()
    up = close[1:] > close[:-1]
    signals = [
        Signal(
            "BTC-USD",
            START + timedelta(minutes=m),
            {"logistic": p, "ensemble": p},
            "flat",
            1.0,
            "logistic:v1",
        )
        for m in range(600, 700)
        for p in [0.8 if up[m] == right else 0.2]
    ]
    record_signals(db_path, signals, START + timedelta(hours=20))
    result = materialize(db_path, dagster_instance)
    metadata = result.asset_materializations_for_node("live_performance")[0].metadata
    assert metadata["outcomes"].value == 100
    assert metadata["ensemble_accuracy"].value == (1.0 if right else 0.0)
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "live_accuracy" and check.passed is right
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["waiting_for_outcomes"].value == 0
    if not right:
        assert set(check.metadata["below_gate"].value) == {"logistic", "ensemble"}
        gate = check.metadata["min_accuracy"].value
        assert check.description == (
            f"realised accuracy below {gate}: logistic 0.000 over 100 outcomes, ensemble 0.000 over 100 outcomes"
        )
        [alert] = alerts_after_a_sensor_tick(dagster_instance, tmp_path / "data")
        assert "check live_accuracy on live_performance [BTC-USD] failed" in alert
        assert f"failed in run {result.run_id[:8]}: {check.description} (" in alert  # the alert says why
    assert np.isclose(check.metadata["ensemble_outcomes"].value, 100)


def test_no_outcomes_yet_passes_waiting_for_all_of_them(tmp_path: Path, dagster_instance) -> None:
    db_path = tmp_path / "store.duckdb"
    ingest_day(
        SyntheticSource(predictability=0.7), db_path, "BTC-USD", date(2024, 3, 1), max_invalid_share=0.0
    )
    result = materialize(db_path, dagster_instance)  # candles, but no recorded signal at all
    metadata = result.asset_materializations_for_node("live_performance")[0].metadata
    assert metadata["outcomes"].value == 0 and metadata["status"].value == "no outcomes yet"
    (check,) = result.get_asset_check_evaluations()
    assert check.passed is True  # nothing to judge is neither a warning nor an alert
    assert check.description.startswith("waiting for 30 outcomes: ")
    assert check.metadata["waiting_for_outcomes"].value == 30 and check.metadata["status"].value == "waiting"
    assert result.success
    assert alerts_after_a_sensor_tick(dagster_instance, tmp_path / "data") == []


def test_too_few_outcomes_pass_waiting_for_the_rest(tmp_path: Path, dagster_instance) -> None:
    db_path = tmp_path / "store.duckdb"
    ingest_day(
        SyntheticSource(predictability=0.7), db_path, "BTC-USD", date(2024, 3, 1), max_invalid_share=0.0
    )
    signals = [
        Signal("BTC-USD", START + timedelta(minutes=m), {"ensemble": 0.6}, "flat", 1.0, "logistic:v1")
        for m in range(600, 605)
    ]
    record_signals(db_path, signals, START + timedelta(hours=20))
    (check,) = materialize(db_path, dagster_instance).get_asset_check_evaluations()
    assert check.passed is True
    assert check.description == (
        "waiting for 25 outcomes: 30 are needed to judge a member, 5 so far; nothing judged"
    )
    assert check.metadata["waiting_for_outcomes"].value == 25
    assert check.metadata["below_gate"].value == []
