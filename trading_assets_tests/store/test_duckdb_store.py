import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from trading_assets.market.candles import day_bounds
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.store.duckdb_store import (
    ShrinkRefusedError,
    StoreLockTimeout,
    candle_integrity,
    candle_integrity_by_day,
    query,
    read_candles,
    replace_slice,
    stored_minutes_per_day,
    with_lock_retry,
    write_candle_slices,
    write_candles,
)
from trading_assets_tests.store.writer_process import BIG_SLICE_DAYS, BIG_SLICE_START

DAY = date(2024, 2, 1)
NOW = datetime(2024, 2, 2, tzinfo=UTC)


def day_candles(symbol: str = "BTC-USD", day: date = DAY) -> pl.DataFrame:
    return SyntheticSource().fetch(symbol, *day_bounds(day))


def test_rewriting_a_slice_is_idempotent_and_touches_only_that_slice(db_path: Path) -> None:
    for day in (DAY, DAY + timedelta(days=1)):
        write_candles(db_path, day_candles(day=day), "BTC-USD", *day_bounds(day), "synthetic", NOW)
    write_candles(db_path, day_candles("ETH-USD"), "ETH-USD", *day_bounds(DAY), "synthetic", NOW)
    before = read_candles(db_path, ["BTC-USD", "ETH-USD"])
    write_candles(db_path, day_candles(), "BTC-USD", *day_bounds(DAY), "synthetic", NOW)
    after = read_candles(db_path, ["BTC-USD", "ETH-USD"])
    assert after.height == 3 * 1440
    assert after.equals(before)
    assert candle_integrity(db_path, "BTC-USD", *day_bounds(DAY)) == {
        "rows": 1440,
        "duplicate_minutes": 0,
        "ohlc_violations": 0,
    }


def test_a_failing_write_leaves_the_old_slice(db_path: Path) -> None:
    write_candles(db_path, day_candles(), "BTC-USD", *day_bounds(DAY), "synthetic", NOW)
    before = read_candles(db_path, ["BTC-USD"])
    broken = day_candles().with_columns(
        pl.when(pl.col("minute").dt.hour() == 20).then(None).otherwise(pl.col("close")).alias("close")
    )
    with pytest.raises(duckdb.ConstraintException):
        write_candles(db_path, broken, "BTC-USD", *day_bounds(DAY), "broken", NOW)
    assert read_candles(db_path, ["BTC-USD"]).equals(before)


def test_rows_outside_the_slice_are_refused_before_writing(db_path: Path) -> None:
    next_day = day_candles(day=DAY + timedelta(days=1))
    with pytest.raises(
        ValueError, match=r"refusing to write candles slice BTC-USD \[2024-02-01.*1440 row\(s\) outside"
    ):
        write_candles(db_path, next_day, "BTC-USD", *day_bounds(DAY), "synthetic", NOW)
    rows = next_day.with_columns(pl.lit("ETH-USD").alias("symbol"))
    with pytest.raises(ValueError, match="1440 row"):
        replace_slice(db_path, "candles", rows, "BTC-USD", *day_bounds(DAY + timedelta(days=1)))


def test_many_slices_are_replaced_in_one_transaction_or_not_at_all(db_path: Path) -> None:
    days = [DAY + timedelta(days=offset) for offset in range(3)]
    slices = [day_bounds(day) for day in days]
    candles = pl.concat([day_candles(day=day) for day in days])
    assert write_candle_slices(db_path, candles, "BTC-USD", slices, "synthetic", NOW) == 3 * 1440
    before = read_candles(db_path, ["BTC-USD"])
    # The last day breaks NOT NULL: the first two days, already deleted and reinserted, roll back too.
    broken = candles.with_columns(
        pl.when(pl.col("minute") == slices[2][0]).then(None).otherwise(pl.col("close")).alias("close")
    )
    with pytest.raises(duckdb.ConstraintException):
        write_candle_slices(db_path, broken, "BTC-USD", slices, "v2", NOW)
    assert read_candles(db_path, ["BTC-USD"]).equals(before)
    write_candle_slices(db_path, candles, "BTC-USD", slices, "synthetic", NOW)  # a rerun: no duplicates
    assert read_candles(db_path, ["BTC-USD"]).equals(before)


