"""Stylised facts of 1-minute candles: the synthetic market next to real Binance candles.

`market_stats(frame)` measures what a trader checks first in a series of 1-minute log returns: the
autocorrelations at lags 1..60 (largest absolute value, lag 1, lag 30), the variance ratio VR(60) = var of
60-minute returns / (60 x var of 1-minute returns), the excess kurtosis (fat tails) and the lag-1
autocorrelation of absolute returns (volatility clustering). `naive_rule_accuracies(frame)` scores the
one-line rules on the next-minute direction (label: the close rises over the next minute, as the models'
label at horizon 1): majority class, constant long, constant short, and the sign of the last k-minute move
and its reverse. `candle_logistic(frame)` fits a plain scikit-learn logistic regression on the shapes
(body, upper and lower wick as shares of the range) and volumes of the last candles, scores a chronological
held-out last 15 %, and trades its up-probability long/flat (long once above 0.55, flat once below 0.45,
held in between) at a cost per side (fee + slippage + half spread), reporting gross and net return.

`python -m trading_assets_bench.market_stats` prints all of it as JSON for the synthetic market (BTC-USD,
ETH-USD, SOL-USD; 14 and 60 days; predictability 0 and 0.7, and a predictability sweep on 14 days) and for
the real files under ../shared/data/real-1m (skipped with a note when absent).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

MAX_LAG = 60
NAIVE_LOOKBACKS = (1, 2, 5, 10, 15, 30, 60)
#: Candles each logistic sample sees: the last `CANDLE_LAGS` one by one, and means over these windows.
CANDLE_LAGS = 5
CANDLE_MEANS = (5, 15)
#: What one unit of position change costs: fee + slippage + half the spread, basis points per side.
FEE_BPS, SLIPPAGE_BPS, HALF_SPREAD_BPS = 10.0, 1.0, 1.0
LONG_ABOVE, FLAT_BELOW = 0.55, 0.45
SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")
START = datetime(2024, 1, 1, tzinfo=UTC)
REAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-1m"


def log_returns(frame: pl.DataFrame) -> np.ndarray:
    return np.diff(np.log(frame["close"].to_numpy()))


def autocorrelations(x: np.ndarray, max_lag: int = MAX_LAG) -> np.ndarray:
    """Sample autocorrelations at lags 1..max_lag (mean removed, normalised by the lag-0 sum)."""
    x = x - x.mean()
    denominator = float(np.dot(x, x))
    return np.array([np.dot(x[:-lag], x[lag:]) / denominator for lag in range(1, max_lag + 1)])


def variance_ratio(close: np.ndarray, q: int) -> float:
    """var of overlapping q-minute log returns / (q x var of 1-minute log returns); 1 for a random walk."""
    log_close = np.log(close)
    return float(np.var(log_close[q:] - log_close[:-q]) / (q * np.var(np.diff(log_close))))


def market_stats(frame: pl.DataFrame) -> dict[str, float]:
    """The stylised facts of a frame of consecutive 1-minute candles (columns close, optionally more)."""
    returns = log_returns(frame)
    acf = autocorrelations(returns)
    centred = returns - returns.mean()
    absolute = np.abs(returns)
    return {
        "minutes": len(returns),
        "acf_max_abs": float(np.max(np.abs(acf))),
        "acf_max_abs_lag": int(np.argmax(np.abs(acf)) + 1),
        "acf_lag1": float(acf[0]),
        "acf_lag30": float(acf[29]),
        "variance_ratio_60": variance_ratio(frame["close"].to_numpy(), 60),
        "excess_kurtosis": float(np.mean(centred**4) / np.var(returns) ** 2 - 3.0),
        "abs_return_acf_lag1": float(np.corrcoef(absolute[1:], absolute[:-1])[0, 1]),
        "daily_volatility": float(returns.std() * math.sqrt(1440)),
    }


def next_minute_up(close: np.ndarray) -> np.ndarray:
    """The label of minute t: the close rises from t to t + 1 (a flat minute counts as not up)."""
    return close[1:] > close[:-1]


def naive_rule_accuracies(frame: pl.DataFrame) -> dict[str, float]:
    """Next-minute direction accuracy of each one-line rule, on the minutes every rule can call."""
    close = frame["close"].to_numpy()
    first = max(NAIVE_LOOKBACKS)
    up = next_minute_up(close)[first:]
    now = close[first:-1]
    share_up = float(np.mean(up))
    accuracies = {
        "majority_class": max(share_up, 1.0 - share_up),
        "constant_long": share_up,
        "constant_short": 1.0 - share_up,
    }
    for k in NAIVE_LOOKBACKS:
        rose = now > close[first - k : -1 - k]
        accuracies[f"last_{k}m_move"] = float(np.mean(up == rose))
        accuracies[f"reverse_last_{k}m_move"] = float(np.mean(up != rose))
    return accuracies


def candle_features(frame: pl.DataFrame) -> np.ndarray:
    """Per minute: the shapes and volumes of the last candles (NaN where a window is not yet full).

    Per candle: body, upper wick and lower wick as shares of the high-low range (0 when high == low),
    log(volume / mean volume of the 60 minutes before) and that log volume signed by the candle's direction.
    Columns: these for each of the last `CANDLE_LAGS` candles, then their means over `CANDLE_MEANS` minutes.
    """
    open_, high, low, close, volume = (
        frame[c].to_numpy() for c in ("open", "high", "low", "close", "volume")
    )
    span = high - low
    ranged = span > 0
    safe = np.where(ranged, span, 1.0)
    body = np.where(ranged, (close - open_) / safe, 0.0)
    upper = np.where(ranged, (high - np.maximum(open_, close)) / safe, 0.0)
    lower = np.where(ranged, (np.minimum(open_, close) - low) / safe, 0.0)
    mean_volume = pl.Series(volume).rolling_mean(60).shift(1).to_numpy()
    log_volume = np.log(np.maximum(volume, 1e-12) / np.maximum(mean_volume, 1e-12))
    per_candle = np.stack([body, upper, lower, log_volume, np.sign(body) * log_volume], axis=1)
    columns = [_shifted(per_candle, lag) for lag in range(CANDLE_LAGS)]
    table = pl.DataFrame(per_candle)
    columns += [table.select(pl.all().rolling_mean(window)).to_numpy() for window in CANDLE_MEANS]
    return np.concatenate(columns, axis=1)


def _shifted(values: np.ndarray, lag: int) -> np.ndarray:
    if lag == 0:
        return values
    return np.concatenate([np.full((lag, values.shape[1]), np.nan), values[:-lag]])


def long_flat_positions(
    probs: np.ndarray, long_above: float = LONG_ABOVE, flat_below: float = FLAT_BELOW
) -> np.ndarray:
    """1 from a probability above `long_above` until one below `flat_below`, else 0 (flat at the start)."""
    calls = np.where(probs > long_above, 1.0, np.where(probs < flat_below, 0.0, np.nan))
    held = pl.Series(calls, nan_to_null=True).forward_fill().fill_null(0.0)
    return held.to_numpy()


def long_flat_backtest(
    probs: np.ndarray, next_returns: np.ndarray, cost_bps_per_side: float
) -> dict[str, float]:
    """Sum of the next-minute simple returns while long, before and after costs (not compounded)."""
    position = long_flat_positions(probs)
    changes = np.abs(np.diff(position, prepend=0.0))
    gross = float(np.sum(position * next_returns))
    round_trips = float(changes.sum()) / 2.0
    days = len(probs) / 1440
    return {
        "days": days,
        "gross_return": gross,
        "net_return": gross - float(changes.sum()) * cost_bps_per_side / 10_000,
        "cost_bps_per_side": cost_bps_per_side,
        "position_changes_per_day": float(changes.sum()) / days,
        "time_in_market": float(position.mean()),
        "gross_bps_per_round_trip": gross / round_trips * 10_000 if round_trips else float("nan"),
        # the cost per side at which the net return is 0: gross per round trip / 2
        "break_even_cost_bps_per_side": gross / round_trips * 10_000 / 2 if round_trips else float("nan"),
    }


def candle_logistic(
    frame: pl.DataFrame,
    test_share: float = 0.15,
    cost_bps_per_side: float = FEE_BPS + SLIPPAGE_BPS + HALF_SPREAD_BPS,
) -> dict[str, float]:
    """A plain logistic regression on `candle_features`, fitted on the first part, scored on the last
    `test_share` (chronological), and its long/flat backtest there."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    close = frame["close"].to_numpy()
    features = candle_features(frame)[:-1]
    up = next_minute_up(close)
    next_returns = close[1:] / close[:-1] - 1.0
    usable = np.flatnonzero(np.isfinite(features).all(axis=1))
    cut = usable[int(len(usable) * (1.0 - test_share))]
    train, test = usable[usable < cut], usable[usable >= cut]
    scaler = StandardScaler().fit(features[train])
    model = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(features[train]), up[train])
    probs = model.predict_proba(scaler.transform(features[test]))[:, 1]
    return {
        "train_samples": len(train),
        "test_samples": len(test),
        "test_accuracy": float(np.mean((probs > 0.5) == up[test])),
        "test_share_up": float(np.mean(up[test])),
        **long_flat_backtest(probs, next_returns[test], cost_bps_per_side),
    }


