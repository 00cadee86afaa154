"""`trading-assets bench features`: the 39 features on synthetic 1-minute candles of one symbol.

The measurement runs in a child process started with POLARS_MAX_THREADS=1 (and one BLAS/OpenMP
thread), because polars reads the variable once, at import. The child times the polars pipeline
(grid completion, features, flags) on `--rows` minutes, then a straightforward pandas implementation
of the same features (rolling/ewm methods, a per-window `apply` for CCI's mean deviation, as the `ta`
library does) on `--reference-rows` minutes, and reports rows per second for both. The `speedup` comes
mostly from that `apply`: the JSON also reports a fully vectorised pandas variant on all rows
(`vectorised_reference_rows_per_s`), which is about as fast as the polars pipeline, since both run C
rolling kernels and the pipeline also completes the grid, sums windows in a fixed order and checks values.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import polars as pl

_START = datetime(2020, 1, 1, tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=1_000_000, help="minutes of candles (default 1,000,000)")
    parser.add_argument(
        "--reference-rows",
        type=int,
        default=200_000,
        help="minutes for the slower pandas reference (default 200,000; rows/s are compared)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs of the polars pipeline; best counts"
    )
    parser.add_argument("--seed", type=int, default=7)


def run(args: argparse.Namespace) -> dict[str, object]:
    """Measure in a single-threaded child process and return its result."""
    env = {**os.environ, "POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    command = [sys.executable, "-m", __name__, "--rows", str(args.rows)]
    command += [
        "--reference-rows",
        str(args.reference_rows),
        "--repeats",
        str(args.repeats),
        "--seed",
        str(args.seed),
    ]
    completed = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return json.loads(completed.stdout)


def synthetic_candles(rows: int, seed: int) -> pl.DataFrame:
    """Deterministic geometric random walk: 1-minute candles with wicks and log-normal volume."""
    rng = np.random.default_rng(seed)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 8e-4, rows)))
    open_ = np.concatenate([[30_000.0], close[:-1]])
    body_high, body_low = np.maximum(open_, close), np.minimum(open_, close)
    return pl.DataFrame(
        {
            "minute": pl.datetime_range(
                _START,
                _START + timedelta(minutes=rows - 1),
                "1m",
                time_unit="us",
                time_zone="UTC",
                eager=True,
            ),
            "open": open_,
            "high": body_high * np.exp(np.abs(rng.normal(0.0, 4e-4, rows))),
            "low": body_low * np.exp(-np.abs(rng.normal(0.0, 4e-4, rows))),
            "close": close,
            "volume": rng.lognormal(2.0, 1.0, rows),
        }
    )


def _polars_seconds(candles: pl.DataFrame, repeats: int) -> tuple[float, int]:
    from trading_assets.features.pipeline import compute_features

    start, end = candles["minute"][0], candles["minute"][-1] + timedelta(minutes=1)
    history_start: date = start.date()
    timings = []
    for _ in range(repeats):
        began = time.perf_counter()
        features = compute_features(candles, start, end, history_start)
        timings.append(time.perf_counter() - began)
    return min(timings), features.height


def _tr(df: pd.DataFrame) -> pd.Series:
    prev = df["close"].shift(1)
    return pd.concat(
        [df["high"] - df["low"], (df["high"] - prev).abs(), (df["low"] - prev).abs()], axis=1
    ).max(axis=1)


def pandas_features(df: pd.DataFrame, mad_by_apply: bool = True) -> pd.DataFrame:
    """The same features written the usual pandas way (classic seeded EMAs, not truncated).

    `mad_by_apply`: CCI's mean deviation by `rolling.apply` (the straightforward way, and the `ta`
    library's), else vectorised with a numpy sliding window.
    """
    c, h, low, o, v = df["close"], df["high"], df["low"], df["open"], df["volume"]
    out = {}
    logc = np.log(c)
    r1 = logc.diff()
    for k in (1, 5, 15, 60, 240):
        out[f"ret_{k}"] = logc.diff(k)
    out["rv_15"] = np.sqrt((r1**2).rolling(15).mean())
    out["rv_60"] = np.sqrt((r1**2).rolling(60).mean())
    hl = np.log(h / low)
    out["parkinson_60"] = np.sqrt((hl**2).rolling(60).mean() / (4 * math.log(2)))
    gk = 0.5 * hl**2 - (2 * math.log(2) - 1) * np.log(c / o) ** 2
    out["garman_klass_60"] = np.sqrt(gk.rolling(60).mean())
    out["atr_14"] = _tr(df).ewm(alpha=1 / 14, adjust=False).mean() / c
    change = c.diff()
    gain = change.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    loss = (-change).clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    out["rsi_14"] = 100 * gain / (gain + loss)
    macd = c.ewm(span=12, adjust=False).mean() - c.ewm(span=26, adjust=False).mean()
    signal = macd.ewm(span=9, adjust=False).mean()
    out["macd"], out["macd_signal"], out["macd_hist"] = macd / c, signal / c, (macd - signal) / c
    mid, std = c.rolling(20).mean(), c.rolling(20).std(ddof=0)
    out["bb_pctb_20"] = (c - (mid - 2 * std)) / (4 * std)
    out["bb_width_20"] = 4 * std / mid
    hh, ll = h.rolling(14).max(), low.rolling(14).min()
    out["stoch_k_14"] = 100 * (c - ll) / (hh - ll)
    out["stoch_d_3"] = out["stoch_k_14"].rolling(3).mean()
    out["williams_r_14"] = -100 * (hh - c) / (hh - ll)
    tp = (h + low + c) / 3
    mad = (
        tp.rolling(20).apply(lambda w: np.abs(w - w.mean()).mean(), raw=True)
        if mad_by_apply
        else _mad(tp, 20)
    )
    out["cci_20"] = (tp - tp.rolling(20).mean()) / (0.015 * mad)
    out["roc_10"] = 100 * c.pct_change(10)
    for n in (20, 60, 240):
        out[f"dist_sma_{n}"] = c / c.rolling(n).mean() - 1
    for n in (12, 26, 60):
        out[f"dist_ema_{n}"] = c / c.ewm(span=n, adjust=False).mean() - 1
    out["volume_z_60"] = (v - v.rolling(60).mean()) / v.rolling(60).std(ddof=0)
    out["volume_ratio_15_60"] = v.rolling(15).mean() / v.rolling(60).mean()
    obv = (np.sign(change) * v).fillna(0).cumsum()
    out["obv_slope_30"] = obv.diff(30) / v.rolling(30).sum()
    flow, tp_change = tp * v, tp.diff()
    positive = flow.where(tp_change > 0, 0.0).rolling(14).sum()
    negative = flow.where(tp_change < 0, 0.0).rolling(14).sum()
    out["mfi_14"] = 100 * positive / (positive + negative)
    out["vwap_dev_60"] = c / ((tp * v).rolling(60).sum() / v.rolling(60).sum()) - 1
    rng = h - low
    out["body_share"] = (c - o) / rng
    out["upper_wick_share"] = (h - np.maximum(o, c)) / rng
    out["lower_wick_share"] = (np.minimum(o, c) - low) / rng
    minute = df["minute"]
    minute_of_day = minute.dt.hour * 60 + minute.dt.minute
    out["minute_of_day_sin"] = np.sin(2 * np.pi * minute_of_day / 1440)
    out["minute_of_day_cos"] = np.cos(2 * np.pi * minute_of_day / 1440)
    out["day_of_week_sin"] = np.sin(2 * np.pi * minute.dt.dayofweek / 7)
    out["day_of_week_cos"] = np.cos(2 * np.pi * minute.dt.dayofweek / 7)
    return pd.DataFrame(out).fillna(0.0)


def _mad(x: pd.Series, window: int) -> pd.Series:
    windows = np.lib.stride_tricks.sliding_window_view(x.to_numpy(), window)
    mad = np.abs(windows - windows.mean(axis=1, keepdims=True)).mean(axis=1)
    return pd.Series(np.concatenate([np.full(window - 1, np.nan), mad]), index=x.index)


def _pandas_seconds(candles: pl.DataFrame, mad_by_apply: bool) -> float:
    frame = candles.to_pandas()
    began = time.perf_counter()
    pandas_features(frame, mad_by_apply)
    return time.perf_counter() - began


def measure(rows: int, reference_rows: int, repeats: int, seed: int) -> dict[str, object]:
    from trading_assets.features.registry import FEATURE_NAMES

    candles = synthetic_candles(rows, seed)
    seconds, output_rows = _polars_seconds(candles, repeats)
    reference_seconds = _pandas_seconds(candles.head(reference_rows), mad_by_apply=True)
    vectorised_rows_per_s = rows / _pandas_seconds(candles, mad_by_apply=False)
    rows_per_s = rows / seconds
    reference_rows_per_s = reference_rows / reference_seconds
    return {
        "rows": rows,
        "output_rows": output_rows,
        "features": len(FEATURE_NAMES),
        "seconds": round(seconds, 4),
        "rows_per_s": round(rows_per_s),
        "repeats": repeats,
        "threads": pl.thread_pool_size(),
        "reference": "pandas (rolling/ewm, rolling.apply for CCI mean deviation)",
        "reference_rows": reference_rows,
        "reference_seconds": round(reference_seconds, 4),
        "reference_rows_per_s": round(reference_rows_per_s),
        "speedup": round(rows_per_s / reference_rows_per_s, 2),
        "vectorised_reference_rows_per_s": round(vectorised_rows_per_s),
        "speedup_vs_vectorised": round(rows_per_s / vectorised_rows_per_s, 2),
        "goal": {"max_seconds_1m_rows": 2.0, "min_speedup": 10.0},
    }


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    args = parser.parse_args()
    print(json.dumps(measure(args.rows, args.reference_rows, args.repeats, args.seed)))


if __name__ == "__main__":
    _main()
