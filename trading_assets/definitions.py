"""The code location: the one `Definitions` object Dagster loads (`dagster dev -w workspace.yaml`)."""

import dagster as dg

from trading_assets.defs.assets.candles import raw_candles, raw_candles_freshness
from trading_assets.defs.assets.features import features
from trading_assets.defs.assets.models import ensemble, model_assets, promoted_assets
from trading_assets.defs.assets.performance import live_performance_asset
from trading_assets.defs.automation import automation_sensor
from trading_assets.defs.executors import executor_from_settings
from trading_assets.defs.jobs import daily_candles_schedule, daily_market_data_job
from trading_assets.defs.resources import DuckDBStoreResource, MarketDataResource, ModelStoreResource
from trading_assets.defs.sensors import check_failure_alerts, run_failure_alerts
from trading_assets.settings import load_settings

settings = load_settings()

defs = dg.Definitions(
    assets=[raw_candles, features, *model_assets, *promoted_assets, ensemble, live_performance_asset],
    asset_checks=[raw_candles_freshness],
    sensors=[check_failure_alerts, run_failure_alerts, automation_sensor],
    jobs=[daily_market_data_job],
    schedules=[daily_candles_schedule],
    resources={
        "market_data": MarketDataResource.from_settings(settings),
        "store": DuckDBStoreResource(path=str(settings.duckdb_path)),
        "model_store": ModelStoreResource(path=str(settings.models_dir)),
    },
    executor=executor_from_settings(settings),
)
