"""The trading-signal policy and its after-cost backtest against the constant positions a desk could hold
instead (numpy and scipy only).

Sample k holds the position its probability calls (`SignalPolicy`) over `period_returns[k]`, the close-to-close
return of the next `horizon` minutes; consecutive samples are consecutive, non-overlapping periods. Costs
(`TradingCosts`): every unit of position change pays fee + slippage + half the spread (a long-to-short reversal
is two units), and a short pays borrow pro rata for each period it is held. Without `allow_short` a short call
means flat: the desk can only be long or out of the market. Nothing is liquidated at the end: the strategy and
the constants are marked to market on the last close alike.

The strategy is judged against each constant it could have been replaced by: flat (0), long (buy-and-hold,
paying one entry) and, only when shorting is allowed, short (one entry plus borrow). Its excess over a constant
is the sum of the per-period differences of net returns (arithmetic, so additive over periods), with a lower
confidence bound from `evidence.mean_lower_bound` over those differences (block 1: the periods do not
overlap, but positions persist and volatility clusters, so the bound still batches). The decision rests on the
strictest constant: the smallest lower bound (`best_constant`, `excess_lower_bound`), never on a point estimate
and never against max(0, buy-and-hold).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trading_assets.ml.evidence import CONFIDENCE, batch_layout, mean_lower_bound

MINUTES_PER_DAY = 1440
DAYS_PER_YEAR = 365  # crypto markets trade every day
#: An annualised Sharpe ratio from a shorter evaluation is not reported.
MIN_SHARPE_DAYS = 30
_EQUITY_POINTS = 200
_BPS = 10_000.0


@dataclass(frozen=True)
class TradingCosts:
    """What trading costs, in basis points of the notional traded.

    fee_bps, slippage_bps, half_spread_bps: paid per side, per unit of position change (entering a long pays
    once, a long-to-short reversal twice). borrow_bps_per_day: charged for each day a short is held, pro rata
    per period; set it whenever `allow_short` is set (0 is free shorting)."""

    fee_bps: float
    slippage_bps: float
    half_spread_bps: float
    allow_short: bool = False
    borrow_bps_per_day: float = 0.0

    def __post_init__(self) -> None:
        for name in ("fee_bps", "slippage_bps", "half_spread_bps", "borrow_bps_per_day"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"TradingCosts.{name} must be a finite number >= 0, got {value!r}")

    def per_side_bps(self) -> float:
        """Cost of one unit of position change: fee + slippage + half spread."""
        return float(self.fee_bps + self.slippage_bps + self.half_spread_bps)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "per_side_bps": self.per_side_bps()}


@dataclass(frozen=True)
class SignalPolicy:
    """The runtime's signal: long once p_up rises above `long_above`, short once it falls below `short_below`,
    and in between the position held stays (hysteresis: a probability wandering around 0.5 does not trade
    every period). Flat until the first call. Without shorting, a short call means flat (long/flat)."""

    long_above: float = 0.55
    short_below: float = 0.45

    def __post_init__(self) -> None:
        if not 0.0 <= self.short_below <= self.long_above <= 1.0:
            raise ValueError(
                f"SignalPolicy needs 0 <= short_below <= long_above <= 1, got {self.short_below}, {self.long_above}"
            )

    def signal(self, p_up: float, held: str = "flat", allow_short: bool = False) -> str:
        """'long', 'short' or 'flat' after `p_up`, given the position `held` before it."""
        if p_up > self.long_above:
            return "long"
        if p_up < self.short_below:
            return "short" if allow_short else "flat"
        return held

    def positions(self, probs: np.ndarray, allow_short: bool) -> np.ndarray:
        """+1 long, -1 short, 0 flat for each probability in turn (float array)."""
        probs = np.asarray(probs, dtype=np.float64)
        short = -1.0 if allow_short else 0.0
        calls = np.where(probs > self.long_above, 1.0, np.where(probs < self.short_below, short, np.nan))
        last_call = np.maximum.accumulate(np.where(np.isnan(calls), -1, np.arange(len(calls))))
        return np.where(last_call >= 0, calls[np.maximum(last_call, 0)], 0.0)


#: The signal the runtime emits by default and the economics gate judges.
DEFAULT_POLICY = SignalPolicy()


def _max_drawdown(equity: np.ndarray) -> float:
    """Largest fall from a running peak, as a fraction of the peak (0 for a curve that never falls)."""
    peaks = np.maximum.accumulate(equity)
    return float(np.max(1.0 - equity / peaks)) if len(equity) else 0.0


def _sharpe(returns: np.ndarray, periods_per_year: float) -> float:
    spread = returns.std()
    return float(returns.mean() / spread * math.sqrt(periods_per_year)) if spread > 0 else 0.0


def _thin_index(points: int) -> np.ndarray:
    """At most `_EQUITY_POINTS` evenly spaced indices of a curve of `points` points, both ends included."""
    if points <= _EQUITY_POINTS:
        return np.arange(points)
    return np.unique(np.linspace(0, points - 1, _EQUITY_POINTS).round().astype(np.int64))


def _break_even_fee(
    excess: dict[str, float], units: dict[str, float], traded: float, costs: TradingCosts
) -> float | None:
    """The per-side fee (slippage and spread held) at which the strategy's point-estimate excess over the
    strictest constant is 0: the largest fee at which it still beats every constant. Negative when even a
    zero fee does not pay; None when no fee does (it never trades, or it loses to a constant that trades as
    much as it does, where the fee cancels)."""
    if traded == 0:
        return None
    upper = math.inf
    for name, value in excess.items():
        extra_units = traded - units[name]  # the excess falls by fee/1e4 per extra unit the strategy trades
        if extra_units > 0:
            upper = min(upper, costs.fee_bps + value * _BPS / extra_units)
        elif value < 0:  # trades no more than the constant (whole units, so as much): the fee cancels
            return None
    return float(upper)


def signal_backtest(
    probs: np.ndarray,
    period_returns: np.ndarray,
    costs: TradingCosts,
    horizon: int,
    policy: SignalPolicy = DEFAULT_POLICY,
    confidence: float = CONFIDENCE,
    periods_per_day: float | None = None,
    period_starts: np.ndarray | None = None,
) -> dict[str, Any]:
    """The signal of `probs` traded one period at a time after `costs`, against flat, long and (when shorting
    is allowed) short; see the module docstring. `periods_per_day` defaults to 1440 / horizon (consecutive
    periods); it sets the borrow per period, the span in days and the minute offsets of the equity curves.
    `period_starts`: the UTC minute (datetime64) whose close opens each period; when given, the equity
    curves also carry the `times` of their points (`_curve_times`)."""
    probs = np.asarray(probs, dtype=np.float64)
    returns = np.asarray(period_returns, dtype=np.float64)
    periods_per_day = _checked_periods_per_day(probs, returns, horizon, periods_per_day, period_starts)
    trades = _trade_signal(probs, returns, costs, policy, periods_per_day)
    constants, units = _constant_positions(returns, costs, periods_per_day)
    against = _excess_over_constants(trades.net, constants, confidence)
    best = min(against, key=lambda name: against[name]["excess_lower_bound"])  # ties: flat, long, short
    equity, hold_equity = _equity(trades.net), _equity(constants["long"])
    periods = len(returns)
    return {
        "horizon": int(horizon),
        "periods": periods,
        "days": periods / periods_per_day,
        "confidence": confidence,
        "batches": batch_layout(periods, 1)[0],
        "costs": costs.to_dict(),
        "policy": asdict(policy),
        "return": float(equity[-1] - 1.0),
        "buy_and_hold_return": float(hold_equity[-1] - 1.0),
        "constants": against,
        "best_constant": best,
        "excess_return": against[best]["excess_return"],
        "excess_lower_bound": against[best]["excess_lower_bound"],
        "break_even_fee_bps": _break_even_fee(
            {name: value["excess_return"] for name, value in against.items()},
            units,
            float(trades.changes.sum()),
            costs,
        ),
        **_trading_figures(trades, returns),
        "max_drawdown": _max_drawdown(equity),
        "buy_and_hold_max_drawdown": _max_drawdown(hold_equity),
        **_sharpe_figures(trades.net, constants["long"], periods / periods_per_day, periods_per_day),
        "equity_curve": _equity_curves(equity, hold_equity, periods_per_day, horizon, period_starts),
    }


def _checked_periods_per_day(
    probs: np.ndarray,
    returns: np.ndarray,
    horizon: int,
    periods_per_day: float | None,
    period_starts: np.ndarray | None,
) -> float:
    """`periods_per_day` (default 1440 / horizon) once the inputs are checked; ValueError saying what is wrong."""
    if probs.shape != returns.shape or probs.ndim != 1:
        raise ValueError(
            f"probs and period_returns must be 1-d and equally long, got {probs.shape}, {returns.shape}"
        )
    if len(returns) == 0:
        raise ValueError("no periods to backtest")
    if not np.all(np.isfinite(returns)) or not np.all(np.isfinite(probs)):
        raise ValueError("probs and period_returns must be finite")
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 minute, got {horizon}")
    periods_per_day = MINUTES_PER_DAY / horizon if periods_per_day is None else float(periods_per_day)
    if not periods_per_day > 0:
        raise ValueError(f"periods_per_day must be positive, got {periods_per_day}")
    if period_starts is not None and len(period_starts) != len(returns):
        raise ValueError(f"period_starts must hold one minute per period, got {len(period_starts)}")
    return periods_per_day


@dataclass(frozen=True)
class _Trades:
    """The signal traded period by period: its position, the units of position changed, what trading and
    borrowing cost, and the net return of each period."""

    position: np.ndarray
    changes: np.ndarray
    trading_cost: np.ndarray
    borrow_cost: np.ndarray
    net: np.ndarray


def _side_cost(costs: TradingCosts) -> float:
    """Cost of one unit of position change, as a fraction of the notional."""
    return costs.per_side_bps() / _BPS


def _borrow_per_period(costs: TradingCosts, periods_per_day: float) -> float:
    """Borrow of one period short, as a fraction of the notional."""
    return costs.borrow_bps_per_day / _BPS / periods_per_day


def _trade_signal(
    probs: np.ndarray, returns: np.ndarray, costs: TradingCosts, policy: SignalPolicy, periods_per_day: float
) -> _Trades:
    """The positions `policy` calls from `probs` and their net returns after trading and borrow costs."""
    position = policy.positions(probs, costs.allow_short)
    changes = np.abs(np.diff(position, prepend=0.0))
    trading_cost = _side_cost(costs) * changes
    borrow_cost = _borrow_per_period(costs, periods_per_day) * np.maximum(-position, 0.0)
    net = position * returns - trading_cost - borrow_cost
    return _Trades(position, changes, trading_cost, borrow_cost, net)


def _constant_positions(
    returns: np.ndarray, costs: TradingCosts, periods_per_day: float
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The net returns of each constant the strategy is judged against (flat, long and, when shorting is
    allowed, short; one entry paid in the first period) and the units each trades."""
    entry = np.zeros(len(returns))
    entry[0] = _side_cost(costs)
    constants = {"flat": np.zeros(len(returns)), "long": returns - entry}
    units = {"flat": 0.0, "long": 1.0}
    if costs.allow_short:
        constants["short"] = -returns - entry - _borrow_per_period(costs, periods_per_day)
        units["short"] = 1.0
    return constants, units


