"""Features partitions: read the days' candles plus lookback, compute each day, store. No Dagster."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import polars as pl

from trading_assets.features.pipeline import candle_window, compute_day_features
from trading_assets.features.store import write_feature_days
from trading_assets.market.candles import day_bounds, empty_candles
from trading_assets.store.duckdb_store import BeforeWrite, Store, StoreMissingError, read_candles


@dataclass(frozen=True)
class FeatureDayReport:
    symbol: str
    day: date
    rows: int
    candles_read: int
    frame: pl.DataFrame


class MissingCandlesError(LookupError):
    """A day to compute has no stored candles."""


def build_feature_day(db_path: Store, symbol: str, day: date, history_start: date) -> FeatureDayReport:
    """Compute and store the features of `symbol` on `day` from the stored candles (day + lookback)."""
    [report] = build_feature_days(db_path, symbol, [day], history_start)
    return report


def build_feature_days(
    db_path: Store,
    symbol: str,
    days: Sequence[date],
    history_start: date,
    before_write: BeforeWrite | None = None,
) -> list[FeatureDayReport]:
    """Compute and store the features of `symbol` on each of `days` in one transaction.

    One read covers the candles from the first day's lookback to the last day (so consecutive days are
    cheapest); each day is computed from exactly the candles it would read alone, so a day's features do
    not depend on the batch it is in. Raises `MissingCandlesError`, before anything is written, when a day
    has no stored candles. `before_write` may stop the write inside its transaction.
    """
    days = sorted(set(days))
    if not days:
        return []
    candles = _read_candles(db_path, symbol, days, history_start)
    _raise_if_days_missing(candles, symbol, days)
    minutes = candles["minute"]
    reports = []
    for day in days:
        window_start, window_end = candle_window(*day_bounds(day), history_start)
        first = minutes.search_sorted(window_start, side="left")
        window = candles.slice(first, minutes.search_sorted(window_end, side="left") - first)
        frame = compute_day_features(window, day, history_start)
        reports.append(FeatureDayReport(symbol, day, frame.height, window.height, frame))
    write_feature_days(
        db_path, symbol, {report.day: report.frame for report in reports}, before_write=before_write
    )
    return reports


def _read_candles(db_path: Store, symbol: str, days: list[date], history_start: date) -> pl.DataFrame:
    read_start, _ = candle_window(*day_bounds(days[0]), history_start)
    try:
        return read_candles(db_path, [symbol], read_start, day_bounds(days[-1])[1])
    except StoreMissingError:
        return empty_candles()


def _raise_if_days_missing(candles: pl.DataFrame, symbol: str, days: list[date]) -> None:
    stored_days = set(candles["minute"].dt.date().unique().to_list())
    missing = [day for day in days if day not in stored_days]
    if missing:
        shown = ", ".join(day.isoformat() for day in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise MissingCandlesError(
            f"no stored candles for {symbol} on {shown}{more}: the features of a day need its candles"
        )