def test_rows_outside_every_slice_are_refused(db_path: Path) -> None:
    days = [DAY, DAY + timedelta(days=1), DAY + timedelta(days=2)]
    candles = pl.concat([day_candles(day=day) for day in days])
    with pytest.raises(ValueError, match=r"BTC-USD 2 slices from 2024-02-01.*1440 row\(s\) outside"):
        write_candle_slices(db_path, candles, "BTC-USD", [day_bounds(days[0]), day_bounds(days[2])], "s", NOW)
    assert not db_path.exists() or read_candles(db_path, ["BTC-USD"]).height == 0


def test_integrity_by_day_matches_each_day_and_counts_missing_days_as_empty(db_path: Path) -> None:
    days = [DAY, DAY + timedelta(days=1)]
    for day in days:
        write_candles(db_path, day_candles(day=day), "BTC-USD", *day_bounds(day), "synthetic", NOW)
    write_candles(db_path, day_candles("ETH-USD", DAY), "ETH-USD", *day_bounds(DAY), "synthetic", NOW)
    asked = [DAY - timedelta(days=1), *days, DAY + timedelta(days=5)]
    by_day = candle_integrity_by_day(db_path, "BTC-USD", asked)
    assert list(by_day) == asked
    for day in asked:
        assert by_day[day] == candle_integrity(db_path, "BTC-USD", *day_bounds(day))
    assert [counts["rows"] for counts in by_day.values()] == [0, 1440, 1440, 0]


def test_lock_conflicts_are_retried_then_reported(db_path: Path) -> None:
    calls = []

    def locked() -> None:
        calls.append(1)
        raise duckdb.IOException('Could not set lock on file "x": Conflicting lock is held')

    with pytest.raises(StoreLockTimeout, match="stayed locked by another process"):
        with_lock_retry(db_path, locked, timeout_s=0.3)
    assert len(calls) > 2


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", "trading_assets_tests.store.writer_process", *args]


@pytest.mark.e2e  # scale-out: four writer processes
def test_four_processes_write_different_partitions_into_one_file(db_path: Path) -> None:
    symbols = ["BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USD"]
    days = [(DAY + timedelta(days=i)).isoformat() for i in range(4)]
    writers = [subprocess.Popen(_python("ingest", str(db_path), symbol, *days)) for symbol in symbols]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0, 0, 0]
    stored = read_candles(db_path, symbols)
    assert stored.height == 4 * 4 * 1440
    assert stored.select(pl.struct("symbol", "minute").is_unique().all()).item()
    for symbol in symbols:
        expected = SyntheticSource().fetch(
            symbol, *day_bounds(DAY)[:1], day_bounds(DAY + timedelta(days=3))[1]
        )
        got = stored.filter(pl.col("symbol") == symbol).select(expected.columns)
        assert got.equals(expected)


@pytest.mark.e2e  # scale-out: three backfill-shaped writer processes
def test_three_backfill_shaped_writers_lose_nothing(db_path: Path) -> None:
    """Three processes do what a 3-symbol single-run backfill does (candles, then features, in batches
    of days, each read back at once), interleaving their transactions on one file."""
    symbols, days = ["BTC-USD", "ETH-USD", "SOL-USD"], 70
    writers = [
        subprocess.Popen(_python("backfill", str(db_path), symbol, DAY.isoformat(), str(days)))
        for symbol in symbols
    ]
    assert [writer.wait(timeout=300) for writer in writers] == [0, 0, 0]
    for table in ("candles", "features"):
        counts = query(db_path, f"SELECT symbol, count(*) AS n FROM {table} GROUP BY symbol ORDER BY symbol")
        assert counts.rows() == [(symbol, days * 1440) for symbol in symbols], table