def _excess_over_constants(
    net: np.ndarray, constants: dict[str, np.ndarray], confidence: float
) -> dict[str, dict[str, float]]:
    """Each constant's own return and the strategy's excess over it, with its lower confidence bound."""
    against: dict[str, dict[str, float]] = {}
    for name, constant in constants.items():
        difference = net - constant
        against[name] = {
            "return": float(np.prod(1.0 + constant) - 1.0),
            "excess_return": float(difference.sum()),
            "excess_lower_bound": float(mean_lower_bound(difference, 1, confidence) * len(net)),
        }
    return against


def _equity(net: np.ndarray) -> np.ndarray:
    """The equity curve of per-period net returns, starting at 1."""
    return np.concatenate([[1.0], np.cumprod(1.0 + net)])


def _trading_figures(trades: _Trades, returns: np.ndarray) -> dict[str, Any]:
    """What the strategy paid and how it traded: costs, trades, turnover, time in market, hit rate."""
    position, changes = trades.position, trades.changes
    moved = (returns != 0) & (position != 0)
    return {
        "cost_paid": {"trading": float(trades.trading_cost.sum()), "borrow": float(trades.borrow_cost.sum())},
        "trades": int(np.count_nonzero(changes)),
        "turnover": float(changes.mean()),
        "time_in_market": float(np.mean(position != 0)),
        "time_short": float(np.mean(position < 0)),
        "hit_rate": float(np.mean(position[moved] * returns[moved] > 0)) if moved.any() else None,
    }


