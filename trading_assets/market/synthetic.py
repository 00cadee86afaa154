"""An offline, deterministic synthetic market of 1-minute candles.

Determinism. Time from `EPOCH` is cut into blocks of `BLOCK_MINUTES`. Block *b* of a symbol draws its
random numbers from a generator seeded by (seed, symbol, b) and continues the state (volatility factors,
order-flow pressure, last close) left by block *b - 1*. So the candle of a given (symbol, minute) is the same
whatever range is requested: partition boundaries never change values.

Realism. Per-symbol price level, volatility and volume (BTC, ETH and SOL differ); volatility clustering from
three AR(1) log-volatility factors (half-lives of about 30 minutes, 1 day and 10 days); Student-t(4) tails
from a per-minute burst scale; intraday seasonality (busier around the European and US opens, quieter at
weekends); volume that rises with the size of the move; consistent OHLC (open = previous close, high and low
bracket both) with real-looking shapes (many candles lack a wick; a wick is on average about a sixth of the
range, as on Binance). The log return of minute t is r_t = s_t * b_t * z_t: s_t the profile's volatility
times seasonality and clustering, b_t the burst scale, z_t a Gaussian white noise of unit variance. s and b
are independent of z, so the direction of the next minute is independent of the whole price past: the
autocorrelations, the variance ratio (about 1) and every rule on past prices look like a random walk.
`trading_assets_bench/market_stats.py` measures this market next to real Binance candles.

The learnable effect: a hidden order-flow pressure w_t (unit variance) leans on the next minute,

    z_t+1 = (a w_t + g_t+1) / sqrt(1 + a^2)          g: the minute's own shock, standard normal
    w_t   = rho w_t-1 - c g_t + sigma_eta eta_t      eta: new flow, standard normal

and the pressure reacts against each price shock: with c = a * rho every autocovariance
cov(z_t, z_t+k) = a rho^(k-1) (a rho - c) / (1 + a^2) is 0 (k >= 1), so z is white; being Gaussian, it is
independent noise, and w_t is independent of every past move. That is why no one-line rule of past prices
sees the pressure: not the last move, not its reverse, not any trend. The pressure shows only in what is not
the price path, twice and noisily: in the wicks of the candle it closes (buying pressure: dips are bought,
so a lower wick is likelier and longer; rallies are not sold into, so an upper wick is rarer and shorter)
and in the volume (buyers lift offers: a minute that moved with the pressure trades exp(v |w|) times its
usual volume, one that moved against it exp(-v |w|) times). At the default a one-line rule on either channel
alone calls 0.70-0.71 ("lower wick longer than upper wick") or 0.67 ("up on more than the usual volume, or
down on less") of the next directions; a logistic regression that weighs both calls 0.74-0.75.

`predictability` p in [0, 0.95] sets a = tan(pi * ORACLE_SLOPE * p), so an oracle who knows w_t calls
1/2 + ORACLE_SLOPE * p of the directions (`best_direction_accuracy`); rho^2 = (1 - 0.1) / (1 + a^2), so a
tenth of the pressure's variance is new flow each minute. A stronger pressure must fade faster (the reaction
c = a rho cannot absorb more than a shock has): half-life 4.6 minutes at p = 0.3, 1.0 at 0.7, 0.4 at 0.95.
At p = 0 the pressure still shapes wicks and volume but moves nothing: no model can beat a coin there.
Measured on 14 days from 2024-01-01 of BTC-USD / ETH-USD / SOL-USD, seed 7 (rules: majority class, constant
long or short, the sign of the last 1, 2, 5, 10, 15, 30 or 60-minute move and its reverse, the one furthest
from 0.5; logistic: scikit-learn on the last five candles' shapes and volumes, tested on the last 15 %):

    p     oracle  furthest rule (3 symbols)  logistic (3 symbols)  what it means
    0.0   0.500   0.496 0.507 0.495          0.496 0.500 0.504     pure noise: every gate must fail
    0.3   0.638   0.496 0.507 0.509          0.612 0.623 0.623
    0.5   0.730   0.507 0.491 0.507          0.693 0.693 0.686
    0.7   0.822   0.508 0.495 0.506          0.751 0.744 0.735
    0.9   0.914   0.493 0.493 0.504          0.786 0.793 0.803
    0.95  0.937   0.507 0.494 0.495          0.800 0.806 0.815

(The project's own logistic model, on its 31 features and 60-minute windows, reaches 0.72-0.73 at p = 0.7 and
about 0.50 at 0.)
On 60 days at p = 0.7 every rule stays within 0.500 +/- 0.004 and the logistic calls 0.746-0.749; VR(60) is
0.89-1.00 (over a year 0.98-1.02; 14-day windows scatter from about 0.8 to 1.25 like any random walk's, and
BTC-USD's table window gives 0.79; real 30-day files 0.92-1.00).

What it does not give: a signal that pays a retail fee. The pressure lasts about a minute, so a call flips
every few minutes: traded long/flat (long above 0.55, flat below 0.45) the logistic's signal changes position
about 400 times a day and earns gross 4-23 bps per round trip (BTC about 8, ETH 4-11, SOL 18-23: 1.3-1.8
per-minute standard deviations), less than the 24 bps a round trip costs at 10 bps fee + 1 bp slippage + 1 bp
half spread per side, so net it loses (on 60 days: a wider band, long above 0.75 and flat below 0.25, nets a
profit on SOL only; at 2 bps per side every symbol nets a profit). That is a bound, not a tuning miss: with
serially uncorrelated returns a drift that holds its sign for q minutes sums to at most about 2 sqrt(q)
per-minute standard deviations, and a call right 70 % of the time needs a share of the variance that leaves
q of a few minutes. Slower pressures pay more per trade but call fewer directions (see the sweep in
`market_stats`).

The default, p = 0.4 with 5-minute labels (`TrainConfig.horizon`), is where both hold: the pressure keeps its
sign for minutes (half-life about 3), so the next 5 minutes are predictable from the candles while every
rule on past prices still calls 50 %. Measured on the demo's 14 days (2026-11-12 to -25, 2 walk-forward
folds, the project's logistic model, 2 epochs): accuracy 0.718 / 0.708 / 0.723 (BTC / ETH / SOL), the
strongest naive rule 0.49-0.51, and the long/flat signal nets +11 % / +15 % / +26 % over the 2-day test
part at the synthetic venue's costs (0 fee + 1 bp slippage + 1 bp half spread per side; break-even fee
5.2 / 5.0 / 11.4 bps per side, so at Binance's 10 bps it would not pay on BTC or ETH).

Generation costs what the regime market did: 0.53 s for 730 days of one symbol, both before and after (best
of 5 on a shared 2-core machine; the burst scale draws `standard_gamma`, several times faster than
`chisquare`).
"""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import polars as pl

