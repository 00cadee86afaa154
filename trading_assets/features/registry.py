"""The feature registry: every engineered feature, its lookback and its polars expression.

Each expression reads a complete 1-minute grid with columns `open`, `high`, `low`, `close`, `volume`
and `minute` (UTC), plus the shared intermediate columns that `add_intermediates` adds, and yields one
Float64 value per minute. Prices enter only as scale-free quantities
(log returns, ratios to a moving average, shares of a range), so one model serves any price level.

Conventions (the reference tests in `trading_assets_tests/features` check them on real candles):

* Finite windows. The value at minute t depends only on the `lookback` minutes before t (and t itself),
  so a day computed alone with `MAX_LOOKBACK` minutes of the previous day equals the same day computed
  inside a long range. Recursive indicators use a *truncated* EMA: the weights a(1-a)^k, k = 0..L-1,
  renormalised to sum to 1, with L the smallest length whose dropped tail weight (1-a)^L is below 1e-10.
  It is computed in O(n) as ewm(t) - (1-a)^L * ewm(t-L) over polars' recursive `ewm_mean(adjust=False)`
  (the seed cancels exactly). Against the classic seeded EMA (TA-Lib, pandas `adjust=False`) it agrees
  to about 1e-10 relative once both are past their warm-up; rounding makes a day computed alone differ
  from a long range by at most 1e-12 relative to max(1, |value|) (tested; window means, deviations and
  gap handling use fixed-order sums and integer counts, so most features are bit-identical).
* EMA spans use a = 2 / (span + 1); Wilder smoothing (RSI, ATR) uses a = 1 / period.
* Standard deviations use ddof=0 (population std, as TA-Lib's Bollinger bands; pandas' default is ddof=1).
* Stochastic %K is the fast %K (no smoothing); %D is its 3-minute simple mean. Williams %R uses the same
  14-minute high/low. CCI uses the mean absolute deviation from the current 20-minute typical-price mean.
* Degenerate windows (high == low, no price movement, no volume) yield the neutral value named in the
  feature's description instead of NaN or infinity.
* Warm-up: a feature is null for its first `lookback` minutes of a grid; the pipeline flags those rows.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

FEATURE_SET_VERSION = "2"  # 2: MFI compares prices (ties are neither up nor down flow)
#: Tail weight below which a truncated EMA drops the older minutes.
EMA_TRUNCATION_TOL = 1e-10
#: Windows whose denominator is below this share of the price (or mean volume) count as degenerate.
RELATIVE_FLOOR = 1e-12

_open, _high, _low, _close, _volume = (pl.col(c) for c in ("open", "high", "low", "close", "volume"))


@dataclass(frozen=True)
class Feature:
    """One engineered feature.

    `lookback` is the number of earlier minutes the computation reads: the feature is null for the first
    `lookback` minutes of a grid and depends on no minute before t - lookback.
    """

    name: str
    description: str
    lookback: int
    expr: pl.Expr
    bounds: tuple[float, float] | None = None


def truncation_length(alpha: float) -> int:
    """Smallest L with (1 - alpha)^L below `EMA_TRUNCATION_TOL`."""
    return math.ceil(math.log(EMA_TRUNCATION_TOL) / math.log(1.0 - alpha))


def truncated_ema(x: pl.Expr, alpha: float) -> pl.Expr:
    """EMA over the last `truncation_length(alpha)` values with renormalised weights (see module doc)."""
    length = truncation_length(alpha)
    tail = (1.0 - alpha) ** length
    recursive = x.ewm_mean(alpha=alpha, adjust=False)
    return (recursive - tail * recursive.shift(length)) / (1.0 - tail)


def _span(span: int) -> float:
    return 2.0 / (span + 1)


def _wilder(x: pl.Expr, period: int) -> pl.Expr:
    return truncated_ema(x, 1.0 / period).clip(lower_bound=0.0)


def _window_mean_np(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each trailing window, summed oldest first: a window's bits do not depend on the grid start."""
    total = values[: values.size - window + 1].copy()
    for lag in range(1, window):
        total += values[lag : values.size - window + 1 + lag]
    return total / window


