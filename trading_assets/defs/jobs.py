"""Asset jobs and the daily schedule."""

from datetime import datetime, timedelta

import dagster as dg

from trading_assets.partitions import partition_range_tags
from trading_assets.settings import load_settings

daily_market_data_job = dg.define_asset_job(
    "daily_market_data",
    selection=dg.AssetSelection.assets("raw_candles", "features"),
    description="Candles (and what follows them per day) for one or more (symbol, day) partitions.",
)


@dg.schedule(
    job=daily_market_data_job,
    cron_schedule="15 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Shortly after midnight UTC: yesterday's candles of every symbol, in one run.",
)
def daily_candles_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    scheduled = context.scheduled_execution_time or datetime.now()
    yesterday = (scheduled - timedelta(days=1)).date()
    return dg.RunRequest(
        run_key=f"daily-{yesterday.isoformat()}",
        tags=partition_range_tags(yesterday, yesterday, load_settings().symbols),
    )
