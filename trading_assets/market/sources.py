"""Build the configured market data source (pure Python, no Dagster)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import polars as pl
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from trading_assets.market.candles import CandleSource
from trading_assets.market.files_source import FilesSource
from trading_assets.market.synthetic import DEFAULT_SYNTHETIC_PREDICTABILITY, SyntheticSource
from trading_assets.urls import HttpUrl

SOURCES = ("synthetic", "ccxt", "files")


def _resolved(directory: str | None) -> str | None:
    return str(Path(directory).expanduser().resolve()) if directory else None


def _secret(help_text: str) -> Any:
    """An option that may carry a credential: unset by default, kept out of repr (never shown)."""
    return Field(None, description=help_text, repr=False)


class SourceOptions(BaseModel):
    """Everything that selects and configures a source, declared here once (default, help, bounds): each field
    is the setting `TA_<FIELD>` (settings.py reads this record as one field), the CLI gets it from the
    settings, the Dagster resource is generated from its fields."""

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)  # a refused value may be a secret

    source: Literal[SOURCES] = Field("synthetic", description="market data source")
    synthetic_seed: int = Field(7, description="seed of the synthetic market")
    synthetic_predictability: float = Field(
        DEFAULT_SYNTHETIC_PREDICTABILITY,
        ge=0.0,
        le=0.95,
        description="learnable share of the synthetic market",
    )
    synthetic_predictability_by_symbol: str | None = Field(
        None,
        description="symbols whose synthetic market has another predictability, e.g. SOL-USD=0,ETH-USD=0.5",
    )
    ccxt_exchange: str = Field("coinbase", description="ccxt exchange id")
    ccxt_api_url: HttpUrl = _secret(  # may carry user:password@
        "override of the exchange's REST base URL (proxy or loopback test server; never logged)"
    )
    ccxt_timeout_ms: int = Field(
        10_000, ge=1, description="per-request timeout of the ccxt source, milliseconds"
    )
    ccxt_max_retries: int = Field(5, ge=0, description="retries for network errors, 429 and 5xx")
    ccxt_api_key: str | None = _secret(
        "ccxt apiKey, only if the exchange needs one for candles (never logged)"
    )
    ccxt_secret: str | None = _secret("ccxt secret (never logged)")
    ccxt_password: str | None = _secret("ccxt password (never logged)")
    files_dir: Annotated[str | None, AfterValidator(_resolved)] = Field(
        None, description="directory of Parquet/feather/CSV candle files for the files source"
    )
    files_timezone: str | None = Field(
        None,
        description="zone of times written without one in the files, e.g. UTC or America/New_York (unset: "
        "such files are refused)",
    )

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