def describe(frame: pl.DataFrame, with_logistic: bool = True) -> dict[str, Any]:
    rules = naive_rule_accuracies(frame)
    worst = max(rules, key=lambda name: abs(rules[name] - 0.5))
    result: dict[str, Any] = {
        "stats": market_stats(frame),
        "naive_rules": rules,
        "naive_rule_furthest_from_half": {"rule": worst, "accuracy": rules[worst]},
    }
    if with_logistic:
        result["candle_logistic"] = candle_logistic(frame)
    return result


def synthetic(days: int, predictability: float, seed: int = 7) -> dict[str, Any]:
    from trading_assets.market.synthetic import SyntheticSource, best_direction_accuracy

    source = SyntheticSource(seed=seed, predictability=predictability)
    out: dict[str, Any] = {"oracle_accuracy": best_direction_accuracy(predictability)}
    for symbol in SYMBOLS:
        out[symbol] = describe(source.fetch(symbol, START, START + timedelta(days=days)))
    return out


def real(directory: Path = REAL_DIR) -> dict[str, Any]:
    files = sorted(directory.glob("binance_*/*.feather")) if directory.is_dir() else []
    if not files:
        return {"note": f"skipped: no real candles under {directory}"}
    out: dict[str, Any] = {}
    for path in files:
        frame = pl.read_ipc(path).sort("date")
        out[f"{path.parent.name}/{path.name}"] = describe(frame)
    return out


