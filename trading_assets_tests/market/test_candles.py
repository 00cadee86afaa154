from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from trading_assets.market.candles import (
    InvalidPartitionError,
    day_bounds,
    day_quality,
    rows_between,
    validate_candles,
)
from trading_assets.market.synthetic import SyntheticSource

DAY = date(2024, 3, 5)


def good_day() -> pl.DataFrame:
    return SyntheticSource(predictability=0.0).fetch("BTC-USD", *day_bounds(DAY))


def with_row(frame: pl.DataFrame, index: int, **values: object) -> pl.DataFrame:
    return (
        frame.with_row_index()
        .with_columns(
            [
                pl.when(pl.col("index") == index).then(pl.lit(v)).otherwise(pl.col(k)).alias(k)
                for k, v in values.items()
            ]
        )
        .drop("index")
    )


def test_a_clean_day_passes_untouched() -> None:
    valid, report = validate_candles(good_day(), "BTC-USD", DAY, max_invalid_share=0.0)
    assert valid.height == 1440
    assert report.invalid_by_reason == {}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"close": float("nan")}, "null or NaN value"),
        ({"open": -1.0}, "non-positive price"),
        ({"volume": -5.0}, "negative volume"),
        ({"high": 1.0, "low": 2.0}, "high < low"),
        ({"open": 10_000_000.0}, "open/close outside [low, high]"),
        ({"minute": datetime(2024, 3, 5, 10, 0, 30, tzinfo=UTC)}, "off-grid timestamp"),
        ({"minute": datetime(2024, 3, 6, 0, 0, tzinfo=UTC)}, "outside the partition's day"),
    ],
)
def test_each_invalid_row_is_dropped_and_counted_by_reason(change: dict, reason: str) -> None:
    frame = with_row(good_day(), 100, **change)
    valid, report = validate_candles(frame, "BTC-USD", DAY, max_invalid_share=0.01)
    assert report.invalid_by_reason == {reason: 1}
    assert valid.height == 1439


def test_an_identical_duplicate_keeps_one_copy_and_is_not_invalid() -> None:
    frame = good_day()
    tripled = pl.concat([frame.slice(10, 1), frame, frame.slice(10, 1)])
    valid, report = validate_candles(tripled, "BTC-USD", DAY, max_invalid_share=0.0)
    assert valid.equals(frame)
    assert (report.rows_in, report.identical_duplicates, report.invalid_by_reason) == (1442, 2, {})


def test_conflicting_duplicates_are_all_dropped_and_counted() -> None:
    frame = good_day()
    conflicting = frame.slice(10, 1).with_columns(pl.col("volume") + 1.0)
    valid, report = validate_candles(pl.concat([frame, conflicting]), "BTC-USD", DAY, max_invalid_share=0.01)
    assert report.invalid_by_reason == {"duplicate timestamp": 2}
    assert report.rows_invalid == 2 and report.identical_duplicates == 0
    assert valid.height == 1439 and valid["minute"].is_unique().all()
    assert frame["minute"][10] not in valid["minute"]


def test_too_many_invalid_rows_fail_with_symbol_day_and_reasons() -> None:
    frame = good_day().with_columns(
        pl.when(pl.col("minute").dt.hour() < 2).then(-1.0).otherwise(pl.col("volume")).alias("volume")
    )
    with pytest.raises(
        InvalidPartitionError, match=r"BTC-USD 2024-03-05: 120 of 1440 candles invalid .*120 negative volume"
    ):
        validate_candles(frame, "BTC-USD", DAY, max_invalid_share=0.05)


def test_day_quality_reports_gaps() -> None:
    start, _ = day_bounds(DAY)
    minutes = pl.datetime_range(
        start, start + timedelta(days=1), "1m", closed="left", eager=True, time_unit="us"
    )
    kept = minutes.filter(
        ~((minutes >= start + timedelta(minutes=10)) & (minutes < start + timedelta(minutes=40)))
    )
    kept = kept.slice(0, kept.len() - 5)
    quality = day_quality(kept, DAY)
    assert quality.gap_count == 2
    assert quality.longest_gap_minutes == 30
    assert quality.gaps[0] == (start + timedelta(minutes=10), 30)
    assert quality.coverage == pytest.approx((1440 - 35) / 1440)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 3, tzinfo=UTC)),  # a whole day
        (datetime(2024, 1, 2, 5, 30, 15, tzinfo=UTC), datetime(2024, 1, 2, 5, 31, tzinfo=UTC)),  # off-minute
        (datetime(2023, 12, 1, tzinfo=UTC), datetime(2024, 1, 1, 12, tzinfo=UTC)),  # starts before the rows
        (datetime(2024, 1, 3, 23, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)),  # ends after them
        (datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 2, tzinfo=UTC)),  # none
        (datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)),  # end before start
    ],
)
def test_rows_between_equals_the_filter(start: datetime, end: datetime) -> None:
    candles = SyntheticSource(seed=3).fetch(
        "BTC-USD", datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 4, tzinfo=UTC)
    )
    candles = candles.filter(pl.col("minute").dt.minute() != 7)  # with gaps
    expected = candles.filter((pl.col("minute") >= start) & (pl.col("minute") < end))
    assert rows_between(candles, start, end).equals(expected)
    in_milliseconds = candles.with_columns(pl.col("minute").dt.cast_time_unit("ms"))
    assert rows_between(in_milliseconds, start, end)["minute"].to_list() == expected["minute"].to_list()
