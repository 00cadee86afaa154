"""The after-cost backtest by hand: costs per unit of position change, reversals, borrow, the constants it is
judged against, the break-even fee, and the venues' fees from ccxt's offline table."""

import json
import math

import numpy as np
import pytest

from trading_assets.market.venues import venue_fee_bps
from trading_assets.ml.backtest import DEFAULT_POLICY, SignalPolicy, TradingCosts, signal_backtest

#: fee 5 + slippage 1 + half spread 1 = 7 bps per unit of position change
COSTS = TradingCosts(fee_bps=5.0, slippage_bps=1.0, half_spread_bps=1.0)
SIDE = 7e-4
#: long, (hold) long, short call, long, short call
PROBS = np.array([0.6, 0.5, 0.4, 0.7, 0.3])
RETURNS = np.array([0.01, -0.02, 0.03, 0.01, -0.01])


def test_costs_per_side_and_validation():
    assert COSTS.per_side_bps() == 7.0
    assert COSTS.to_dict()["per_side_bps"] == 7.0
    with pytest.raises(ValueError, match="fee_bps"):
        TradingCosts(fee_bps=-1.0, slippage_bps=0.0, half_spread_bps=0.0)


def test_policy_hysteresis_long_flat_and_long_short():
    assert SignalPolicy(0.55, 0.45) == DEFAULT_POLICY
    probs = [0.5, 0.6, 0.5, 0.4, 0.5, 0.56]
    assert DEFAULT_POLICY.positions(probs, allow_short=False).tolist() == [0, 1, 1, 0, 0, 1]
    assert DEFAULT_POLICY.positions(probs, allow_short=True).tolist() == [0, 1, 1, -1, -1, 1]
    assert DEFAULT_POLICY.signal(0.4, "long") == "flat"
    assert DEFAULT_POLICY.signal(0.4, "long", allow_short=True) == "short"
    assert DEFAULT_POLICY.signal(0.5, "long") == "long"
    with pytest.raises(ValueError):
        SignalPolicy(long_above=0.4, short_below=0.6)


def test_long_flat_costs_by_hand():
    out = signal_backtest(PROBS, RETURNS, COSTS, horizon=5)
    # positions 1, 1, 0, 1, 0: four units of change
    net = np.array([0.01 - SIDE, -0.02, -SIDE, 0.01 - SIDE, -SIDE])
    assert out["trades"] == 4 and out["turnover"] == pytest.approx(0.8)
    assert out["time_in_market"] == pytest.approx(0.6)
    assert out["cost_paid"] == {"trading": pytest.approx(4 * SIDE), "borrow": 0.0}
    assert out["return"] == pytest.approx(np.prod(1 + net) - 1)
    assert out["constants"]["flat"]["excess_return"] == pytest.approx(net.sum())
    hold = RETURNS.sum() - SIDE  # buy-and-hold pays one entry
    assert out["constants"]["long"]["excess_return"] == pytest.approx(net.sum() - hold)
    assert out["buy_and_hold_return"] == pytest.approx(np.prod(1 + RETURNS) * (1 - SIDE / (1 + 0.01)) - 1)
    assert set(out["constants"]) == {"flat", "long"}  # no short constant without shorting
    assert out["hit_rate"] == pytest.approx(2 / 3)  # long over +1 %, -2 %, +1 %
    # 5 periods are far too few for evidence: the bound is -inf and the strictest constant is the first
    assert out["excess_lower_bound"] == -math.inf and out["best_constant"] == "flat"
    assert out["excess_return"] == out["constants"]["flat"]["excess_return"]
    assert out["equity_curve"]["minutes"] == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    assert out["equity_curve"]["strategy"][0] == 1.0
    assert out["equity_curve"]["strategy"][-1] == pytest.approx(1 + out["return"])


def test_reversal_and_borrow_by_hand():
    costs = TradingCosts(
        fee_bps=5.0, slippage_bps=1.0, half_spread_bps=1.0, allow_short=True, borrow_bps_per_day=24.0
    )
    # horizon 60: 24 periods a day, so a short pays 1 bp of borrow per period
    out = signal_backtest(PROBS, RETURNS, costs, horizon=60)
    borrow = 1e-4
    # positions 1, 1, -1, 1, -1: changes 1, 0, 2, 2, 2 (each reversal pays twice)
    net = np.array([0.01 - SIDE, -0.02, -0.03 - 2 * SIDE - borrow, 0.01 - 2 * SIDE, 0.01 - 2 * SIDE - borrow])
    assert out["trades"] == 4 and out["turnover"] == pytest.approx(7 / 5)
    assert out["time_short"] == pytest.approx(0.4)
    assert out["cost_paid"]["trading"] == pytest.approx(7 * SIDE)
    assert out["cost_paid"]["borrow"] == pytest.approx(2 * borrow)
    assert out["constants"]["flat"]["excess_return"] == pytest.approx(net.sum())
    short = -RETURNS.sum() - SIDE - 5 * borrow  # one entry, borrow every period
    assert out["constants"]["short"]["excess_return"] == pytest.approx(net.sum() - short)
    assert out["constants"]["short"]["return"] == pytest.approx(
        np.prod(1 - RETURNS - borrow - np.array([SIDE, 0, 0, 0, 0])) - 1
    )