def generation_seconds(days: int = 730, repeats: int = 3) -> dict[str, float]:
    """Wall time of a cold `fetch` of `days` days of BTC-USD from the epoch at predictability 0.7 (best of
    `repeats`; the block states are cleared between runs, so each run generates every block)."""
    from trading_assets.market import synthetic as module

    best = math.inf
    for _ in range(repeats):
        module._BLOCK_START_STATES.clear()
        started = time.perf_counter()
        module.SyntheticSource(predictability=0.7).fetch(
            "BTC-USD", module.EPOCH, module.EPOCH + timedelta(days=days)
        )
        best = min(best, time.perf_counter() - started)
    return {"days": days, "best_seconds": best, "repeats": repeats}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sweep", default="0,0.3,0.5,0.7,0.9,0.95", help="predictabilities of the 14-day sweep"
    )
    parser.add_argument("--real-dir", type=Path, default=REAL_DIR, help="folder of the real 1m feather files")
    parser.add_argument("--seed", type=int, default=7)


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "label": "next-minute direction: close[t + 1] > close[t]",
        "costs": {"fee_bps": FEE_BPS, "slippage_bps": SLIPPAGE_BPS, "half_spread_bps": HALF_SPREAD_BPS},
        "signal": {"long_above": LONG_ABOVE, "flat_below": FLAT_BELOW},
        "synthetic": {},
    }
    for days in (14, 60):
        for predictability in (0.0, 0.7):
            result["synthetic"][f"{days}d_p{predictability}"] = synthetic(days, predictability, args.seed)
    result["synthetic_long_run_365d_p0.7"] = _long_run(365, 0.7, args.seed)
    sweep = [float(p) for p in args.sweep.split(",") if p.strip()]
    result["synthetic_sweep_14d"] = {f"p{p}": _sweep_row(p, args.seed) for p in sweep}
    result["real"] = real(args.real_dir)
    result["generation_730d"] = generation_seconds()
    return result


def _long_run(days: int, predictability: float, seed: int) -> dict[str, Any]:
    """Stats only (no logistic) over a long span: the sampling noise of VR(60) and the autocorrelations
    on 14 days is several hundredths; over a year the market's own values show."""
    from trading_assets.market.synthetic import SyntheticSource

    source = SyntheticSource(seed=seed, predictability=predictability)
    return {
        symbol: market_stats(source.fetch(symbol, START - timedelta(days=days), START)) for symbol in SYMBOLS
    }


def _sweep_row(predictability: float, seed: int) -> dict[str, Any]:
    full = synthetic(14, predictability, seed)
    row: dict[str, Any] = {"oracle_accuracy": full.pop("oracle_accuracy")}
    for symbol, described in full.items():
        row[symbol] = {
            "naive_rule_furthest_from_half": described["naive_rule_furthest_from_half"],
            "acf_max_abs": described["stats"]["acf_max_abs"],
            "variance_ratio_60": described["stats"]["variance_ratio_60"],
            "logistic_accuracy": described["candle_logistic"]["test_accuracy"],
            "gross_bps_per_round_trip": described["candle_logistic"]["gross_bps_per_round_trip"],
            "net_return": described["candle_logistic"]["net_return"],
        }
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trading_assets_bench.market_stats", description=__doc__)
    add_arguments(parser)
    print(json.dumps(run(parser.parse_args(argv)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
