"""Dagster resources: thin configurable wrappers over the core's source factory and DuckDB store."""

from __future__ import annotations

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
    ccxt_exchange: str = "coinbase"
    ccxt_api_url: str | None = None
    ccxt_timeout_ms: int = 10_000
    ccxt_max_retries: int = 5
    files_dir: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> MarketDataResource:
        return cls(
            source=settings.source,
            synthetic_seed=settings.synthetic_seed,
            synthetic_predictability=settings.synthetic_predictability,
            ccxt_exchange=settings.ccxt_exchange,
            ccxt_api_url=settings.ccxt_api_url,
            ccxt_timeout_ms=settings.ccxt_timeout_ms,
            ccxt_max_retries=settings.ccxt_max_retries,
            files_dir=str(settings.files_dir) if settings.files_dir else None,
        )

    def build(self) -> CandleSource:
        return build_source(SourceOptions(**self.model_dump()))


class DuckDBStoreResource(dg.ConfigurableResource):
    """Location of the project's DuckDB file (candles, features, signals)."""

    path: str

    @property
    def db_path(self) -> Path:
        return Path(self.path)
