"""Each standard indicator against an independent implementation on real candles.

The references are written here with pandas and plain numpy loops, TA-Lib style: EMAs are seeded with the
SMA of their first `span` values, Wilder smoothing (RSI, ATR) with the mean of its first 14 terms, and
every recursion runs over the whole history. The project instead uses *truncated* EMAs (finite windows,
see `trading_assets.features.registry`), so the two agree only after the warm-up: we compare from minute
`COMPARE_FROM` on, where the reference's seed weighs less than (1 - 2/61)^1000 < 1e-14 and the truncated
tail less than 1e-10. Tolerances, relative to each value floored by the feature's median magnitude (for
values that cross zero): recursive indicators (EMA, MACD, RSI, ATR) 2e-8 (the reference's float recursion
drifts that far over a whole month), everything else 1e-9. Standard deviations use ddof=0 on both sides (TA-Lib's
convention; pandas' default ddof=1 would differ by a factor sqrt(n / (n - 1))).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from datetime import timedelta
from fractions import Fraction

import numpy as np
import pandas as pd
import polars as pl
import pytest

from trading_assets.features.pipeline import complete_grid, features_from_grid
from trading_assets_tests.features.conftest import SHARED_BTC

COMPARE_FROM = 1000
RECURSIVE_TOL = 2e-8
TOL = 1e-9


def _ema(x: np.ndarray, alpha: float, seed_length: int) -> np.ndarray:
    """TA-Lib EMA: SMA of the first `seed_length` values, then y = a x + (1 - a) y_prev."""
    out = np.full(x.size, np.nan)
    first = int(np.argmax(~np.isnan(x)))
    out[first + seed_length - 1] = x[first : first + seed_length].mean()
    for t in range(first + seed_length, x.size):
        out[t] = alpha * x[t] + (1 - alpha) * out[t - 1]
    return out


def _window(x: np.ndarray, n: int, fn: Callable[[np.ndarray], float]) -> np.ndarray:
    out = np.full(x.size, np.nan)
    for t in range(n - 1, x.size):
        out[t] = fn(x[t - n + 1 : t + 1])
    return out


def _exact_direction(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Sign of the change of high + low + close in exact decimal arithmetic on the prices as the exchange
    wrote them (the shortest decimal of each float): TA-Lib compares prices, so a minute whose prices sum to
    the previous one's is neither up nor down flow."""
    sums = [
        Fraction(repr(h)) + Fraction(repr(lo)) + Fraction(repr(c))
        for h, lo, c in zip(high.tolist(), low.tolist(), close.tolist(), strict=True)
    ]
    return np.array([np.nan] + [(b > a) - (b < a) for a, b in itertools.pairwise(sums)], dtype=np.float64)


