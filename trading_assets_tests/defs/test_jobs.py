"""The daily schedule: one run per symbol, one symbol's failure isolated, retried, alerted once."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from trading_assets.alerts import AlertLog
from trading_assets.definitions import defs
from trading_assets.defs.jobs import (
    ATTEMPT_TAG,
    DAILY_ATTEMPTS,
    DAILY_RETRY_AFTER,
    DAILY_TAG,
    build_daily_candles_schedule,
    retry_requests,
)
from trading_assets.defs.resources import DuckDBStoreResource, MarketDataResource
from trading_assets.defs.sensors import build_alert_sensors
from trading_assets.features.store import read_feature_days
from trading_assets.market.candles import day_bounds, empty_candles
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.settings import load_settings
from trading_assets.store.duckdb_store import read_candles

SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")
SCHEDULED_AT = datetime(2024, 3, 2, 0, 15, tzinfo=UTC)
YESTERDAY = date(2024, 3, 1)

daily_candles_schedule = build_daily_candles_schedule(load_settings())


def scheduled_requests(instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=SCHEDULED_AT)
    return list(daily_candles_schedule(context))


def test_the_schedule_asks_for_yesterday_with_one_run_per_symbol(dagster_instance) -> None:
    requests = scheduled_requests(dagster_instance)
    assert [r.partition_key for r in requests] == [f"2024-03-01|{symbol}" for symbol in SYMBOLS]
    assert [r.run_key for r in requests] == [f"daily-2024-03-01|{symbol}" for symbol in SYMBOLS]
    assert all(r.tags[DAILY_TAG] == r.partition_key and r.tags[ATTEMPT_TAG] == "1" for r in requests)


def execute(instance: dg.DagsterInstance, request: dg.RunRequest, resources: dict) -> dg.DagsterRun:
    job = defs.resolve_job_def("daily_market_data")
    result = job.execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        tags=request.tags,
        resources=resources,
        raise_on_error=False,
    )
    return instance.get_run_by_id(result.run_id)


def test_the_scheduled_runs_store_yesterday(dagster_instance, resources, db_path) -> None:
    runs = [execute(dagster_instance, r, resources) for r in scheduled_requests(dagster_instance)]
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
    assert read_candles(db_path, list(SYMBOLS)).height == 3 * 1440


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """Yesterday's candles of every symbol as files, BTC's header-only (no candles)."""
    directory = tmp_path / "files"
    directory.mkdir()
    for symbol in SYMBOLS:
        candles = SyntheticSource().fetch(symbol, *day_bounds(YESTERDAY))
        (empty_candles() if symbol == "BTC-USD" else candles).write_parquet(directory / f"{symbol}.parquet")
    return directory


def raise_run_failure_alert(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """The run_failure_alerts sensor as the daemon calls it for `run`."""
    failure = next(
        record.dagster_event
        for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    )
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts", dagster_instance=instance, dagster_run=run, dagster_event=failure
    ).for_run_failure()
    build_alert_sensors(load_settings())[1](context)


def ended_at(instance: dg.DagsterInstance, run: dg.DagsterRun) -> datetime:
    return datetime.fromtimestamp(instance.get_run_record_by_id(run.run_id).end_time, UTC)


def test_a_bad_btc_file_fails_only_btc_which_is_retried_and_alerted_once(
    dagster_instance, files: Path, db_path: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("TA_DATA_DIR", str(tmp_path / "data"))  # the alert sensor's alerts directory
    resources = {
        "market_data": MarketDataResource(source="files", files_dir=str(files)),
        "store": DuckDBStoreResource(path=str(db_path)),
    }
    runs = {
        r.partition_key: execute(dagster_instance, r, resources) for r in scheduled_requests(dagster_instance)
    }
    statuses = {key.split("|")[1]: run.status for key, run in runs.items()}
    assert statuses == {
        "BTC-USD": dg.DagsterRunStatus.FAILURE,
        "ETH-USD": dg.DagsterRunStatus.SUCCESS,
        "SOL-USD": dg.DagsterRunStatus.SUCCESS,
    }
    stored = read_candles(db_path, list(SYMBOLS))
    assert stored.group_by("symbol").len().sort("symbol").rows() == [("ETH-USD", 1440), ("SOL-USD", 1440)]
    for symbol in ("ETH-USD", "SOL-USD"):
        assert read_feature_days(db_path, symbol, [YESTERDAY])[YESTERDAY].height == 1440

    failed = runs["2024-03-01|BTC-USD"]
    raise_run_failure_alert(dagster_instance, failed)
    assert retry_requests(dagster_instance, ended_at(dagster_instance, failed) + timedelta(minutes=1)) == []
    [retry] = retry_requests(dagster_instance, ended_at(dagster_instance, failed) + DAILY_RETRY_AFTER)
    assert (retry.partition_key, retry.tags[ATTEMPT_TAG]) == ("2024-03-01|BTC-USD", "2")

    second = execute(dagster_instance, retry, resources)  # the file is still header-only
    assert second.status == dg.DagsterRunStatus.FAILURE
    raise_run_failure_alert(dagster_instance, second)
    [alert] = AlertLog(tmp_path / "data" / "alerts").alerts()
    assert alert.key == "daily:2024-03-01|BTC-USD"
    assert "BTC-USD" in alert.text and f"attempt 1 of {DAILY_ATTEMPTS}" in alert.text

    SyntheticSource().fetch("BTC-USD", *day_bounds(YESTERDAY)).write_parquet(files / "BTC-USD.parquet")
    [third] = retry_requests(dagster_instance, ended_at(dagster_instance, second) + DAILY_RETRY_AFTER)
    assert third.tags[ATTEMPT_TAG] == "3"
    assert execute(dagster_instance, third, resources).status == dg.DagsterRunStatus.SUCCESS
    assert read_candles(db_path, ["BTC-USD"]).height == 1440
    assert retry_requests(dagster_instance, datetime.now(UTC) + DAILY_RETRY_AFTER) == []


def test_attempts_end_after_the_last_one(dagster_instance, files: Path, db_path: Path) -> None:
    resources = {
        "market_data": MarketDataResource(source="files", files_dir=str(files)),
        "store": DuckDBStoreResource(path=str(db_path)),
    }
    [request] = [r for r in scheduled_requests(dagster_instance) if r.partition_key.endswith("BTC-USD")]
    for attempt in range(1, DAILY_ATTEMPTS + 1):
        assert request.tags[ATTEMPT_TAG] == str(attempt)
        run = execute(dagster_instance, request, resources)
        due = retry_requests(dagster_instance, ended_at(dagster_instance, run) + DAILY_RETRY_AFTER)
        if attempt < DAILY_ATTEMPTS:
            [request] = due
    assert due == []


def test_a_run_failing_only_on_blocking_checks_is_not_retried(dagster_instance, tmp_path, db_path) -> None:
    """Candles in cents next to a stored day: stored, then the blocking plausibility checks fail; a re-fetch
    would not change that (rewriting needs allow_revision), so the run is left to an operator."""
    directory = tmp_path / "files"
    directory.mkdir()
    resources = {
        "market_data": MarketDataResource(source="files", files_dir=str(directory)),
        "store": DuckDBStoreResource(path=str(db_path)),
    }
    before = YESTERDAY - timedelta(days=1)
    good = SyntheticSource().fetch("BTC-USD", day_bounds(before)[0], day_bounds(YESTERDAY)[1])
    prices = ["open", "high", "low", "close"]
    cents = pl.when(pl.col("minute") >= day_bounds(YESTERDAY)[0])
    good.with_columns(
        [cents.then(pl.col(c) * 100).otherwise(pl.col(c)).alias(c) for c in prices]
    ).write_parquet(directory / "BTC-USD.parquet")
    job = defs.resolve_job_def("daily_market_data")
    job.execute_in_process(instance=dagster_instance, partition_key=f"{before}|BTC-USD", resources=resources)
    [request] = [r for r in scheduled_requests(dagster_instance) if r.partition_key.endswith("BTC-USD")]
    run = execute(dagster_instance, request, resources)
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert retry_requests(dagster_instance, ended_at(dagster_instance, run) + DAILY_RETRY_AFTER) == []
