"""Candles -> complete minute grid -> the registry's features, with their flags.

A features partition (symbol x UTC day) reads the day's candles plus the whole previous day (more than
`MAX_LOOKBACK` minutes; see `candle_window`). Because every feature is a finite-window function, the
day's rows are the same whether the day is computed alone, inside a range or in a backfill.

Grid: every minute of [grid start, end) gets a row. Minutes the exchange omitted are `filled`: open,
high, low and close take the previous close, volume is 0. Minutes before the first candle of the grid
take that candle's open (only possible at the start of history or after a gap longer than a day, where
the rows are warm-up or unusable anyway).

Flags:
* `warmup`: fewer than `MAX_LOOKBACK` minutes of history precede the minute (history starts at
  `history_start`); feature values there are 0 instead of null.
* `usable`: not warm-up, and no run of more than `MAX_GAP_MINUTES` filled minutes ends inside the
  `MAX_LOOKBACK + 1` minutes up to and including this one. Training should use only usable rows.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl

from trading_assets.features.registry import (
    FEATURE_NAMES,
    FEATURE_SET_VERSION,
    FEATURES,
    MAX_LOOKBACK,
    add_intermediates,
    schema_hash,
)
from trading_assets.market.candles import MINUTES_PER_DAY, conform, day_bounds

#: Longest run of filled minutes that a training window may bridge.
MAX_GAP_MINUTES = 15
#: Minutes of candles read before the first minute computed: one full day, which covers `MAX_LOOKBACK`.
READ_LOOKBACK_MINUTES = MINUTES_PER_DAY
FLAG_COLUMNS = ("filled", "warmup", "usable")
_MINUTE = pl.Datetime("us", "UTC")

if MAX_LOOKBACK >= READ_LOOKBACK_MINUTES:
    raise RuntimeError(f"a feature's lookback ({MAX_LOOKBACK} min) must fit in the previous day")


def _history_start_dt(history_start: date) -> datetime:
    return datetime(history_start.year, history_start.month, history_start.day, tzinfo=UTC)


def candle_window(start: datetime, end: datetime, history_start: date) -> tuple[datetime, datetime]:
    """The [start, end) of candles needed to compute features for the minutes [start, end)."""
    return max(start - timedelta(minutes=READ_LOOKBACK_MINUTES), _history_start_dt(history_start)), end


def complete_grid(candles: pl.DataFrame, start: datetime, end: datetime) -> pl.DataFrame:
    """One row per minute of [start, end): the candles, with omitted minutes filled and flagged."""
    in_range = conform(candles).filter((pl.col("minute") >= start) & (pl.col("minute") < end))
    if _is_complete(in_range["minute"], start, end):
        return in_range.with_columns(filled=pl.lit(False))
    grid = pl.datetime_range(start, end, "1m", closed="left", time_unit="us", time_zone="UTC", eager=True)
    joined = grid.alias("minute").to_frame().join(in_range, on="minute", how="left", validate="1:1")
    filled = pl.col("close").is_null()
    carried = pl.col("close").forward_fill().fill_null(pl.col("open").backward_fill())
    return joined.with_columns(
        *[
            pl.when(filled).then(carried).otherwise(pl.col(c)).alias(c)
            for c in ("open", "high", "low", "close")
        ],
        pl.col("volume").fill_null(0.0),
        filled.alias("filled"),
    )


def _is_complete(minutes: pl.Series, start: datetime, end: datetime) -> bool:
    """Whether `minutes` already is every minute of [start, end) in order (then no join is needed)."""
    expected = int((end - start).total_seconds() // 60)
    if minutes.len() != expected or expected == 0 or minutes[0] != start:
        return False
    return bool((minutes.diff().slice(1) == timedelta(minutes=1)).all())


def _flags(history_start: date) -> list[pl.Expr]:
    warm_until = _history_start_dt(history_start) + timedelta(minutes=MAX_LOOKBACK)
    warmup = pl.col("minute") < warm_until
    long_gap_ends = pl.col("filled").cast(pl.Int32).rolling_sum(MAX_GAP_MINUTES + 1, min_samples=1) > (
        MAX_GAP_MINUTES
    )
    gap_in_window = long_gap_ends.rolling_max(MAX_LOOKBACK + 1, min_samples=1)
    return [warmup.alias("warmup"), (~warmup & ~gap_in_window).alias("usable")]


def features_from_grid(grid: pl.DataFrame, history_start: date) -> pl.DataFrame:
    """The features and flags of every grid row (rows in the grid's own first minutes may be null)."""
    return (
        add_intermediates(grid)
        .lazy()
        .select(
            "minute",
            "close",
            *[feature.expr.alias(feature.name) for feature in FEATURES],
            "filled",
            *_flags(history_start),
        )
        .with_columns(
            pl.when(pl.col("warmup"))
            .then(pl.col(FEATURE_NAMES).fill_null(0.0))
            .otherwise(pl.col(FEATURE_NAMES)),
            pl.lit(FEATURE_SET_VERSION).alias("feature_set_version"),
            pl.lit(schema_hash()).alias("schema_hash"),
        )
        .collect()
    )


def compute_features(
    candles: pl.DataFrame, start: datetime, end: datetime, history_start: date
) -> pl.DataFrame:
    """Features of the minutes [start, end), from candles covering `candle_window(start, end, ...)`.

    Returns minute, close, the features in registry order, the flags, feature_set_version and
    schema_hash. Raises ValueError when a row has a null, NaN or infinite feature value.
    """
    first_minute = _history_start_dt(history_start)
    if end <= first_minute:
        raise ValueError(f"[{start}, {end}) lies before the history start {history_start}")
    grid_start, _ = candle_window(start, end, history_start)
    grid = complete_grid(candles, grid_start, end)
    if grid["filled"].all():
        raise ValueError(f"no candles in [{grid_start}, {end}): nothing to compute features from")
    rows = features_from_grid(grid, history_start).filter(pl.col("minute") >= max(start, first_minute))
    _raise_if_not_finite(rows)
    return rows


def compute_day_features(candles: pl.DataFrame, day: date, history_start: date) -> pl.DataFrame:
    """The 1,440 rows of one UTC day (`day` must not precede `history_start`)."""
    start, end = day_bounds(day)
    return compute_features(candles, start, end, history_start)


def _raise_if_not_finite(rows: pl.DataFrame) -> None:
    bad = rows.select(pl.col(FEATURE_NAMES).is_finite().not_().fill_null(True).sum())
    problems = {name: count for name, count in bad.row(0, named=True).items() if count}
    if problems:
        raise ValueError(f"features with null, NaN or infinite values (rows per feature): {problems}")
