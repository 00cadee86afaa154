from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from trading_assets.market.candles import day_bounds, validate_candles
from trading_assets.market.synthetic import (
    EPOCH,
    ORACLE_SLOPE,
    SyntheticSource,
    best_direction_accuracy,
    pressure_parameters,
)
from trading_assets_bench.market_stats import candle_logistic, market_stats, naive_rule_accuracies

START = datetime(2024, 1, 1, tzinfo=UTC)
SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")


@pytest.fixture(scope="module")
def markets() -> dict[float, dict[str, pl.DataFrame]]:
    """30 days of each symbol at predictability 0 and at the default 0.7 (generated once per module)."""
    return {
        p: {s: SyntheticSource(predictability=p).fetch(s, START, START + timedelta(days=30)) for s in SYMBOLS}
        for p in (0.0, 0.7)
    }


@pytest.fixture(scope="module")
def month(markets: dict[float, dict[str, pl.DataFrame]]) -> dict[str, pl.DataFrame]:
    return markets[0.0]


def log_returns(frame: pl.DataFrame) -> np.ndarray:
    return np.diff(np.log(frame["close"].to_numpy()))


def test_same_minute_same_candle_whatever_the_range() -> None:
    day = date(2024, 1, 17)
    alone = SyntheticSource(seed=3, predictability=0.5).fetch("ETH-USD", *day_bounds(day))
    in_range = SyntheticSource(seed=3, predictability=0.5).fetch("ETH-USD", START, START + timedelta(days=40))
    assert alone.equals(in_range.filter(pl.col("minute").dt.date() == day))
    # a range that starts and ends mid-day, across a block boundary
    odd = SyntheticSource(seed=3, predictability=0.5).fetch(
        "ETH-USD", datetime(2024, 1, 16, 13, 7, tzinfo=UTC), datetime(2024, 1, 18, 2, 0, tzinfo=UTC)
    )
    assert odd.equals(in_range.filter(pl.col("minute").is_in(odd["minute"].implode())))
    assert odd.height == 60 * 36 + 53


def test_seed_changes_the_market() -> None:
    bounds = day_bounds(date(2024, 1, 17))
    assert (
        not SyntheticSource(seed=1)
        .fetch("BTC-USD", *bounds)
        .equals(SyntheticSource(seed=2).fetch("BTC-USD", *bounds))
    )


def test_symbols_differ_in_price_level_and_volatility(month: dict[str, pl.DataFrame]) -> None:
    prices = {s: f["close"].median() for s, f in month.items()}
    vols = {s: log_returns(f).std() for s, f in month.items()}
    assert prices["BTC-USD"] > 10 * prices["ETH-USD"] > 100 * prices["SOL-USD"]
    assert vols["BTC-USD"] < vols["ETH-USD"] < vols["SOL-USD"]


def test_candles_are_valid_and_complete(month: dict[str, pl.DataFrame]) -> None:
    frame = month["SOL-USD"].filter(pl.col("minute").dt.date() == date(2024, 1, 9))
    valid, report = validate_candles(frame, "SOL-USD", date(2024, 1, 9), max_invalid_share=0.0)
    assert valid.height == 1440 and report.rows_invalid == 0
    closes, opens = month["BTC-USD"]["close"].to_numpy(), month["BTC-USD"]["open"].to_numpy()
    np.testing.assert_allclose(opens[1:], closes[:-1], rtol=1e-12)


def test_stylised_facts(month: dict[str, pl.DataFrame]) -> None:
    frame = month["BTC-USD"]
    returns = log_returns(frame)
    kurtosis = ((returns - returns.mean()) ** 4).mean() / returns.var() ** 2
    assert kurtosis > 6, "heavy tails"
    absolute = np.abs(returns)
    assert np.corrcoef(absolute[1:], absolute[:-1])[0, 1] > 0.1, "volatility clustering"
    assert np.corrcoef(absolute, frame["volume"].to_numpy()[1:])[0, 1] > 0.3, "volume rises with |return|"
    by_hour = (
        frame.with_columns(r=pl.Series(np.concatenate([[0.0], absolute])))
        .group_by(pl.col("minute").dt.hour().alias("hour"))
        .agg(pl.col("r").mean())
    )
    busiest = by_hour.sort("r")["hour"][-1]
    assert 12 <= busiest <= 17, "busiest around the US open"


def first_days(frame: pl.DataFrame, days: int) -> pl.DataFrame:
    return frame.head(days * 1440)


def test_market_stats_flag_a_trending_series() -> None:
    """The measuring stick itself: a random walk passes the bounds below, a trending one (as the old regime
    market, VR(60) about 16) does not."""
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(30 * 1440) * 1e-3
    trending = noise.copy()
    for t in range(1, len(trending)):
        trending[t] += 0.3 * trending[t - 1]

    def frame(log_returns: np.ndarray) -> pl.DataFrame:
        return pl.DataFrame({"close": 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(log_returns)]))})

    walk, trend = market_stats(frame(noise)), market_stats(frame(trending))
    assert walk["acf_max_abs"] < 0.03 and 0.9 < walk["variance_ratio_60"] < 1.1
    assert trend["acf_lag1"] == pytest.approx(0.3, abs=0.02) and trend["variance_ratio_60"] > 1.5
    rules = naive_rule_accuracies(frame(trending))
    assert rules["last_1m_move"] > 0.55


