"""Asset jobs and the daily schedule (built from the settings by `build_daily_candles_schedule`)."""

from datetime import datetime, timedelta

import dagster as dg

from trading_assets.defs.partitions import partition_range_tags
from trading_assets.settings import Settings

daily_market_data_job = dg.define_asset_job(
    "daily_market_data",
    selection=dg.AssetSelection.assets("raw_candles", "features"),
    description="Candles (and what follows them per day) for one or more (symbol, day) partitions.",
)


def build_daily_candles_schedule(settings: Settings) -> dg.ScheduleDefinition:
    """The daily run of yesterday's candles of the configured symbols."""
    symbols = settings.symbols

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
            run_key=f"daily-{yesterday.isoformat()}", tags=partition_range_tags(yesterday, yesterday, symbols)
        )

    return daily_candles_schedule
