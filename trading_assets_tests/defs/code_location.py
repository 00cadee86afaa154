"""The code location's assets and checks, built from this test process's settings as definitions.py builds
them (tests that need other settings build their own with the same factories). The gates judge on 2
walk-forward folds, as the demo's do: the asset tests train on the demo's 14 days."""

from dataclasses import replace

from trading_assets.defs.assets.candles import build_candle_assets
from trading_assets.defs.assets.features import build_features_asset
from trading_assets.defs.assets.models import build_model_assets
from trading_assets.defs.assets.performance import build_live_performance_asset
from trading_assets.defs.partitions import build_partitions
from trading_assets.settings import load_settings

DEMO_SCALE_FOLDS = 2
SETTINGS = replace(
    load_settings(), policy=load_settings().policy.model_copy(update={"folds": DEMO_SCALE_FOLDS})
)
PARTITIONS = build_partitions(SETTINGS)
symbol_partitions, date_partitions = PARTITIONS.symbol, PARTITIONS.date
raw_candles, raw_candles_freshness = build_candle_assets(SETTINGS, PARTITIONS)
features = build_features_asset(SETTINGS, PARTITIONS)
model_assets, promoted_assets, ensemble = build_model_assets(SETTINGS, PARTITIONS)
live_performance_asset = build_live_performance_asset(SETTINGS, PARTITIONS)
