"""`live_performance` through Dagster: metadata per member, and a WARN check when accuracy is below the gate."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from trading_assets.defs.resources import DuckDBStoreResource
from trading_assets.market.ingest import ingest_day
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.runtime.dryrun import Signal, record_signals
from trading_assets.store.duckdb_store import query
from trading_assets_tests.defs.code_location import live_performance_asset

START = datetime(2024, 3, 1, tzinfo=UTC)


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
    if not right:
        assert set(check.metadata["below_gate"].value) == {"logistic", "ensemble"}
    assert np.isclose(check.metadata["ensemble_outcomes"].value, 100)


def test_no_outcomes_yet_is_said_and_does_not_pass(tmp_path: Path, dagster_instance) -> None:
    db_path = tmp_path / "store.duckdb"
    ingest_day(
        SyntheticSource(predictability=0.7), db_path, "BTC-USD", date(2024, 3, 1), max_invalid_share=0.0
    )
    result = materialize(db_path, dagster_instance)  # candles, but no recorded signal at all
    metadata = result.asset_materializations_for_node("live_performance")[0].metadata
    assert metadata["outcomes"].value == 0 and metadata["status"].value == "no outcomes yet"
    (check,) = result.get_asset_check_evaluations()
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description.startswith("no outcomes yet")
    assert result.success  # a WARN result never blocks


def test_too_few_outcomes_do_not_pass_either(tmp_path: Path, dagster_instance) -> None:
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
    assert check.passed is False
    assert check.description == "too few outcomes yet: at most 5, 30 needed to judge"
