"""Dagster resources: thin configurable wrappers over the core's source factory and DuckDB store."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import dagster as dg

from trading_assets.market.candles import CandleSource
from trading_assets.market.sources import SourceOptions, build_source
from trading_assets.settings import Settings


class MarketDataResource(dg.ConfigurableResource):
    """Which market data source the assets read (synthetic, ccxt or files) and its options."""

    source: str = "synthetic"
    synthetic_seed: int = 7
    synthetic_predictability: float = 0.0
    synthetic_predictability_by_symbol: str | None = None
    ccxt_exchange: str = "coinbase"
    ccxt_api_url: str | None = None
    ccxt_timeout_ms: int = 10_000
    ccxt_max_retries: int = 5
    files_dir: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> MarketDataResource:
        return cls(**asdict(SourceOptions.from_settings(settings)))

    def build(self) -> CandleSource:
        return build_source(SourceOptions(**self.model_dump()))


class DuckDBStoreResource(dg.ConfigurableResource):
    """Location of the project's DuckDB file (candles, features, signals)."""

    path: str

    @property
    def db_path(self) -> Path:
        return Path(self.path)


class ModelStoreResource(dg.ConfigurableResource):
    """Directory of model artifacts and of the promoted registry (models/promoted)."""

    path: str

    @property
    def models_dir(self) -> Path:
        return Path(self.path)