def test_a_writer_killed_mid_write_leaves_a_whole_slice(db_path: Path) -> None:
    writer = subprocess.Popen(_python("rewrite", str(db_path)), stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    assert writer.stdout.readline().startswith("wrote v1")
    time.sleep(0.35)  # somewhere inside a later rewrite
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    stored = read_candles(db_path, ["BTC-USD"])
    assert stored.height == BIG_SLICE_DAYS * 1440
    assert stored["source"].n_unique() == 1, "rows of two versions: a torn write"
    assert stored["minute"].min() == BIG_SLICE_START


@pytest.mark.parametrize("kept", [1439, 0])
def test_a_shrinking_write_is_refused_and_keeps_the_stored_rows(db_path: Path, kept: int) -> None:
    later = DAY + timedelta(days=1)
    write_candle_slices(
        db_path,
        pl.concat([day_candles(), day_candles(day=later)]),
        "BTC-USD",
        [day_bounds(DAY), day_bounds(later)],
        "synthetic",
        NOW,
    )
    before = read_candles(db_path, ["BTC-USD"])
    fewer = pl.concat([day_candles().head(kept), day_candles(day=later)])
    with pytest.raises(
        ShrinkRefusedError,
        match=rf"^refusing to shrink candles of BTC-USD: 2024-02-01 1440 rows stored, {kept} fetched; "
        r"stored rows kept \(run config allow_shrink: true permits",
    ):
        write_candle_slices(db_path, fewer, "BTC-USD", [day_bounds(DAY), day_bounds(later)], "synthetic", NOW)
    assert read_candles(db_path, ["BTC-USD"]).equals(before)


def test_allow_shrink_permits_a_shrinking_write(db_path: Path) -> None:
    write_candles(db_path, day_candles(), "BTC-USD", *day_bounds(DAY), "synthetic", NOW)
    write_candles(
        db_path, day_candles().head(100), "BTC-USD", *day_bounds(DAY), "synthetic", NOW, allow_shrink=True
    )
    assert read_candles(db_path, ["BTC-USD"]).height == 100


def test_stored_minutes_per_day_counts_each_utc_day(db_path: Path) -> None:
    day = date(2024, 1, 2)
    candles = SyntheticSource(predictability=0.0).fetch("BTC-USD", *day_bounds(day))
    write_candles(db_path, candles.head(1000), "BTC-USD", *day_bounds(day), "synthetic", NOW)
    counts = stored_minutes_per_day(db_path, "BTC-USD", day - timedelta(days=1), day + timedelta(days=1))
    assert counts == {day: 1000}


def test_a_guard_sees_exactly_the_stored_rows_of_the_slices_and_can_refuse_the_write(db_path: Path) -> None:
    """The guard runs inside the write transaction with the slices' stored rows (not the other days');
    whatever it raises leaves every slice as it was."""
    days = [DAY, DAY + timedelta(days=1), DAY + timedelta(days=2)]
    for day in days:
        write_candles(db_path, day_candles(day=day), "BTC-USD", *day_bounds(day), "synthetic", NOW)
    before = read_candles(db_path, ["BTC-USD"])
    seen: list[pl.DataFrame] = []

    def refuse(stored: pl.DataFrame) -> None:
        seen.append(stored)
        raise ValueError("refused by the guard")

    rewrite = pl.concat([day_candles(day=d).with_columns(pl.col("close") * 1.0) for d in days[:2]])
    slices = [day_bounds(d) for d in days[:2]]
    with pytest.raises(ValueError, match="refused by the guard"):
        write_candle_slices(db_path, rewrite, "BTC-USD", slices, "synthetic", NOW, guard=refuse)
    [stored] = seen
    assert stored.height == 2 * 1440 and stored["minute"].is_sorted()
    assert stored.select(before.columns).equals(before.filter(pl.col("minute") < day_bounds(days[2])[0]))
    assert read_candles(db_path, ["BTC-USD"]).equals(before)
    write_candle_slices(db_path, rewrite, "BTC-USD", slices, "synthetic", NOW, guard=seen.append)
    assert len(seen) == 2