from trading_assets.market.candles import conform


def lfilter(b: list[float], a: list[float], x: np.ndarray, zi: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """scipy.signal.lfilter, imported when first used: scipy.signal takes ~1 s to import, and every Dagster
    run and step process imports this module with the code location, most never generating candles."""
    from scipy.signal import lfilter as scipy_lfilter

    return scipy_lfilter(b, a, x, zi=zi)


#: The synthetic market's default predictability: its order-flow pressure keeps its sign for minutes (half-life
#: ~3 minutes), so the default 5-minute models call about 70 % of directions and their long/flat signal pays
#: its costs at the synthetic venue (docs/data.md, "The demo market").
DEFAULT_SYNTHETIC_PREDICTABILITY = 0.4

EPOCH = datetime(2019, 1, 1, tzinfo=UTC)
BLOCK_MINUTES = 16 * 1440
#: Degrees of freedom of the Student-t tails: a minute's burst scale is sqrt((dof - 2) / chi2(dof)).
_STUDENT_T_DOF = 4.0
_VOL_FACTOR_HALF_LIVES_MIN = (30.0, 1440.0, 14400.0)
_VOL_FACTOR_STD = (0.35, 0.30, 0.20)
_PRICE_HALF_LIFE_MIN = 120 * 1440
#: E|burst * z|, the mean absolute unit-variance Student-t(4) move: E|t(4)| = 1 times sqrt((4 - 2) / 4).
_MEAN_ABS_MOVE = 1.0 / math.sqrt(2.0)
#: Direction accuracy of an oracle that knows the pressure: 0.5 + ORACLE_SLOPE * p (0.822 at p = 0.7).
ORACLE_SLOPE = 0.46
#: Share of the pressure's variance renewed each minute by flow unrelated to the price (eta); the rest is the
#: pressure carried over and its reaction against the minute's price shock. It sets the pressure's memory.
_PRESSURE_FRESH_SHARE = 0.1
#: How strongly the pressure shapes the wicks (k): the lower wick's draw shifts by +k w, the upper's by -k w.
_WICK_PRESSURE = 1.0
#: Offset of the wick draw: a wick is absent with probability Phi(offset +/- k w), 62 % at w = 0 (on
#: Binance about half of the 1-minute candles lack an upper wick).
_WICK_OFFSET = 0.3
#: Wick length in units of the minute's return scale: each wick is then ~17 % of the range on average and a
#: wick longer than half the range occurs in ~15 % of candles (Binance BTC/ETH/SOL: 18-23 %, 14-15 %).
_WICK_SCALE = 0.6
#: Volume confirms the pressure (v): a minute that moved with it trades exp(v |w|) times its usual volume,
#: one that moved against it exp(-v |w|) times (both divided by exp(v^2 / 2), so the mean does not change).
_VOLUME_PRESSURE = 0.8


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


@dataclass(frozen=True)
class PressureParameters:
    """The order-flow pressure at one predictability (see the module docstring).

    `drive` (a): the pressure's pull on the next minute's standardised move; `keep` (rho): its memory per
    minute; `reaction` (c): how much of the minute's own price shock it absorbs (c = a * rho, which makes the
    moves serially uncorrelated); `fresh` (sigma_eta): the std of the new flow each minute. Var(w) = 1.
    """

    drive: float
    keep: float
    reaction: float
    fresh: float

    @property
    def half_life_minutes(self) -> float:
        return math.log(0.5) / math.log(self.keep)


def pressure_parameters(predictability: float) -> PressureParameters:
    """a = tan(pi ORACLE_SLOPE p); rho^2 = (1 - fresh share) / (1 + a^2); c = a rho; eta fills Var(w) = 1."""
    drive = math.tan(math.pi * ORACLE_SLOPE * predictability)
    keep = math.sqrt((1.0 - _PRESSURE_FRESH_SHARE) / (1.0 + drive * drive))
    reaction = drive * keep
    fresh = math.sqrt(1.0 - keep * keep - reaction * reaction)
    return PressureParameters(drive, keep, reaction, fresh)


def best_direction_accuracy(predictability: float) -> float:
    """1-minute direction accuracy of the pressure oracle (knows w_t) at this predictability.

    P(sign(a w + g) = sign(w)) for independent standard normal w and g is 1/2 + arctan(a) / pi, and
    a = tan(pi * ORACLE_SLOPE * p); the burst scale and the volatility never flip a sign. No model reaches it:
    a model sees the pressure only through noisy wicks and volume.
    """
    return 0.5 + math.atan(pressure_parameters(predictability).drive) / math.pi


@dataclass(frozen=True)
class _BlockState:
    """What block b leaves to block b + 1; a pure function of (seed, predictability, symbol, b)."""

    vol_factors: tuple[float, ...]
    pressure: float
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
        self._pressure = pressure_parameters(predictability)
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
            pressure=0.0,
            last_log_close=math.log(profile_for(symbol).start_price),
        )

    def _generate(
        self, symbol: str, block: int, state: _BlockState, build_frame: bool = True
    ) -> tuple[pl.DataFrame | None, _BlockState]:
        rng = np.random.default_rng([self.seed, symbol_key(symbol), block])
        n = BLOCK_MINUTES
        profile = profile_for(symbol)
        pressure = self._pressure
        log_vol, vol_factors = _log_volatility(rng, state.vol_factors, n)
        shock, fresh_flow = rng.standard_normal((2, n))
        # w_t = rho w_{t-1} - c g_t + sigma_eta eta_t, continuing the pressure left by the previous block
        w, _ = lfilter(
            [1.0],
            [1.0, -pressure.keep],
            fresh_flow * pressure.fresh - pressure.reaction * shock,
            zi=[pressure.keep * state.pressure],
        )
        previous_w = np.concatenate([[state.pressure], w[:-1]])
        # unit-variance Gaussian white noise: z_t = (a w_{t-1} + g_t) / sqrt(1 + a^2)
        z = (pressure.drive * previous_w + shock) / math.sqrt(1.0 + pressure.drive**2)
        # chi2(dof) = 2 gamma(dof / 2); standard_gamma is several times faster than chisquare
        burst = np.sqrt((_STUDENT_T_DOF - 2.0) / (2.0 * rng.standard_gamma(_STUDENT_T_DOF / 2.0, n)))
        minutes = block * BLOCK_MINUTES + np.arange(n, dtype=np.int64)
        seasonality = _seasonality(minutes)
        scale = profile.daily_volatility / math.sqrt(1440) * seasonality * np.exp(log_vol) * burst
        log_close = _mean_reverting_log_price(scale * z, state.last_log_close, math.log(profile.start_price))
        next_state = _BlockState(vol_factors, float(w[-1]), float(log_close[-1]))
        if not build_frame:
            return None, next_state
        log_open = np.concatenate([[state.last_log_close], log_close[:-1]])
        wick_up, wick_down = _wicks(rng, w)
        high = np.exp(np.maximum(log_open, log_close) + scale * wick_up)
        low = np.exp(np.minimum(log_open, log_close) - scale * wick_down)
        # buyers lift offers: under buying pressure up-minutes trade more volume than down-minutes
        confirmation = np.exp(_VOLUME_PRESSURE * np.sign(z) * w - _VOLUME_PRESSURE**2 / 2)
        activity = (0.15 + 0.85 * burst * np.abs(z)) * confirmation / (0.15 + 0.85 * _MEAN_ABS_MOVE)
        volume = profile.volume_per_minute * seasonality * activity * rng.lognormal(-0.08, 0.4, n)
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


def _wicks(rng: np.random.Generator, pressure: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower wick lengths in units of the minute's return scale, leaning with the pressure w at the
    minute's close.

    Buying pressure (w > 0): dips are bought, so a lower wick is likelier and longer; rallies are not sold
    into, so an upper wick is rarer and shorter. Each wick is `_WICK_SCALE` * max(0, N(-/+ k w - offset, 1)):
    zero (no wick, as in many real candles) with probability Phi(offset +/- k w).
    """
    up, down = rng.standard_normal((2, len(pressure)))
    lean = _WICK_PRESSURE * pressure
    return (
        _WICK_SCALE * np.maximum(up - lean - _WICK_OFFSET, 0.0),
        _WICK_SCALE * np.maximum(down + lean - _WICK_OFFSET, 0.0),
    )


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
