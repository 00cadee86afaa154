from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from trading_assets.market.candles import day_bounds, validate_candles
from trading_assets.market.synthetic import EPOCH, SyntheticSource, best_direction_accuracy

START = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def month() -> dict[str, pl.DataFrame]:
    source = SyntheticSource(predictability=0.0)
    return {s: source.fetch(s, START, START + timedelta(days=30)) for s in ("BTC-USD", "ETH-USD", "SOL-USD")}


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


@pytest.mark.parametrize(("predictability", "last_move"), [(0.0, 0.50), (0.5, 0.61), (0.7, 0.69)])
def test_one_line_rules_see_less_than_the_window_does(predictability: float, last_move: float) -> None:
    """The documented table: the last move's sign is a weak rule, the recent trend a much better one."""
    frame = SyntheticSource(predictability=predictability).fetch("BTC-USD", START, START + timedelta(days=20))
    returns = log_returns(frame)
    up_next = returns[30:] > 0
    last_move_accuracy = np.mean(up_next == (returns[29:-1] > 0))
    trend = np.convolve(np.sign(returns), np.ones(30), "valid")[:-1]  # sign count of the last 30 moves
    trend_accuracy = np.mean(up_next == (trend > 0))
    assert last_move_accuracy == pytest.approx(last_move, abs=0.02)
    assert trend_accuracy < best_direction_accuracy(predictability) + 0.01
    if predictability > 0:
        assert trend_accuracy > last_move_accuracy + 0.05, "the pattern needs the window"
    else:
        assert trend_accuracy == pytest.approx(0.5, abs=0.02)


def test_volume_bursts_when_the_trend_turns() -> None:
    frame = SyntheticSource(predictability=0.7).fetch("BTC-USD", START, START + timedelta(days=20))
    volume = frame["volume"].to_numpy()
    busiest = np.argsort(volume)[-200:]
    returns = log_returns(frame)
    # after the busiest minutes the direction of the next hour differs from that of the hour before
    turned = [
        np.sign(returns[i : i + 60].sum()) != np.sign(returns[i - 60 : i].sum())
        for i in busiest
        if 60 < i < len(returns) - 60
    ]
    assert np.mean(turned) > 0.6


def test_out_of_range_requests_fail_clearly() -> None:
    with pytest.raises(ValueError, match="synthetic market starts at 2019-01-01"):
        SyntheticSource().fetch("BTC-USD", EPOCH - timedelta(days=1), EPOCH)
    with pytest.raises(ValueError, match="predictability must be in"):
        SyntheticSource(predictability=1.0)