def _window_deviation_np(values: np.ndarray, window: int, power: int) -> np.ndarray:
    """Mean of |x - window mean|^power per trailing window (power 1: mean absolute deviation)."""
    mean = _window_mean_np(values, window)
    total, term = np.zeros_like(mean), np.empty_like(mean)
    for lag in range(window):
        np.subtract(values[lag : values.size - window + 1 + lag], mean, out=term)
        total += np.abs(term, out=term) if power == 1 else np.square(term, out=term)
    return total / window


def _windowed(x: pl.Expr, window: int, stat: Callable[[np.ndarray], np.ndarray]) -> pl.Expr:
    """A numpy trailing-window statistic as an expression, null for the first window - 1 rows."""

    def apply(series: pl.Series) -> pl.Series:
        values = series.to_numpy().astype(np.float64)
        if values.size < window:
            return pl.Series(np.full(values.size, np.nan), nan_to_null=True)
        padded = np.concatenate([np.full(window - 1, np.nan), stat(values)])
        return pl.Series(padded, nan_to_null=True)

    return x.map_batches(apply, return_dtype=pl.Float64)


def _window_mean(x: pl.Expr, window: int) -> pl.Expr:
    return _windowed(x, window, lambda values: _window_mean_np(values, window))


def _window_deviation(x: pl.Expr, window: int, power: int) -> pl.Expr:
    return _windowed(x, window, lambda values: _window_deviation_np(values, window, power))


def _true_range() -> pl.Expr:
    prev = _close.shift(1)
    return pl.max_horizontal(_high - _low, (_high - prev).abs(), (_low - prev).abs())


def _ratio(num: pl.Expr, den: pl.Expr, default: float, floor: pl.Expr | float = 0.0) -> pl.Expr:
    """num / den where den > floor, `default` where den is known but degenerate, null in warm-up."""
    return pl.when(den > floor).then(num / den).when(den.is_not_null()).then(pl.lit(default))


def _angle(position: pl.Expr, period: int) -> pl.Expr:
    """Position in a cycle as an angle; the weekday position uses Monday = 0 (1970-01-01 was a Thursday)."""
    return position.cast(pl.Float64) * (2.0 * math.pi / period)


def _ratio_if(valid: pl.Expr, num: pl.Expr, den: pl.Expr, default: float) -> pl.Expr:
    """num / den where `valid`, `default` where not, null in warm-up.

    `valid` counts nonzero terms with an integer rolling sum (exact): a floating rolling sum over a window
    of zeros can keep a rounding residue that depends on where the grid starts.
    """
    return pl.when(valid).then(num / den).when(valid.is_not_null()).then(pl.lit(default))


def _nonzero_count(x: pl.Expr, window: int) -> pl.Expr:
    return (x != 0).cast(pl.Int32).rolling_sum(window)


def _c(name: str) -> pl.Expr:
    return pl.col(name)


def _typical_price_direction() -> pl.Expr:
    """+1, -1 or 0 as the typical price rose, fell or stayed, comparing prices rather than a float difference.

    high + low + close is summed in decimal with 8 places (exchange ticks are exact there, and a price times 1e8
    stays below 2**53 up to 9e7), so two minutes whose prices sum to the same value tie, as in TA-Lib's MFI,
    instead of differing by a rounding error (which was off by up to 3.7 MFI points on real BTC minutes).
    """
    price_sum = sum(column.cast(pl.Decimal(38, 8)) for column in (_high, _low, _close))
    return price_sum.diff().sign().cast(pl.Float64)


def _flow_share(sign: int) -> pl.Expr:
    """Money flow (typical price x volume) of minutes whose typical price moved in direction `sign`."""
    moved = _c("_tp_direction") == sign
    return pl.when(moved).then(_c("_flow")).when(moved.is_not_null()).then(0.0).rolling_sum(14)


