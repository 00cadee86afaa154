"""Grid completion, flags, finiteness, lookahead and partition independence of the feature pipeline."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from trading_assets.features.pipeline import (
    MAX_GAP_MINUTES,
    candle_window,
    complete_grid,
    compute_day_features,
    compute_features,
    features_from_grid,
)
from trading_assets.features.registry import FEATURE_NAMES, MAX_LOOKBACK
from trading_assets.features.store import check_feature_ranges
from trading_assets_tests.features.conftest import FIRST_DAY

DAY1 = datetime(2026, 3, 24, tzinfo=UTC)
DAYS = [FIRST_DAY + timedelta(days=i) for i in range(3)]
#: Largest difference allowed between a day computed alone and inside a range, relative to max(1, |v|).
PARTITION_TOL = 1e-12


def _drop_minutes(candles: pl.DataFrame, start: datetime, minutes: int) -> pl.DataFrame:
    end = start + timedelta(minutes=minutes)
    return candles.filter((pl.col("minute") < start) | (pl.col("minute") >= end))


def _with_gaps(candles: pl.DataFrame) -> pl.DataFrame:
    """Short gaps, a long gap across midnight, and a long gap inside a day."""
    candles = _drop_minutes(candles, DAY1 + timedelta(hours=5), 3)
    candles = _drop_minutes(candles, DAY1 + timedelta(hours=23, minutes=50), 40)
    return _drop_minutes(candles, DAY1 + timedelta(days=2, hours=6), 120)


def test_grid_fills_missing_minutes_with_the_previous_close_and_no_volume(btc_candles) -> None:
    gap_start = DAY1 + timedelta(hours=5)
    grid = complete_grid(_drop_minutes(btc_candles, gap_start, 3), DAY1, DAY1 + timedelta(days=1))
    assert grid.height == 1440
    assert grid["filled"].sum() == 3
    filled = grid.filter(pl.col("filled"))
    previous_close = grid.filter(pl.col("minute") == gap_start - timedelta(minutes=1))["close"][0]
    for column in ("open", "high", "low", "close"):
        assert (filled[column] == previous_close).all()
    assert (filled["volume"] == 0).all()


def test_short_gap_stays_usable_and_long_gap_makes_the_lookback_window_unusable(btc_candles) -> None:
    candles = _with_gaps(btc_candles)
    rows = compute_features(candles, DAY1, DAY1 + timedelta(days=3), FIRST_DAY)
    by_minute = dict(zip(rows["minute"].to_list(), rows["usable"].to_list(), strict=True))
    assert by_minute[DAY1 + timedelta(hours=16)]  # a 3-minute gap 11 h before
    long_gap_end = DAY1 + timedelta(days=2, hours=8) - timedelta(minutes=1)
    assert not by_minute[long_gap_end]
    assert not by_minute[long_gap_end + timedelta(minutes=MAX_LOOKBACK)]
    assert by_minute[long_gap_end + timedelta(minutes=MAX_LOOKBACK + 1)]
    # The gap's 16th filled minute is the first minute that a long gap makes unusable.
    assert by_minute[DAY1 + timedelta(days=2, hours=6, minutes=MAX_GAP_MINUTES - 1)]
    assert not by_minute[DAY1 + timedelta(days=2, hours=6, minutes=MAX_GAP_MINUTES)]


def test_start_of_history_is_flagged_warmup_with_zero_values_not_nan(btc_candles) -> None:
    rows = compute_day_features(btc_candles, FIRST_DAY, FIRST_DAY)
    assert rows.height == 1440
    warm = rows.filter(pl.col("warmup"))
    assert warm.height == MAX_LOOKBACK
    assert not warm["usable"].any()
    assert rows.filter(~pl.col("warmup"))["usable"].all()
    assert (warm.head(240)["ret_240"] == 0.0).all()  # null before 240 minutes of history: stored as 0
    assert check_feature_ranges(rows, FIRST_DAY) == []


def test_no_nan_or_infinity_with_gaps_and_degenerate_candles(btc_candles) -> None:
    flat_day = pl.datetime_range(
        DAY1, DAY1 + timedelta(days=1), "1m", closed="left", time_zone="UTC", eager=True
    )
    flat = pl.DataFrame({"minute": flat_day}).with_columns(
        open=pl.lit(100.0), high=pl.lit(100.0), low=pl.lit(100.0), close=pl.lit(100.0), volume=pl.lit(0.0)
    )
    for candles in (_with_gaps(btc_candles), flat):
        for day in DAYS if candles is not flat else [FIRST_DAY]:
            rows = compute_day_features(candles, day, FIRST_DAY)
            assert check_feature_ranges(rows, day) == [], day


def test_every_day_is_the_same_alone_as_inside_a_range(btc_candles) -> None:
    for candles in (btc_candles, _with_gaps(btc_candles)):
        in_range = compute_features(candles, DAY1, DAY1 + timedelta(days=3), FIRST_DAY)
        for day in reversed(DAYS):  # a backfill computes days in any order
            start, end = candle_window(*_bounds(day), FIRST_DAY)
            window = candles.filter((pl.col("minute") >= start) & (pl.col("minute") < end))
            alone = compute_day_features(window, day, FIRST_DAY)
            expected = in_range.filter(pl.col("minute").dt.date() == day)
            _assert_close(alone, expected, PARTITION_TOL)


def _bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def _assert_close(actual: pl.DataFrame, expected: pl.DataFrame, tol: float) -> None:
    assert actual["minute"].to_list() == expected["minute"].to_list()
    for flag in ("filled", "warmup", "usable"):
        assert actual[flag].to_list() == expected[flag].to_list(), flag
    worst = {
        name: float(np.max(np.abs(actual[name].to_numpy() - b) / np.maximum(1.0, np.abs(b))))
        for name in FEATURE_NAMES
        for b in [expected[name].to_numpy()]
    }
    assert {name: err for name, err in worst.items() if err > tol} == {}


def _perturb_after(candles: pl.DataFrame, cut: datetime, seed: int) -> pl.DataFrame:
    """Every candle after `cut` changed (prices scaled, volume redrawn) and a few of them removed."""
    rng = np.random.default_rng(seed)
    later = candles["minute"] > cut
    scale = pl.Series(np.exp(rng.normal(0, 0.01, candles.height)))
    volume = pl.Series(rng.lognormal(0, 1, candles.height))
    changed = candles.with_columns(
        *[
            pl.when(later).then(pl.col(c) * scale).otherwise(pl.col(c)).alias(c)
            for c in ("open", "high", "low", "close")
        ],
        pl.when(later).then(volume).otherwise(pl.col("volume")).alias("volume"),
    )
    dropped = later & pl.Series(rng.random(candles.height) < 0.05)
    return changed.filter(~dropped)


@pytest.mark.parametrize("cut_minutes", [5, 300, 1000, 2000, 4000])
def test_no_feature_looks_ahead(btc_candles, cut_minutes: int) -> None:
    """Changing any candle after minute t leaves every feature at minutes <= t unchanged, bit for bit."""
    cut = DAY1 + timedelta(minutes=cut_minutes)
    end = DAY1 + timedelta(days=3)
    original = features_from_grid(complete_grid(btc_candles, DAY1, end), FIRST_DAY)
    changed = features_from_grid(
        complete_grid(_perturb_after(btc_candles, cut, cut_minutes), DAY1, end), FIRST_DAY
    )
    before = pl.col("minute") <= cut
    a, b = original.filter(before), changed.filter(before)
    assert a.height == cut_minutes + 1
    leaking = [name for name in FEATURE_NAMES if not a[name].equals(b[name])]
    assert leaking == []
    assert original.filter(~before)["close"].equals(changed.filter(~before)["close"]) is False
