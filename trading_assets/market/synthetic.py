"""An offline, deterministic synthetic market of 1-minute candles.

Determinism. Time from `EPOCH` is cut into blocks of `BLOCK_MINUTES`. Block *b* of a symbol draws its
random numbers from a generator seeded by (seed, symbol, b) and continues the state (volatility
factors, last standardised return, last close) left by block *b - 1*. So the candle of a given
(symbol, minute) is the same whatever range is requested: partition boundaries never change values.

Realism. Per-symbol price level, volatility and volume (BTC, ETH and SOL differ); volatility clustering
from three AR(1) log-volatility factors (half-lives of about 30 minutes, 1 day and 10 days); heavy tails
from Student-t(4) innovations; intraday seasonality (busier around the European and US opens, quieter at
weekends); volume that rises with the absolute return; consistent OHLC (open = previous close, high and
low bracket both).

Predictability. A hidden trend regime s_t in {-1, +1} switches with probability 1 / `REGIME_MEAN_MINUTES`
each minute; the standardised return is z_t = p * s_t + e_t with p = `predictability` in [0, 0.95] and
Student-t(4) noise e_t scaled to unit variance. A switch is announced by a burst of volume that decays over
`_SWITCH_BURST_DECAY_MIN` minutes. So the pattern needs the window: the direction of the moves since the last
volume burst tells the regime, while one-line rules see much less of it. Measured on 20 days of BTC-USD,
seed 7 (`best_direction_accuracy` is the regime oracle, which no model reaches: a model must infer s_t):

    p     last-move rule  oracle   what it means
    0.0   0.50            0.50     pure noise: no model can beat a coin; every gate must fail
    0.5   0.61            0.74
    0.7   0.69            0.81     the default (settings): a model that tracks the regime passes every gate,
                                   the sign-of-the-last-move rule does not beat it (skill_gate)
    0.9   0.75            0.87

Regimes last hours, so following them pays after fees of a few basis points per trade; at p = 0 nothing
does. Volatility scales z but never flips its sign. The trends make a day up to `TREND_VOLATILITY_MULTIPLE`
times as volatile as the profile says (at p = 0 exactly the profile's volatility).
"""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import polars as pl
from scipy.signal import lfilter
from scipy.stats import t as student_t

from trading_assets.market.candles import conform

EPOCH = datetime(2019, 1, 1, tzinfo=UTC)
BLOCK_MINUTES = 16 * 1440
_STUDENT_T_DOF = 4.0
_VOL_FACTOR_HALF_LIVES_MIN = (30.0, 1440.0, 14400.0)
_VOL_FACTOR_STD = (0.35, 0.30, 0.20)
_PRICE_HALF_LIFE_MIN = 120 * 1440
#: Mean length of a trend regime in minutes (switch probability 1 / this per minute).
REGIME_MEAN_MINUTES = 240
#: Volume multiplier in the minute of a regime switch, decaying with `_SWITCH_BURST_DECAY_MIN`.
_SWITCH_VOLUME_BURST = 4.0
#: The trends may make a day at most this many times as volatile as the profile's daily volatility: enough
#: for a trend's drift (about 1 bp a minute for BTC at p = 0.7) to pay a few basis points of fees per trade.
TREND_VOLATILITY_MULTIPLE = 2.0
_SWITCH_BURST_DECAY_MIN = 10.0


@dataclass(frozen=True)
class SymbolProfile:
    """Price level at EPOCH, daily volatility of log returns and typical volume per minute."""

    start_price: float
    daily_volatility: float
    volume_per_minute: float


PROFILES = {
    "BTC-USD": SymbolProfile(start_price=30_000.0, daily_volatility=0.022, volume_per_minute=6.0),
    "ETH-USD": SymbolProfile(start_price=2_000.0, daily_volatility=0.032, volume_per_minute=70.0),
    "SOL-USD": SymbolProfile(start_price=40.0, daily_volatility=0.050, volume_per_minute=900.0),
}


def symbol_key(symbol: str) -> int:
    return zlib.crc32(symbol.encode())


def profile_for(symbol: str) -> SymbolProfile:
    """The profile of a known symbol, or a stable one derived from the symbol's name."""
    if symbol in PROFILES:
        return PROFILES[symbol]
    key = symbol_key(symbol)
    return SymbolProfile(
        start_price=float(10 ** (1 + key % 4)),
        daily_volatility=0.02 + (key % 7) * 0.005,
        volume_per_minute=float(10 ** (key % 3 + 1)),
    )