def test_break_even_fee_by_hand():
    # long over a rise, out over a fall, long over a rise: 3 units of change, gross +2 %
    probs, returns = np.array([0.6, 0.3, 0.6]), np.array([0.01, -0.02, 0.01])
    out = signal_backtest(probs, returns, TradingCosts(fee_bps=5.0, slippage_bps=1.0, half_spread_bps=0.0), 1)
    # vs flat: 0.02 - 3 (f + 1) / 1e4 = 0 -> f = 65.67; vs long: (0.02 - 0) - 2 (f + 1) / 1e4 = 0 -> f = 99
    assert out["break_even_fee_bps"] == pytest.approx(200 / 3 - 1)
    # the strategy never trades: no fee makes it pay
    idle = signal_backtest(np.full(3, 0.5), returns, COSTS, 1)
    assert idle["break_even_fee_bps"] is None
    # it enters once, as buy-and-hold does, and loses to it: the fee cancels, no fee makes it pay
    late = signal_backtest(np.array([0.3, 0.6, 0.6]), np.array([0.05, -0.01, 0.0]), COSTS, 1)
    assert late["break_even_fee_bps"] is None
    # in and out, missing the rises: even a rebate of 352 bps a side would not beat buy-and-hold
    losing = signal_backtest(np.array([0.3, 0.6, 0.3, 0.6]), np.array([0.05, -0.01, 0.02, 0.0]), COSTS, 1)
    # vs flat: -0.01 - 3 (f + 2) / 1e4 = 0 -> f = -35.3; vs long: -0.01 - 0.06 - 2 (f + 2) / 1e4 = 0 -> f = -352
    assert losing["break_even_fee_bps"] == pytest.approx(-352.0)


def test_sharpe_only_over_thirty_days_and_thinned_curves():
    rng = np.random.default_rng(0)
    short_window = signal_backtest(rng.random(1000), rng.normal(0, 1e-3, 1000), COSTS, 1)
    assert short_window["sharpe"] is None and "30" in short_window["sharpe_note"]
    periods = 31 * 24  # 31 days of hourly periods
    month = signal_backtest(rng.random(periods), rng.normal(0, 1e-2, periods), COSTS, 60)
    assert month["days"] == pytest.approx(31) and isinstance(month["sharpe"], float)
    curve = month["equity_curve"]
    assert len(curve["minutes"]) == len(curve["strategy"]) == len(curve["buy_and_hold"]) <= 200
    assert curve["minutes"][0] == 0 and curve["minutes"][-1] == periods * 60
    assert month["batches"] == 12  # 744 periods in batches of at least 60


def test_equity_curve_points_carry_their_minutes_across_gaps():
    """Point 0 at the first period's start, point i at the end of period i - 1 (start + horizon), whatever
    the gaps between periods; thinned points keep their own minutes; JSON-serialisable strings."""
    starts = np.array(
        ["2024-02-12T00:00", "2024-02-12T00:05", "2024-02-12T06:00", "2024-02-12T06:05", "2024-02-13T00:00"],
        dtype="datetime64[m]",
    )
    out = signal_backtest(PROBS, RETURNS, COSTS, horizon=5, period_starts=starts)
    assert out["equity_curve"]["times"] == [
        "2024-02-12T00:00Z",
        "2024-02-12T00:05Z",
        "2024-02-12T00:10Z",
        "2024-02-12T06:05Z",
        "2024-02-12T06:10Z",
        "2024-02-13T00:05Z",
    ]
    assert "times" not in signal_backtest(PROBS, RETURNS, COSTS, horizon=5)["equity_curve"]
    periods = 31 * 24
    hourly = np.datetime64("2024-01-01T00:00") + np.arange(periods) * np.timedelta64(60, "m")
    rng = np.random.default_rng(2)
    curve = signal_backtest(
        rng.random(periods), rng.normal(0, 1e-2, periods), COSTS, 60, period_starts=hourly
    )["equity_curve"]
    assert len(curve["times"]) == len(curve["minutes"]) <= 200
    expected = [np.datetime64("2024-01-01T00:00") + np.timedelta64(int(m), "m") for m in curve["minutes"]]
    assert curve["times"] == [f"{np.datetime_as_string(t, unit='m')}Z" for t in expected]
    json.dumps(curve)
    with pytest.raises(ValueError, match="period_starts"):
        signal_backtest(PROBS, RETURNS, COSTS, horizon=5, period_starts=starts[:3])


def test_short_biased_signal_in_a_falling_window_does_not_pass_long_flat():
    """Free shorting and max(0, buy-and-hold) made a short call in a falling market look like skill; long/flat
    it is flat most of the time and cannot beat the strictest constant (flat)."""
    rng = np.random.default_rng(1)
    periods = 2000
    returns = -2e-4 + rng.normal(0, 2e-3, periods)  # falls about 33 % over the window
    probs = np.clip(0.35 + 0.1 * rng.standard_normal(periods), 0, 1)  # mostly short calls, no information
    out = signal_backtest(probs, returns, COSTS, 1)
    assert out["best_constant"] == "flat"
    assert not out["excess_lower_bound"] > 0
    assert out["constants"]["long"]["excess_return"] > 0  # beating buy-and-hold in a fall is no evidence


@pytest.mark.parametrize(
    ("exchange", "bps"),
    [("coinbase", 120.0), ("coinbaseexchange", 60.0), ("binance", 10.0), ("kraken", 26.0)],
)
def test_venue_fees_from_ccxt(exchange, bps):
    assert venue_fee_bps(exchange) == pytest.approx(bps)


def test_unknown_venue_is_named():
    with pytest.raises(ValueError, match="'no-such-exchange'"):
        venue_fee_bps("no-such-exchange")
