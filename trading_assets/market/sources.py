"""Build the configured market data source (pure Python, no Dagster)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import polars as pl

from trading_assets.market.candles import CandleSource
from trading_assets.market.files_source import FilesSource
from trading_assets.market.synthetic import DEFAULT_SYNTHETIC_PREDICTABILITY, SyntheticSource

SOURCES = ("synthetic", "ccxt", "files")


@dataclass(frozen=True)
class SourceOptions:
    """Everything that selects and configures a source, declared here once: the settings take their defaults
    from it, the CLI fills it from the settings, the Dagster resource is generated from its fields."""

    source: str = "synthetic"
    synthetic_seed: int = 7
    synthetic_predictability: float = DEFAULT_SYNTHETIC_PREDICTABILITY
    #: "SYMBOL=p,SYMBOL=p": symbols whose synthetic market has another predictability (e.g. one made to fail)
    synthetic_predictability_by_symbol: str | None = None
    ccxt_exchange: str = "coinbase"
    ccxt_api_url: str | None = field(default=None, repr=False)  # may carry user:password@
    ccxt_timeout_ms: int = 10_000
    ccxt_max_retries: int = 5
    ccxt_api_key: str | None = field(default=None, repr=False)
    ccxt_secret: str | None = field(default=None, repr=False)
    ccxt_password: str | None = field(default=None, repr=False)
    files_dir: str | None = None
    files_timezone: str | None = None  # the zone of times written without one (None: refused)

    def ccxt_credentials(self) -> dict[str, str]:
        """The credentials that are set, under ccxt's names."""
        given = {"apiKey": self.ccxt_api_key, "secret": self.ccxt_secret, "password": self.ccxt_password}
        return {name: value for name, value in given.items() if value}


def parse_predictability_overrides(text: str | None) -> dict[str, float]:
    """ "SOL-USD=0,ETH-USD=0.5" -> {"SOL-USD": 0.0, "ETH-USD": 0.5}, with an error naming a bad entry."""
    overrides: dict[str, float] = {}
    for entry in filter(None, (part.strip() for part in (text or "").split(","))):
        symbol, _, value = entry.partition("=")
        try:
            overrides[symbol.strip()] = float(value)
        except ValueError as error:
            raise ValueError(
                f"synthetic predictability override {entry!r}: expected SYMBOL=number, e.g. SOL-USD=0"
            ) from error
    return overrides


class PerSymbolSyntheticSource:
    """The synthetic market with a different predictability for some symbols."""

    name = "synthetic"

    def __init__(self, default: SyntheticSource, overrides: dict[str, SyntheticSource]) -> None:
        self.default = default
        self.overrides = overrides

    def fetch(self, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
        return self.overrides.get(symbol, self.default).fetch(symbol, start, end)


def build_source(options: SourceOptions) -> CandleSource:
    if options.source == "synthetic":
        default = SyntheticSource(
            seed=options.synthetic_seed, predictability=options.synthetic_predictability
        )
        overrides = parse_predictability_overrides(options.synthetic_predictability_by_symbol)
        if not overrides:
            return default
        return PerSymbolSyntheticSource(
            default,
            {symbol: SyntheticSource(options.synthetic_seed, p) for symbol, p in overrides.items()},
        )
    if options.source == "files":
        if not options.files_dir:
            raise ValueError("the files source needs a directory: set TA_FILES_DIR")
        return FilesSource(Path(options.files_dir), timezone=options.files_timezone)
    if options.source == "ccxt":
        from trading_assets.market.ccxt_source import CcxtCandleSource

        return CcxtCandleSource(
            exchange_id=options.ccxt_exchange,
            api_url=options.ccxt_api_url,
            timeout_ms=options.ccxt_timeout_ms,
            max_retries=options.ccxt_max_retries,
            credentials=options.ccxt_credentials(),
        )
    raise ValueError(f"unknown market data source {options.source!r}; expected one of {SOURCES}")
