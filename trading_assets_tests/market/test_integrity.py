"""Content integrity: the revision guard of a re-fetch and the plausibility of stored prices (core only)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from trading_assets.market.candles import day_bounds
from trading_assets.market.ingest import ingest_day, ingest_days
from trading_assets.market.integrity import (
    DEFAULT_JUMP_K,
    RevisionRefusedError,
    diff_candles,
    median_shift,
    price_jumps,
)
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.store.duckdb_store import ShrinkRefusedError, read_candles, run_write
from trading_assets_tests.conftest import SHARED_DATA

DAY = date(2024, 3, 2)
DAYS = [date(2024, 3, 1), DAY, date(2024, 3, 3)]
PRICES = ["open", "high", "low", "close"]


def at(minute_of_day: int, day: date = DAY) -> datetime:
    return day_bounds(day)[0] + timedelta(minutes=minute_of_day)


class EditedSource:
    """The synthetic market with `edit` applied to the candles of every fetch."""

    name = "edited"

    def __init__(self, edit) -> None:
        self.inner, self.edit = SyntheticSource(), edit

    def fetch(self, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
        return self.edit(self.inner.fetch(symbol, start, end))


def scale_prices(factor: float, first: int, last: int, columns=PRICES, day: date = DAY):
    """Multiply `columns` of minutes [first, last) of `day` by `factor`."""
    inside = pl.col("minute").is_between(at(first, day), at(last, day), closed="left")
    return lambda frame: frame.with_columns(
        [pl.when(inside).then(pl.col(c) * factor).otherwise(pl.col(c)).alias(c) for c in columns]
    )


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    db_path = tmp_path / "store.duckdb"
    ingest_days(SyntheticSource(), db_path, "BTC-USD", DAYS, max_invalid_share=0.0)
    return db_path


@pytest.mark.parametrize("factor", [100.0, 0.01])
def test_a_page_of_scaled_prices_is_refused_in_one_line_and_the_store_kept(stored: Path, factor) -> None:
    before = read_candles(stored, ["BTC-USD"])
    with pytest.raises(RevisionRefusedError) as refused:
        ingest_days(EditedSource(scale_prices(factor, 300, 600)), stored, "BTC-USD", DAYS, 0.0)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("refusing to revise candles of BTC-USD: 2024-03-02 300 of 1440 stored minutes")
    assert f"(open x{factor:g}) at 2024-03-02T05:00:00+00:00: stored o/h/l/c/v " in message
    assert message.endswith("stored rows kept (run config allow_revision: true accepts the revision)")
    assert "2024-03-01" not in message and "2024-03-03" not in message  # unchanged days are not named
    assert read_candles(stored, ["BTC-USD"]).equals(before)


def test_allow_revision_accepts_it_and_reports_the_diff(stored: Path) -> None:
    source = EditedSource(scale_prices(100.0, 300, 600))
    reports = ingest_days(source, stored, "BTC-USD", DAYS, 0.0, allow_revision=True)
    assert [r.revision.minutes_changed for r in reports] == [0, 300, 0]
    diff = reports[1].revision
    assert diff.minutes_compared == 1440 and diff.minutes_added == diff.minutes_removed == 0
    assert diff.largest.minute == at(300) and diff.largest.column == "open"
    assert diff.largest.relative_change == pytest.approx(99.0)
    assert diff.largest.new["close"] == pytest.approx(100 * diff.largest.stored["close"])
    assert diff.as_metadata()["example"]["minute"] == "2024-03-02T05:00:00+00:00"
    stored_day = read_candles(stored, ["BTC-USD"], *day_bounds(DAY))
    assert stored_day.select(["minute", *PRICES]).equals(
        source.fetch("BTC-USD", *day_bounds(DAY)).select(["minute", *PRICES])
    )


def test_identical_values_and_filled_gaps_are_not_revisions(tmp_path: Path) -> None:
    db_path = tmp_path / "store.duckdb"
    gappy = EditedSource(lambda f: f.filter(~pl.col("minute").is_between(at(100), at(160), closed="left")))
    ingest_day(gappy, db_path, "BTC-USD", DAY, 0.0)
    [report] = ingest_days(SyntheticSource(), db_path, "BTC-USD", [DAY], 0.0)
    assert report.revision.minutes_added == 60 and report.revision.minutes_changed == 0
    assert not report.revision.refused(allow_shrink=False)


def test_tolerances_prices_1e6_volume_1pct(stored: Path) -> None:
    """A price moved by 1e-7 and volumes by 0.5 % pass; a price moved by 1e-5 or a volume by 4.5 % is refused."""
    tiny = EditedSource(
        lambda f: scale_prices(1 + 1e-7, 0, 1440)(scale_prices(1.005, 0, 1440, columns=["volume"])(f))
    )
    ingest_day(tiny, stored, "BTC-USD", DAY, 0.0)
    with pytest.raises(RevisionRefusedError, match=r"2024-03-02 1 of 1440 stored minutes changed"):
        ingest_day(EditedSource(scale_prices(1 + 1e-5, 700, 701)), stored, "BTC-USD", DAY, 0.0)
    with pytest.raises(RevisionRefusedError, match=r"\(volume x1.045\) at 2024-03-02T11:40:00\+00:00"):
        ingest_day(
            EditedSource(scale_prices(1.05, 700, 701, columns=["volume"])), stored, "BTC-USD", DAY, 0.0
        )


def test_minutes_stored_while_still_forming_may_change(tmp_path: Path) -> None:
    """A day fetched while in progress, at 23:50:30: minutes 00:00 .. 23:50 stored, the last still forming.
    A candle that closed less than 10 minutes before it was stored (23:40 closed at 23:41) may change on the
    next fetch; one that closed earlier (23:39 closed at 23:40) may not."""
    db_path = tmp_path / "store.duckdb"
    ingest_day(EditedSource(lambda f: f.head(1431)), db_path, "BTC-USD", DAY, 0.0)
    fetched_at = at(1430) + timedelta(seconds=30)
    run_write(db_path, lambda c: c.execute("UPDATE candles SET ingested_at = ?", [fetched_at]))
    with pytest.raises(
        RevisionRefusedError, match=r"2024-03-02 1 of 1431 stored minutes changed.* at 2024-03-02T23:39:00"
    ):
        ingest_day(EditedSource(scale_prices(1.002, 1419, 1440)), db_path, "BTC-USD", DAY, 0.0)
    report = ingest_day(EditedSource(scale_prices(1.002, 1420, 1440)), db_path, "BTC-USD", DAY, 0.0)
    assert report.revision.minutes_changed == 0 and report.revision.unsettled_minutes_updated == 11
    assert report.revision.minutes_added == 9


def test_a_same_count_answer_that_moved_minutes_is_a_revision_unless_shrinking_is_allowed(
    stored: Path,
) -> None:
    """Same row count, one stored minute gone and one gap minute new: minutes removed need allow_shrink."""
    ingest_day(
        EditedSource(lambda f: f.filter(pl.col("minute") != at(50))),
        stored,
        "BTC-USD",
        DAY,
        0.0,
        allow_shrink=True,
    )
    moved = EditedSource(lambda f: f.filter(pl.col("minute") != at(60)))
    with pytest.raises(RevisionRefusedError, match=r"2024-03-02 0 of 1439 stored minutes changed, 1 removed"):
        ingest_day(moved, stored, "BTC-USD", DAY, 0.0)
    assert ingest_day(moved, stored, "BTC-USD", DAY, 0.0, allow_shrink=True).revision.minutes_removed == 1
    with pytest.raises(ShrinkRefusedError):  # fewer rows: the shrink guard speaks first, as before
        ingest_day(EditedSource(lambda f: f.head(1000)), stored, "BTC-USD", DAY, 0.0)


def test_diff_candles_compares_only_its_day() -> None:
    candles = SyntheticSource().fetch("BTC-USD", day_bounds(DAYS[0])[0], day_bounds(DAYS[-1])[1])
    stored = candles.with_columns(ingested_at=pl.lit(datetime(2025, 1, 1, tzinfo=UTC)))
    edited = scale_prices(3.0, 0, 1440, day=DAYS[0])(candles)
    assert diff_candles(stored, edited, "BTC-USD", DAY).minutes_changed == 0
    assert diff_candles(stored, edited, "BTC-USD", DAYS[0]).minutes_changed == 1440


# --- plausibility ---------------------------------------------------------------------------------


def synthetic_days(days=DAYS) -> pl.DataFrame:
    return SyntheticSource().fetch("BTC-USD", day_bounds(days[0])[0], day_bounds(days[-1])[1])


def test_a_x100_minute_is_a_jump_named_by_its_minute() -> None:
    candles = scale_prices(100.0, 720, 721)(synthetic_days())
    jumps = price_jumps(candles, DAY)
    assert not jumps.passed and jumps.jump_count == 2  # into the bad minute and back out of it
    assert jumps.jumps[0].minute in (at(720), at(721))
    assert {j.minute for j in jumps.jumps} == {at(720), at(721)}
    assert "at 2024-03-02T12:0" in jumps.describe()
    assert price_jumps(candles, DAYS[0]).passed and price_jumps(candles, DAYS[2]).passed
    assert price_jumps(synthetic_days(), DAY).passed


@pytest.mark.parametrize("factor", [100.0, 0.01])
def test_a_day_in_other_units_jumps_at_both_boundaries_and_moves_the_median(factor: float) -> None:
    candles = scale_prices(factor, 0, 1440)(synthetic_days())
    jumps = price_jumps(candles, DAY)
    assert {j.minute for j in jumps.jumps} == {at(0), at(0, DAYS[2])}  # 00:00 of the day and of the next
    assert jumps.previous_day_stored and jumps.next_day_stored
    shift = median_shift(candles, DAY)
    assert not shift.passed and shift.example_minute == at(0)
    assert shift.ratios[DAYS[0]] == pytest.approx(factor, rel=0.1)
    assert (
        "median close" in shift.describe() and "first minute outside: 2024-03-02T00:00:00" in shift.describe()
    )
    alone = candles.filter(pl.col("minute").is_between(*day_bounds(DAY), closed="left"))
    assert (
        price_jumps(alone, DAY).passed and median_shift(alone, DAY).passed
    )  # no neighbour: nothing to compare


def test_a_gap_is_not_a_jump_and_a_flat_market_is_not_infinitely_sensitive() -> None:
    candles = synthetic_days().filter(~pl.col("minute").is_between(at(0), at(600), closed="left"))
    assert price_jumps(candles, DAY).passed
    flat = synthetic_days().with_columns([pl.lit(100.0).alias(c) for c in PRICES])
    assert price_jumps(flat, DAY).scale > 0 and price_jumps(flat, DAY).passed
    assert not price_jumps(scale_prices(1.5, 700, 701)(flat), DAY).passed


REAL_FILES = sorted(SHARED_DATA.glob("*/*.feather")) if SHARED_DATA.is_dir() else []


@pytest.mark.skipif(not REAL_FILES, reason=f"real candles not present at {SHARED_DATA}")
@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_real_day_passes_with_headroom(path: Path) -> None:
    """Every day of the real Binance files, the 5 August 2024 crash included, passes both checks; the largest
    real move stays below half of k."""
    candles = pl.read_ipc(path).rename({"date": "minute"})
    candles = candles.with_columns(pl.col("minute").dt.convert_time_zone("UTC").dt.cast_time_unit("us"))
    days = candles["minute"].dt.date().unique().sort().to_list()
    largest = 0.0
    for day in days:
        assert median_shift(candles, day).passed, median_shift(candles, day).describe()
        jumps = price_jumps(candles, day, k=DEFAULT_JUMP_K / 2)
        assert jumps.passed, jumps.describe()
        everything = price_jumps(candles, day, k=0.0)
        largest = max(largest, everything.jumps[0].multiple if everything.jumps else 0.0)
    assert largest > 10  # the measure sees real moves: it is not trivially zero