def best_direction_accuracy(predictability: float) -> float:
    """1-minute direction accuracy of the regime oracle (knows s_t) at this predictability.

    P(z > 0 | s = +1) for z = p + e with the unit-variance Student-t(4) noise used here.
    """
    scale = math.sqrt(_STUDENT_T_DOF / (_STUDENT_T_DOF - 2))
    return float(student_t.cdf(predictability * scale, _STUDENT_T_DOF))


@dataclass(frozen=True)
class _BlockState:
    """What block b leaves to block b + 1; a pure function of (seed, predictability, symbol, b)."""

    vol_factors: tuple[float, ...]
    regime: int  # +1 or -1
    minutes_since_switch: int
    last_log_close: float


# Shared by all instances in a process: states are deterministic, so caching them only saves time.
_BLOCK_START_STATES: dict[tuple[int, float, str], dict[int, _BlockState]] = {}


class SyntheticSource:
    """Deterministic synthetic candles; see the module docstring for what they model."""

    name = "synthetic"

    def __init__(self, seed: int = 7, predictability: float = 0.0, cached_blocks: int = 8) -> None:
        if not 0.0 <= predictability <= 0.95:
            raise ValueError(f"predictability must be in [0, 0.95], got {predictability}")
        self.seed = seed
        self.predictability = predictability
        self._blocks: OrderedDict[tuple[str, int], pl.DataFrame] = OrderedDict()
        self._cached_blocks = cached_blocks

    def fetch(self, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
        """All candles of `symbol` with start <= minute < end (the synthetic market never has gaps)."""
        if start < EPOCH:
            raise ValueError(f"synthetic market starts at {EPOCH.isoformat()}; asked for {start.isoformat()}")
        first_block = _minute_index(start) // BLOCK_MINUTES
        last_block = (_minute_index(end) - 1) // BLOCK_MINUTES
        if end <= start:
            return conform(self._block(symbol, first_block).head(0))
        frame = pl.concat([self._block(symbol, b) for b in range(first_block, last_block + 1)])
        return frame.filter((pl.col("minute") >= start) & (pl.col("minute") < end))

    def _block(self, symbol: str, block: int) -> pl.DataFrame:
        key = (symbol, block)
        if key in self._blocks:
            self._blocks.move_to_end(key)
            return self._blocks[key]
        state = self._state_at(symbol, block)
        frame, _ = self._generate(symbol, block, state)
        self._blocks[key] = frame
        if len(self._blocks) > self._cached_blocks:
            self._blocks.popitem(last=False)
        return frame

    def _state_at(self, symbol: str, block: int) -> _BlockState:
        """The state at the start of `block`, generating earlier blocks as needed (and remembering)."""
        states = _BLOCK_START_STATES.setdefault(
            (self.seed, self.predictability, symbol), {0: self._initial_state(symbol)}
        )
        known = max(b for b in states if b <= block)
        for b in range(known, block):
            _, states[b + 1] = self._generate(symbol, b, states[b], build_frame=False)
        return states[block]

    @staticmethod
    def _initial_state(symbol: str) -> _BlockState:
        return _BlockState(
            vol_factors=(0.0,) * len(_VOL_FACTOR_HALF_LIVES_MIN),
            regime=1,
            minutes_since_switch=REGIME_MEAN_MINUTES,
            last_log_close=math.log(profile_for(symbol).start_price),
        )

    def _generate(
        self, symbol: str, block: int, state: _BlockState, build_frame: bool = True
    ) -> tuple[pl.DataFrame | None, _BlockState]:
        rng = np.random.default_rng([self.seed, symbol_key(symbol), block])
        n = BLOCK_MINUTES
        profile = profile_for(symbol)
        log_vol, vol_factors = _log_volatility(rng, state.vol_factors, n)
        innovations = rng.standard_t(_STUDENT_T_DOF, n) / math.sqrt(_STUDENT_T_DOF / (_STUDENT_T_DOF - 2))
        regime, since_switch = _regimes(rng.random(n) < 1.0 / REGIME_MEAN_MINUTES, state)
        p = self.predictability
        z = p * regime + innovations
        minutes = block * BLOCK_MINUTES + np.arange(n, dtype=np.int64)
        # A regime's drift adds p^2 * (REGIME_MEAN_MINUTES - 1) to the long-run variance per minute of the
        # noise's 1; scaled so a day is at most `TREND_VOLATILITY_MULTIPLE` times as volatile as the profile.
        trend_multiple = math.sqrt(1.0 + p * p * (REGIME_MEAN_MINUTES - 1))
        long_run = min(1.0, TREND_VOLATILITY_MULTIPLE / trend_multiple)
        sigma = (
            profile.daily_volatility / math.sqrt(1440) * long_run * _seasonality(minutes) * np.exp(log_vol)
        )
        log_close = _mean_reverting_log_price(sigma * z, state.last_log_close, math.log(profile.start_price))
        next_state = _BlockState(vol_factors, int(regime[-1]), int(since_switch[-1]), float(log_close[-1]))
        if not build_frame:
            return None, next_state
        log_open = np.concatenate([[state.last_log_close], log_close[:-1]])
        wick_up, wick_down = np.abs(rng.standard_normal((2, n))) * 0.6
        high = np.exp(np.maximum(log_open, log_close) + sigma * wick_up)
        low = np.exp(np.minimum(log_open, log_close) - sigma * wick_down)
        burst = 1.0 + _SWITCH_VOLUME_BURST * np.exp(-since_switch / _SWITCH_BURST_DECAY_MIN)
        activity = (0.35 + 0.65 * np.abs(z)) * burst
        volume = profile.volume_per_minute * _seasonality(minutes) * activity * rng.lognormal(0.0, 0.4, n)
        frame = pl.DataFrame(
            {
                "minute": _minute_timestamps(minutes),
                "open": np.exp(log_open),
                "high": high,
                "low": low,
                "close": np.exp(log_close),
                "volume": volume,
            }
        )
        return conform(frame), next_state


def _regimes(switches: np.ndarray, state: _BlockState) -> tuple[np.ndarray, np.ndarray]:
    """The regime of each minute and the minutes since its last switch, continuing `state`."""
    regime = state.regime * np.cumprod(np.where(switches, -1, 1))
    index = np.arange(len(switches))
    last_switch = np.maximum.accumulate(np.where(switches, index, -1))
    since_switch = np.where(last_switch >= 0, index - last_switch, state.minutes_since_switch + index + 1)
    return regime, since_switch


def _minute_index(moment: datetime) -> int:
    return int((moment - EPOCH).total_seconds() // 60)


def _minute_timestamps(minute_indices: np.ndarray) -> pl.Series:
    epoch_us = int(EPOCH.timestamp() * 1_000_000)
    micros = epoch_us + minute_indices * 60_000_000
    return pl.Series("minute", micros).cast(pl.Datetime("us", "UTC"))


def _mean_reverting_log_price(log_returns: np.ndarray, last_log_close: float, anchor: float) -> np.ndarray:
    """Cumulative log price pulled towards `anchor` with a half-life of `_PRICE_HALF_LIFE_MIN`.

    The pull moves the price by about 1e-6 a minute (1,000 times less than a typical return), so it keeps
    prices at realistic levels over years without adding anything a model could exploit.
    """
    keep = 0.5 ** (1.0 / _PRICE_HALF_LIFE_MIN)
    deviation, _ = lfilter([1.0], [1.0, -keep], log_returns, zi=[keep * (last_log_close - anchor)])
    return anchor + deviation


def _log_volatility(
    rng: np.random.Generator, factors: tuple[float, ...], n: int
) -> tuple[np.ndarray, tuple[float, ...]]:
    """Sum of AR(1) factors, each with unit-free stationary std `_VOL_FACTOR_STD`, and their end state."""
    total = np.zeros(n)
    end_state = []
    shocks = rng.standard_normal((len(factors), n))
    for shock, start, half_life, std in zip(
        shocks, factors, _VOL_FACTOR_HALF_LIVES_MIN, _VOL_FACTOR_STD, strict=True
    ):
        phi = 0.5 ** (1.0 / half_life)
        path, _ = lfilter([std * math.sqrt(1 - phi * phi)], [1.0, -phi], shock, zi=[phi * start])
        total += path
        end_state.append(float(path[-1]))
    # Centre so the mean of exp(log_vol) stays near 1 (lognormal mean correction).
    variance = sum(s * s for s in _VOL_FACTOR_STD)
    return total - variance / 2, tuple(end_state)


def _seasonality(minute_indices: np.ndarray) -> np.ndarray:
    """Intraday activity: busier at the European (08:00) and US (14:30) opens, quieter at weekends."""
    minute_of_day = minute_indices % 1440
    european = 0.35 * np.exp(-(((minute_of_day - 480) / 90.0) ** 2))
    american = 0.6 * np.exp(-(((minute_of_day - 870) / 120.0) ** 2))
    weekday = ((minute_indices // 1440) + EPOCH.weekday()) % 7
    weekend = np.where(weekday >= 5, 0.7, 1.0)
    return (0.8 + european + american) * weekend
