"""The code location: the one `Definitions` object Dagster loads (`dagster dev -w workspace.yaml`).

The settings are read here, once, and handed to the factories of `trading_assets.defs`: partitions, run
config defaults, automation cadence and alert sinks all come from the same `Settings`.
"""

import dagster as dg

from trading_assets.defs.assets.candles import build_candle_assets
from trading_assets.defs.assets.features import build_features_asset
from trading_assets.defs.assets.models import build_model_assets
from trading_assets.defs.assets.performance import build_live_performance_asset
from trading_assets.defs.assets.promotion import build_registry_job
from trading_assets.defs.automation import automation_sensor
from trading_assets.defs.executors import executor_from_settings
from trading_assets.defs.jobs import (
    build_daily_candles_schedule,
    daily_market_data_job,
    retry_failed_daily_runs,
)
from trading_assets.defs.partitions import build_partitions
from trading_assets.defs.resources import DuckDBStoreResource, MarketDataResource, ModelStoreResource
from trading_assets.defs.sensors import build_alert_sensors
from trading_assets.settings import Settings, load_settings


def build_definitions(settings: Settings) -> dg.Definitions:
    partitions = build_partitions(settings)
    raw_candles, raw_candles_freshness = build_candle_assets(settings, partitions)
    models = build_model_assets(settings, partitions)
    return dg.Definitions(
        assets=[
            raw_candles,
            build_features_asset(settings, partitions),
            *models.models,
            *models.promoted,
            models.ensemble,
            build_live_performance_asset(settings, partitions),
        ],
        asset_checks=[raw_candles_freshness],
        sensors=[*build_alert_sensors(settings), automation_sensor, retry_failed_daily_runs],
        jobs=[daily_market_data_job, build_registry_job(settings)],
        schedules=[build_daily_candles_schedule(settings)],
        resources={
            "market_data": MarketDataResource.from_settings(settings),
            "store": DuckDBStoreResource.from_settings(settings),
            "model_store": ModelStoreResource(path=str(settings.models_dir)),
        },
        executor=executor_from_settings(settings),
    )


defs = build_definitions(load_settings())
