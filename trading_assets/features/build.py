"""One features partition: read the day's candles plus lookback, compute, store. No Dagster."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from trading_assets.features.pipeline import candle_window, compute_day_features
from trading_assets.features.store import write_feature_day
from trading_assets.market.candles import day_bounds, empty_candles
from trading_assets.store.duckdb_store import StoreMissingError, read_candles


@dataclass(frozen=True)
class FeatureDayReport:
    symbol: str
    day: date
    rows: int
    candles_read: int
    frame: pl.DataFrame


class MissingCandlesError(LookupError):
    """The day to compute has no stored candles."""


def build_feature_day(db_path: Path, symbol: str, day: date, history_start: date) -> FeatureDayReport:
    """Compute and store the features of `symbol` on `day` from the stored candles (day + lookback)."""
    start, end = day_bounds(day)
    read_start, read_end = candle_window(start, end, history_start)
    try:
        candles = read_candles(db_path, [symbol], read_start, read_end)
    except StoreMissingError:
        candles = empty_candles()
    if candles.filter(pl.col("minute") >= start).height == 0:
        raise MissingCandlesError(
            f"no stored candles for {symbol} on {day.isoformat()}: materialize raw_candles {day}|{symbol} first"
        )
    frame = compute_day_features(candles, day, history_start)
    rows = write_feature_day(db_path, symbol, day, frame)
    return FeatureDayReport(symbol, day, rows, candles.height, frame)