def _sharpe_figures(net: np.ndarray, hold: np.ndarray, days: float, periods_per_day: float) -> dict[str, Any]:
    """The annualised Sharpe ratios of the strategy and of buy-and-hold, when the evaluation spans at least
    `MIN_SHARPE_DAYS`; the note says which."""
    periods_per_year = periods_per_day * DAYS_PER_YEAR
    long_enough = days >= MIN_SHARPE_DAYS
    return {
        "sharpe": _sharpe(net, periods_per_year) if long_enough else None,
        "buy_and_hold_sharpe": _sharpe(hold, periods_per_year) if long_enough else None,
        "sharpe_note": (
            f"annualised over {periods_per_year:g} periods a year"
            if long_enough
            else f"not reported: the evaluation spans {days:.3g} days (< {MIN_SHARPE_DAYS}); an annualised "
            "Sharpe ratio from so short a window says more about the window than about the strategy"
        ),
    }


def _equity_curves(
    equity: np.ndarray,
    hold_equity: np.ndarray,
    periods_per_day: float,
    horizon: int,
    period_starts: np.ndarray | None,
) -> dict[str, list]:
    """The strategy's and buy-and-hold's equity, thinned to `_EQUITY_POINTS`, at their minute offsets (and
    UTC times, given `period_starts`)."""
    shown = _thin_index(len(equity))
    return {
        "minutes": [float(m) for m in shown * (MINUTES_PER_DAY / periods_per_day)],
        **({} if period_starts is None else {"times": _curve_times(period_starts, shown, horizon)}),
        "strategy": [float(v) for v in equity[shown]],
        "buy_and_hold": [float(v) for v in hold_equity[shown]],
    }


def _curve_times(period_starts: np.ndarray, shown: np.ndarray, horizon: int) -> list[str]:
    """The UTC minute of each kept equity point, as the manifest writes minutes (`2024-01-02T03:04Z`): point
    0 (nothing traded yet) at the first period's start, point i at the end of period i - 1 (its start plus
    `horizon` minutes: periods need not be consecutive, the data may have gaps)."""
    starts = np.asarray(period_starts).astype("datetime64[m]")
    ends = starts + np.timedelta64(horizon, "m")
    moments = np.where(shown == 0, starts[0], ends[np.maximum(shown - 1, 0)])
    return [f"{text}Z" for text in np.datetime_as_string(moments, unit="m")]
