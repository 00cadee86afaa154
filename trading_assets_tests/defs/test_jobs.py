from datetime import UTC, datetime

import dagster as dg

from trading_assets.definitions import defs
from trading_assets.defs.jobs import build_daily_candles_schedule
from trading_assets.settings import load_settings

daily_candles_schedule = build_daily_candles_schedule(load_settings())


def test_the_schedule_asks_for_yesterday_of_every_symbol_in_one_run(dagster_instance) -> None:
    context = dg.build_schedule_context(
        instance=dagster_instance, scheduled_execution_time=datetime(2024, 3, 2, 0, 15, tzinfo=UTC)
    )
    request = daily_candles_schedule(context)
    assert request.run_key == "daily-2024-03-01"
    assert request.tags["dagster/asset_partition_range_start"] == "2024-03-01|BTC-USD"
    assert request.tags["dagster/asset_partition_range_end"] == "2024-03-01|SOL-USD"


def test_the_scheduled_run_stores_yesterday(dagster_instance, resources, db_path) -> None:
    from trading_assets.store.duckdb_store import read_candles

    context = dg.build_schedule_context(
        instance=dagster_instance, scheduled_execution_time=datetime(2024, 3, 2, 0, 15, tzinfo=UTC)
    )
    request = daily_candles_schedule(context)
    job = defs.resolve_job_def("daily_market_data")
    result = job.execute_in_process(instance=dagster_instance, tags=request.tags, resources=resources)
    assert result.success
    stored = read_candles(db_path, ["BTC-USD", "ETH-USD", "SOL-USD"])
    assert stored.height == 3 * 1440
