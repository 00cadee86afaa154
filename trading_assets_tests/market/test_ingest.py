"""Ingestion of many days at once: same result as day by day, one transaction, nothing stored on error."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from trading_assets.market.candles import (
    EmptyDayError,
    InvalidPartitionError,
    consecutive_day_batches,
    day_bounds,
)
from trading_assets.market.ingest import ingest_day, ingest_days
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.store.duckdb_store import ShrinkRefusedError, read_candles

FIRST = date(2024, 3, 1)
DAYS = [FIRST + timedelta(days=offset) for offset in range(4)]


class CorruptDaySource:
    """The synthetic market with every candle of one day given high < low."""

    name = "corrupt"

    def __init__(self, bad_day: date) -> None:
        self.inner, self.bad_day = SyntheticSource(), bad_day

    def fetch(self, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
        candles = self.inner.fetch(symbol, start, end)
        if start == day_bounds(self.bad_day)[0]:
            return candles.with_columns(pl.col("low").alias("high"), pl.col("high").alias("low"))
        return candles


def test_many_days_store_and_report_what_day_by_day_does(tmp_path: Path) -> None:
    batch = ingest_days(SyntheticSource(), tmp_path / "batch.duckdb", "ETH-USD", DAYS, max_invalid_share=0.0)
    alone = [ingest_day(SyntheticSource(), tmp_path / "alone.duckdb", "ETH-USD", d, 0.0) for d in DAYS]
    assert [report.day for report in batch] == DAYS
    for together, single in zip(batch, alone, strict=True):
        assert together.rows_written == single.rows_written == 1440
        assert together.quality == single.quality and together.validation == single.validation
    columns = ["symbol", "minute", "open", "high", "low", "close", "volume"]
    stored = read_candles(tmp_path / "batch.duckdb", ["ETH-USD"]).select(columns)
    assert stored.equals(read_candles(tmp_path / "alone.duckdb", ["ETH-USD"]).select(columns))


def test_an_invalid_day_fails_the_batch_before_anything_is_written(tmp_path: Path) -> None:
    db_path = tmp_path / "store.duckdb"
    ingest_days(SyntheticSource(), db_path, "BTC-USD", DAYS, max_invalid_share=0.0)
    before = read_candles(db_path, ["BTC-USD"])
    with pytest.raises(InvalidPartitionError, match=r"BTC-USD 2024-03-03: 1440 of 1440 candles invalid"):
        ingest_days(CorruptDaySource(DAYS[2]), db_path, "BTC-USD", DAYS, max_invalid_share=0.1)
    assert read_candles(db_path, ["BTC-USD"]).equals(before)


class ThinnedSource:
    """The synthetic market keeping only the first `keep` candles of every day (0: an empty answer)."""

    name = "thinned"

    def __init__(self, keep: int) -> None:
        self.inner, self.keep = SyntheticSource(), keep

    def fetch(self, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
        return self.inner.fetch(symbol, start, end).head(self.keep)


def test_an_empty_answer_is_an_error_not_an_empty_day(tmp_path: Path) -> None:
    db_path = tmp_path / "store.duckdb"
    ingest_days(SyntheticSource(), db_path, "BTC-USD", DAYS, max_invalid_share=0.0)
    before = read_candles(db_path, ["BTC-USD"])
    with pytest.raises(EmptyDayError, match=r"^BTC-USD 2024-03-01: source thinned answered 0 candle\(s\)"):
        ingest_days(ThinnedSource(0), db_path, "BTC-USD", DAYS, max_invalid_share=0.0)
    with pytest.raises(EmptyDayError, match=r"^BTC-USD 2024-03-05: "):
        ingest_day(ThinnedSource(0), db_path, "BTC-USD", date(2024, 3, 5), max_invalid_share=0.0)
    assert read_candles(db_path, ["BTC-USD"]).equals(before)


def test_fewer_rows_than_stored_are_refused_unless_allowed(tmp_path: Path) -> None:
    db_path = tmp_path / "store.duckdb"
    ingest_days(SyntheticSource(), db_path, "BTC-USD", DAYS, max_invalid_share=0.0)
    before = read_candles(db_path, ["BTC-USD"])
    with pytest.raises(ShrinkRefusedError, match=r"2024-03-01 1440 rows stored, 1200 fetched; 2024-03-02"):
        ingest_days(ThinnedSource(1200), db_path, "BTC-USD", DAYS, max_invalid_share=0.0)
    assert read_candles(db_path, ["BTC-USD"]).equals(before)

    reports = ingest_days(ThinnedSource(1200), db_path, "BTC-USD", DAYS, 0.0, allow_shrink=True)
    assert [r.rows_written for r in reports] == [1200] * 4
    assert read_candles(db_path, ["BTC-USD"]).height == 4 * 1200
    ingest_day(ThinnedSource(0), db_path, "BTC-USD", DAYS[0], 0.0, allow_shrink=True)
    assert read_candles(db_path, ["BTC-USD"]).height == 3 * 1200


def test_days_are_cut_into_consecutive_batches_of_bounded_length() -> None:
    days = [date(2024, 1, 5), date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 2), date(2024, 1, 3)]
    days += [date(2024, 1, 6), date(2024, 1, 9)]
    assert consecutive_day_batches(days, max_days=2) == [
        [date(2024, 1, 1), date(2024, 1, 2)],
        [date(2024, 1, 3)],
        [date(2024, 1, 5), date(2024, 1, 6)],
        [date(2024, 1, 9)],
    ]
    assert consecutive_day_batches([], max_days=31) == []


class StopWriting(Exception):
    """What a caller's `before_write` raises when it may no longer write (its run died)."""


def refuse() -> None:
    raise StopWriting("run 1a2b3c4d is FAILURE")


def test_a_refusing_before_write_leaves_the_stored_days_byte_identical(tmp_path: Path) -> None:
    db_path = tmp_path / "store.duckdb"
    ingest_days(SyntheticSource(), db_path, "ETH-USD", DAYS[:2], max_invalid_share=0.0)
    before = read_candles(db_path, ["ETH-USD"])
    with pytest.raises(StopWriting):
        ingest_days(SyntheticSource(), db_path, "ETH-USD", DAYS, max_invalid_share=0.0, before_write=refuse)
    assert read_candles(db_path, ["ETH-USD"]).equals(before)
    with pytest.raises(StopWriting):  # nothing stored yet: the table is not even created
        ingest_days(SyntheticSource(), tmp_path / "new.duckdb", "ETH-USD", DAYS, 0.0, before_write=refuse)
    assert read_candles(tmp_path / "new.duckdb", ["ETH-USD"]).height == 0