@pytest.mark.parametrize("predictability", [0.0, 0.7])
@pytest.mark.parametrize("symbol", SYMBOLS)
def test_returns_are_as_uncorrelated_and_fat_tailed_as_real_candles(
    markets: dict[float, dict[str, pl.DataFrame]], predictability: float, symbol: str
) -> None:
    """Real 1m candles (five Binance files of 30 days): largest |autocorrelation| at lags 1..60 0.02..0.06,
    VR(60) 0.92..1.00, excess kurtosis 17..690, |return| lag-1 autocorrelation 0.26..0.43."""
    stats = market_stats(markets[predictability][symbol])
    assert stats["acf_max_abs"] <= 0.05, stats
    assert 0.8 <= stats["variance_ratio_60"] <= 1.3, stats
    assert stats["excess_kurtosis"] > 1.0, stats
    assert stats["abs_return_acf_lag1"] > 0.1, stats


@pytest.mark.parametrize("predictability", [0.0, 0.7])
def test_no_one_line_price_rule_calls_the_next_minute(
    markets: dict[float, dict[str, pl.DataFrame]], predictability: float
) -> None:
    """Majority class, constant long or short, the sign of the last 1..60-minute move and its reverse: all
    coin flips on 14 days, whatever the predictability (the pressure never shows in the price path)."""
    for symbol in SYMBOLS:
        rules = naive_rule_accuracies(first_days(markets[predictability][symbol], 14))
        assert len(rules) == 3 + 2 * 7
        for name, accuracy in rules.items():
            assert accuracy == pytest.approx(0.5, abs=0.03), (symbol, name, accuracy)


def test_the_pressure_in_candle_shapes_and_volume_is_learnable(
    markets: dict[float, dict[str, pl.DataFrame]],
) -> None:
    """A plain logistic regression on the last candles' shapes and volumes, tested on the last 15 % of 14
    days: well above a coin, and its long/flat signal earns before costs."""
    for symbol in SYMBOLS:
        learned = candle_logistic(first_days(markets[0.7][symbol], 14))
        assert learned["test_accuracy"] > 0.68, (symbol, learned)
        assert learned["gross_return"] > 0, (symbol, learned)


def test_nothing_is_learnable_at_predictability_zero(markets: dict[float, dict[str, pl.DataFrame]]) -> None:
    for symbol in SYMBOLS:
        learned = candle_logistic(markets[0.0][symbol])  # 30 days: about 6,500 test minutes
        assert learned["test_accuracy"] < 0.53, (symbol, learned)


def test_no_single_channel_rule_sees_what_the_model_sees(
    markets: dict[float, dict[str, pl.DataFrame]],
) -> None:
    """The pressure shows in two noisy channels; a one-line rule on either sees less than a model that weighs
    both: "lower wick longer than upper wick", "up on more than the usual volume, or down on less"."""
    frame = first_days(markets[0.7]["BTC-USD"], 14)
    open_, high, low, close, volume = (
        frame[c].to_numpy() for c in ("open", "high", "low", "close", "volume")
    )
    up_next = close[1:] > close[:-1]
    wick_rule = (np.minimum(open_, close) - low > high - np.maximum(open_, close))[:-1]
    usual = pl.Series(volume).rolling_mean(60).shift(1).to_numpy()
    volume_rule = (np.sign(close - open_) * np.log(volume / usual) > 0)[:-1]
    scored = np.isfinite(usual[:-1])
    wick_accuracy = np.mean(wick_rule[scored] == up_next[scored])
    volume_accuracy = np.mean(volume_rule[scored] == up_next[scored])
    model_accuracy = candle_logistic(frame)["test_accuracy"]
    assert 0.6 < wick_accuracy < model_accuracy - 0.02
    assert 0.6 < volume_accuracy < model_accuracy - 0.02


@pytest.mark.parametrize("predictability", [0.0, 0.3, 0.7, 0.95])
def test_the_reaction_cancels_every_autocovariance(predictability: float) -> None:
    """cov(z_t, z_t+k) = a rho^(k-1) (a rho Var(w) - c) / (1 + a^2) = 0 for every k >= 1 needs c = a rho with
    Var(w) = rho^2 + c^2 + fresh^2 = 1; the oracle who knows w_t calls 1/2 + arctan(a) / pi of the
    directions."""
    pressure = pressure_parameters(predictability)
    assert pressure.reaction == pytest.approx(pressure.drive * pressure.keep)
    assert pressure.keep**2 + pressure.reaction**2 + pressure.fresh**2 == pytest.approx(1.0)
    assert 0.0 <= pressure.keep < 1.0 and pressure.fresh > 0.0
    assert best_direction_accuracy(predictability) == pytest.approx(0.5 + ORACLE_SLOPE * predictability)


def test_out_of_range_requests_fail_clearly() -> None:
    with pytest.raises(ValueError, match="synthetic market starts at 2019-01-01"):
        SyntheticSource().fetch("BTC-USD", EPOCH - timedelta(days=1), EPOCH)
    with pytest.raises(ValueError, match="predictability must be in"):
        SyntheticSource(predictability=1.0)
