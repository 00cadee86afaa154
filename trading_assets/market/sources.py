"""Build the configured market data source (pure Python, no Dagster)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trading_assets.market.candles import CandleSource
from trading_assets.market.files_source import FilesSource
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.settings import Settings

SOURCE_NAMES = ("synthetic", "ccxt", "files")


@dataclass(frozen=True)
class SourceOptions:
    """Everything that selects and configures a source; the Dagster resource and the CLI fill it."""

    source: str = "synthetic"
    synthetic_seed: int = 7
    synthetic_predictability: float = 0.0
    ccxt_exchange: str = "coinbase"
    ccxt_api_url: str | None = None
    ccxt_timeout_ms: int = 10_000
    ccxt_max_retries: int = 5
    files_dir: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SourceOptions:
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


def build_source(options: SourceOptions) -> CandleSource:
    if options.source == "synthetic":
        return SyntheticSource(seed=options.synthetic_seed, predictability=options.synthetic_predictability)
    if options.source == "files":
        if not options.files_dir:
            raise ValueError("the files source needs a directory: set TA_FILES_DIR")
        return FilesSource(Path(options.files_dir))
    if options.source == "ccxt":
        from trading_assets.market.ccxt_source import CcxtCandleSource

        return CcxtCandleSource(
            exchange_id=options.ccxt_exchange,
            api_url=options.ccxt_api_url,
            timeout_ms=options.ccxt_timeout_ms,
            max_retries=options.ccxt_max_retries,
        )
    raise ValueError(f"unknown market data source {options.source!r}; expected one of {SOURCE_NAMES}")