def reference_features(df: pd.DataFrame) -> dict[str, np.ndarray]:
    o, h, low, c, v = (df[col].to_numpy() for col in ("open", "high", "low", "close", "volume"))
    prev_c = np.concatenate([[np.nan], c[:-1]])
    r1 = np.log(c / prev_c)
    out: dict[str, np.ndarray] = {}
    for k in (1, 5, 15, 60, 240):
        out[f"ret_{k}"] = np.log(c / pd.Series(c).shift(k).to_numpy())
    out["rv_15"] = _window(r1, 15, lambda w: math.sqrt(np.mean(w**2)))
    out["rv_60"] = _window(r1, 60, lambda w: math.sqrt(np.mean(w**2)))
    hl = np.log(h / low)
    out["parkinson_60"] = _window(hl, 60, lambda w: math.sqrt(np.mean(w**2) / (4 * math.log(2))))
    gk = 0.5 * hl**2 - (2 * math.log(2) - 1) * np.log(c / o) ** 2
    out["garman_klass_60"] = _window(gk, 60, lambda w: math.sqrt(np.mean(w)))
    tr = np.maximum.reduce([h - low, np.abs(h - prev_c), np.abs(low - prev_c)])
    tr[0] = np.nan
    out["atr_14"] = _ema(tr, 1 / 14, 14) / c
    change = np.diff(c, prepend=np.nan)
    gain = _ema(np.where(np.isnan(change), np.nan, np.maximum(change, 0)), 1 / 14, 14)
    loss = _ema(np.where(np.isnan(change), np.nan, np.maximum(-change, 0)), 1 / 14, 14)
    out["rsi_14"] = 100 - 100 / (1 + gain / loss)
    macd = _ema(c, 2 / 13, 12) - _ema(c, 2 / 27, 26)
    signal = _ema(macd, 2 / 10, 9)
    out["macd"], out["macd_signal"], out["macd_hist"] = macd / c, signal / c, (macd - signal) / c
    mid, std = _window(c, 20, np.mean), _window(c, 20, lambda w: np.std(w, ddof=0))
    out["bb_pctb_20"] = (c - (mid - 2 * std)) / (4 * std)
    out["bb_width_20"] = 4 * std / mid
    hh, ll = _window(h, 14, np.max), _window(low, 14, np.min)
    out["stoch_k_14"] = 100 * (c - ll) / (hh - ll)
    out["stoch_d_3"] = _window(out["stoch_k_14"], 3, np.mean)
    out["williams_r_14"] = -100 * (hh - c) / (hh - ll)
    tp = (h + low + c) / 3
    tp_mean = _window(tp, 20, np.mean)
    mad = _window(tp, 20, lambda w: np.mean(np.abs(w - w.mean())))
    out["cci_20"] = (tp - tp_mean) / (0.015 * mad)
    out["roc_10"] = 100 * (c / pd.Series(c).shift(10).to_numpy() - 1)
    for n in (20, 60, 240):
        out[f"dist_sma_{n}"] = c / _window(c, n, np.mean) - 1
    for n in (12, 26, 60):
        out[f"dist_ema_{n}"] = c / _ema(c, 2 / (n + 1), n) - 1
    out["volume_z_60"] = (v - _window(v, 60, np.mean)) / _window(v, 60, lambda w: np.std(w, ddof=0))
    out["volume_ratio_15_60"] = _window(v, 15, np.mean) / _window(v, 60, np.mean)
    obv = np.cumsum(np.nan_to_num(np.sign(change)) * v)
    out["obv_slope_30"] = (obv - pd.Series(obv).shift(30).to_numpy()) / _window(v, 30, np.sum)
    flow, tp_direction = tp * v, _exact_direction(h, low, c)
    positive = _window(np.where(tp_direction > 0, flow, 0.0), 14, np.sum)
    negative = _window(np.where(tp_direction < 0, flow, 0.0), 14, np.sum)
    with np.errstate(divide="ignore"):  # no negative flow: positive / 0 = inf gives MFI 100
        out["mfi_14"] = 100 - 100 / (1 + positive / negative)
    out["vwap_dev_60"] = c / (_window(tp * v, 60, np.sum) / _window(v, 60, np.sum)) - 1
    spread = h - low
    with np.errstate(invalid="ignore", divide="ignore"):
        out["body_share"] = np.where(spread > 0, (c - o) / spread, 0.0)
        out["upper_wick_share"] = np.where(spread > 0, (h - np.maximum(o, c)) / spread, 0.0)
        out["lower_wick_share"] = np.where(spread > 0, (np.minimum(o, c) - low) / spread, 0.0)
    minutes = [m.hour * 60 + m.minute for m in df["minute"]]
    weekdays = [m.weekday() for m in df["minute"]]
    out["minute_of_day_sin"] = np.sin(2 * np.pi * np.array(minutes) / 1440)
    out["minute_of_day_cos"] = np.cos(2 * np.pi * np.array(minutes) / 1440)
    out["day_of_week_sin"] = np.sin(2 * np.pi * np.array(weekdays) / 7)
    out["day_of_week_cos"] = np.cos(2 * np.pi * np.array(weekdays) / 7)
    return out


RECURSIVE = {
    "atr_14",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "dist_ema_12",
    "dist_ema_26",
    "dist_ema_60",
}


def _compare(candles: pl.DataFrame) -> None:
    start = candles["minute"][0]
    grid = complete_grid(candles, start, candles["minute"][-1] + timedelta(minutes=1))
    assert not grid["filled"].any(), "the reference comparison needs candles without gaps"
    ours = features_from_grid(grid, start.date())
    reference = reference_features(grid.to_pandas())
    assert set(reference) == set(ours.columns) & set(reference)
    assert len(reference) == 39
    failures = {}
    for name, expected in reference.items():
        actual = ours[name].to_numpy()[COMPARE_FROM:]
        expected = expected[COMPARE_FROM:]
        # relative to each value, floored by the feature's typical size (for values that cross zero)
        scale = np.maximum(np.abs(expected), np.nanmedian(np.abs(expected)))
        error = float(np.nanmax(np.abs(actual - expected) / np.where(scale > 0, scale, 1.0)))
        if not error <= (RECURSIVE_TOL if name in RECURSIVE else TOL):
            failures[name] = error
    assert failures == {}


def test_indicators_match_reference_on_fixture_candles(btc_candles: pl.DataFrame) -> None:
    _compare(btc_candles)


def test_indicators_match_reference_on_the_whole_shared_month() -> None:
    if not SHARED_BTC.exists():
        pytest.skip(f"real candles not available at {SHARED_BTC} (../shared is absent)")
    candles = pl.read_ipc(SHARED_BTC).rename({"date": "minute"})
    _compare(candles.with_columns(pl.col("minute").dt.cast_time_unit("us")))