#: Shared intermediate columns, computed stage by stage (a stage may use the earlier ones) before the
#: features. Polars does not deduplicate repeated rolling sub-expressions, so sharing them keeps the
#: pipeline fast. Their names start with "_" and they are not stored.
INTERMEDIATE_STAGES: tuple[dict[str, pl.Expr], ...] = (
    {
        "_log_close": _close.log(),
        "_minute_angle": _angle(pl.col("minute").dt.epoch("s") // 60 % 1440, 1440),
        "_weekday_angle": _angle((pl.col("minute").dt.epoch("s") // 86_400 + 3) % 7, 7),
        "_change": _close.diff(),
        "_tp": (_high + _low + _close) / 3.0,
        "_hl_log": (_high / _low).log(),
        "_hh14": _high.rolling_max(14),
        "_ll14": _low.rolling_min(14),
        "_ema12": truncated_ema(_close, _span(12)),
        "_ema26": truncated_ema(_close, _span(26)),
        "_ema60": truncated_ema(_close, _span(60)),
        "_atr14": _wilder(_true_range(), 14),
        "_close_mean20": _window_mean(_close, 20),
        "_close_std20": _window_deviation(_close, 20, power=2).sqrt(),
        "_volume_mean60": _volume.rolling_mean(60),
        "_volume_std60": _volume.rolling_std(60, ddof=0),
        "_traded60": _nonzero_count(_volume, 60),
    },
    {
        "_r1_sq": _c("_log_close").diff() ** 2,
        "_gain14": _wilder(_c("_change").clip(lower_bound=0.0), 14),
        "_loss14": _wilder((-_c("_change")).clip(lower_bound=0.0), 14),
        "_tp_mean20": _window_mean(_c("_tp"), 20),
        "_tp_mad20": _window_deviation(_c("_tp"), 20, power=1),
        "_tp_direction": _typical_price_direction(),
        "_flow": _c("_tp") * _volume,
        "_stoch_k14": _ratio(100.0 * (_close - _c("_ll14")), _c("_hh14") - _c("_ll14"), 50.0).clip(
            0.0, 100.0
        ),
        "_macd_raw": _c("_ema12") - _c("_ema26"),
    },
    {
        "_macd_signal_raw": truncated_ema(_c("_macd_raw"), _span(9)),
        "_flow_moved": _c("_tp_direction") * _c("_flow"),
        "_flow_up14": _flow_share(1),
        "_flow_down14": _flow_share(-1),
        "_flow_mean60": _c("_flow").rolling_mean(60),
    },
)


def add_intermediates(frame: pl.DataFrame) -> pl.DataFrame:
    """The grid with the intermediate columns that the feature expressions read.

    Eager on purpose: a lazy plan inlines each stage's expressions into every later use.
    """
    for stage in INTERMEDIATE_STAGES:
        frame = frame.with_columns(**stage)
    return frame


def _log_return(minutes: int) -> pl.Expr:
    return _c("_log_close").diff(minutes)


def _root_mean(x: pl.Expr, window: int) -> pl.Expr:
    """sqrt of the window mean of x >= 0; exactly 0 when every term is 0 (a gap), not a rounding residue."""
    terms = _nonzero_count(x, window)
    return (
        pl.when(terms > 0)
        .then(x.rolling_mean(window).clip(lower_bound=0.0).sqrt())
        .when(terms >= 0)
        .then(0.0)
    )


def _garman_klass_term() -> pl.Expr:
    return 0.5 * _c("_hl_log") ** 2 - (2.0 * math.log(2.0) - 1.0) * (_close / _open).log() ** 2


def _rsi() -> pl.Expr:
    gain, loss = _c("_gain14"), _c("_loss14")
    return _ratio(100.0 * gain, gain + loss, 50.0, RELATIVE_FLOOR * _close).clip(0.0, 100.0)


def _bb_pctb() -> pl.Expr:
    mean, std = _c("_close_mean20"), _c("_close_std20")
    return _ratio(_close - (mean - 2.0 * std), 4.0 * std, 0.5, RELATIVE_FLOOR * mean)


def _cci() -> pl.Expr:
    mean = _c("_tp_mean20")
    return _ratio(_c("_tp") - mean, 0.015 * _c("_tp_mad20"), 0.0, RELATIVE_FLOOR * mean)


def _volume_z() -> pl.Expr:
    mean = _c("_volume_mean60")
    traded = (_c("_traded60") > 0) & (_c("_volume_std60") > RELATIVE_FLOOR * mean)
    return _ratio_if(traded, _volume - mean, _c("_volume_std60"), 0.0)


def _obv_slope(window: int) -> pl.Expr:
    signed = _c("_change").sign() * _volume
    traded = _nonzero_count(_volume, window) > 0
    return _ratio_if(traded, signed.rolling_sum(window), _volume.rolling_sum(window), 0.0).clip(-1.0, 1.0)


def _vwap_dev() -> pl.Expr:
    """close / VWAP(60) - 1 written as close * mean volume / mean(price x volume) - 1: no volume gives 0."""
    return _ratio_if(_c("_traded60") > 0, _close * _c("_volume_mean60"), _c("_flow_mean60"), 1.0) - 1.0


def _candle_share(part: pl.Expr) -> pl.Expr:
    return _ratio(part, _high - _low, 0.0)


_L12, _L26, _L9, _L60 = (truncation_length(_span(span)) for span in (12, 26, 9, 60))
_L14 = truncation_length(1 / 14)
_PCT = (0.0, 100.0)
_POSITIVE = (0.0, math.inf)
_UNIT = (-1.0, 1.0)

FEATURES: tuple[Feature, ...] = (
    Feature("ret_1", "log return over 1 minute", 1, _log_return(1)),
    Feature("ret_5", "log return over 5 minutes", 5, _log_return(5)),
    Feature("ret_15", "log return over 15 minutes", 15, _log_return(15)),
    Feature("ret_60", "log return over 60 minutes", 60, _log_return(60)),
    Feature("ret_240", "log return over 240 minutes", 240, _log_return(240)),
    Feature(
        "rv_15",
        "realised volatility: RMS of 1-minute log returns over 15 minutes",
        15,
        _root_mean(_c("_r1_sq"), 15),
        _POSITIVE,
    ),
    Feature(
        "rv_60",
        "realised volatility: RMS of 1-minute log returns over 60 minutes",
        60,
        _root_mean(_c("_r1_sq"), 60),
        _POSITIVE,
    ),
    Feature(
        "parkinson_60",
        "Parkinson high-low volatility per minute over 60 minutes",
        59,
        _root_mean(_c("_hl_log") ** 2 / (4.0 * math.log(2.0)), 60),
        _POSITIVE,
    ),
    Feature(
        "garman_klass_60",
        "Garman-Klass OHLC volatility per minute over 60 minutes",
        59,
        _root_mean(_garman_klass_term(), 60),
        _POSITIVE,
    ),
    Feature(
        "atr_14",
        "Wilder ATR(14) / close (truncated Wilder smoothing)",
        _L14,
        _c("_atr14") / _close,
        _POSITIVE,
    ),
    Feature("rsi_14", "Wilder RSI(14); 50 when the price did not move", _L14 + 1, _rsi(), _PCT),
    Feature("macd", "MACD line EMA(12) - EMA(26), divided by close", _L26, _c("_macd_raw") / _close),
    Feature(
        "macd_signal",
        "MACD signal: EMA(9) of the MACD line, divided by close",
        _L26 + _L9,
        _c("_macd_signal_raw") / _close,
    ),
    Feature(
        "macd_hist",
        "MACD histogram: line - signal, divided by close",
        _L26 + _L9,
        (_c("_macd_raw") - _c("_macd_signal_raw")) / _close,
    ),
    Feature("bb_pctb_20", "Bollinger %B (20, 2 std, ddof=0); 0.5 when the std is 0", 19, _bb_pctb()),
    Feature(
        "bb_width_20",
        "Bollinger bandwidth (upper - lower) / middle (20, 2 std, ddof=0)",
        19,
        4.0 * _c("_close_std20") / _c("_close_mean20"),
        _POSITIVE,
    ),
    Feature("stoch_k_14", "fast stochastic %K(14); 50 when high == low", 13, _c("_stoch_k14"), _PCT),
    Feature(
        "stoch_d_3",
        "stochastic %D: 3-minute mean of %K(14)",
        15,
        _c("_stoch_k14").rolling_mean(3).clip(0.0, 100.0),
        _PCT,
    ),
    Feature(
        "williams_r_14",
        "Williams %R(14); -50 when high == low",
        13,
        _ratio(-100.0 * (_c("_hh14") - _close), _c("_hh14") - _c("_ll14"), -50.0).clip(-100.0, 0.0),
        (-100.0, 0.0),
    ),
    Feature(
        "cci_20", "commodity channel index (20, constant 0.015); 0 when the mean deviation is 0", 19, _cci()
    ),
    Feature(
        "roc_10", "rate of change over 10 minutes, in percent", 10, 100.0 * (_close / _close.shift(10) - 1.0)
    ),
    Feature("dist_sma_20", "close / SMA(20) - 1", 19, _close / _c("_close_mean20") - 1.0),
    Feature("dist_sma_60", "close / SMA(60) - 1", 59, _close / _close.rolling_mean(60) - 1.0),
    Feature("dist_sma_240", "close / SMA(240) - 1", 239, _close / _close.rolling_mean(240) - 1.0),
    Feature("dist_ema_12", "close / EMA(12) - 1 (truncated EMA)", _L12, _close / _c("_ema12") - 1.0),
    Feature("dist_ema_26", "close / EMA(26) - 1 (truncated EMA)", _L26, _close / _c("_ema26") - 1.0),
    Feature("dist_ema_60", "close / EMA(60) - 1 (truncated EMA)", _L60, _close / _c("_ema60") - 1.0),
    Feature(
        "volume_z_60",
        "volume z-score against the last 60 minutes (ddof=0); 0 when the std is 0",
        59,
        _volume_z(),
    ),
    Feature(
        "volume_ratio_15_60",
        "mean volume over 15 minutes / over 60 minutes; 1 when no volume",
        59,
        _ratio_if(_c("_traded60") > 0, _volume.rolling_mean(15), _c("_volume_mean60"), 1.0).clip(0.0, 4.0),
        (0.0, 4.0),
    ),
    Feature("obv_slope_30", "OBV change over 30 minutes / volume traded in them", 30, _obv_slope(30), _UNIT),
    Feature(
        "mfi_14",
        "money flow index(14); 50 when no money flowed",
        14,
        _ratio_if(
            _nonzero_count(_c("_flow_moved"), 14) > 0,
            100.0 * _c("_flow_up14"),
            _c("_flow_up14") + _c("_flow_down14"),
            50.0,
        ).clip(0.0, 100.0),
        _PCT,
    ),
    Feature("vwap_dev_60", "close / VWAP(60, typical price) - 1; 0 when no volume", 59, _vwap_dev()),
    Feature(
        "body_share",
        "(close - open) / (high - low); 0 when high == low",
        0,
        _candle_share(_close - _open),
        _UNIT,
    ),
    Feature(
        "upper_wick_share",
        "(high - max(open, close)) / (high - low); 0 when high == low",
        0,
        _candle_share(_high - pl.max_horizontal(_open, _close)),
        (0.0, 1.0),
    ),
    Feature(
        "lower_wick_share",
        "(min(open, close) - low) / (high - low); 0 when high == low",
        0,
        _candle_share(pl.min_horizontal(_open, _close) - _low),
        (0.0, 1.0),
    ),
    Feature("minute_of_day_sin", "sine of the UTC minute of day", 0, _c("_minute_angle").sin(), _UNIT),
    Feature("minute_of_day_cos", "cosine of the UTC minute of day", 0, _c("_minute_angle").cos(), _UNIT),
    Feature(
        "day_of_week_sin", "sine of the UTC day of week (Monday = 0)", 0, _c("_weekday_angle").sin(), _UNIT
    ),
    Feature(
        "day_of_week_cos", "cosine of the UTC day of week (Monday = 0)", 0, _c("_weekday_angle").cos(), _UNIT
    ),
)

FEATURE_NAMES: tuple[str, ...] = tuple(feature.name for feature in FEATURES)
MAX_LOOKBACK: int = max(feature.lookback for feature in FEATURES)

#: The default model set: the features minus exact or near linear duplicates (%R = %K - 100,
#: histogram = line - signal, lower wick = 1 - body - upper wick, ...).
MODEL_FEATURES: tuple[str, ...] = tuple(
    name
    for name in FEATURE_NAMES
    if name
    not in {
        "williams_r_14",
        "macd_hist",
        "lower_wick_share",
        "roc_10",
        "stoch_d_3",
        "dist_sma_20",
        "dist_ema_12",
        "cci_20",
    }
)

FEATURE_DTYPE = pl.Float64()


def schema_hash(names: tuple[str, ...] = FEATURE_NAMES, version: str = FEATURE_SET_VERSION) -> str:
    """Short hash of the feature set: names in order, their dtype, and the definition version."""
    payload = json.dumps({"version": version, "columns": [[name, str(FEATURE_DTYPE)] for name in names]})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
