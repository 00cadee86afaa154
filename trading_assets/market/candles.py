"""The candle frame every source returns, and the one validation step before storage.

A candle frame is a polars DataFrame with exactly `CANDLE_SCHEMA`: `minute` is the UTC start of the
1-minute candle; prices and volume are float64. Sources return the candles of a half-open range
[start, end) of minutes; minutes without trades are simply absent (gaps, not errors).

A source that fetches in pages (ccxt) also keeps a `FetchLog` of its last fetch in `last_fetch`: the span
each page covered, so a missing minute inside a page's span is a gap the exchange reported, and a minute
outside every span would be a gap the client produced.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

import polars as pl

MINUTES_PER_DAY = 1440
CANDLE_SCHEMA: dict[str, pl.DataType] = {
    "minute": pl.Datetime("us", "UTC"),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
}
PRICE_COLUMNS = ("open", "high", "low", "close")


class CandleSource(Protocol):
    """Anything that returns the 1-minute candles of one symbol for [start, end)."""

    name: str

    def fetch(self, symbol: str, start: datetime, end: datetime) -> pl.DataFrame: ...


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of one UTC day."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def rows_between(candles: pl.DataFrame, start: datetime, end: datetime) -> pl.DataFrame:
    """The rows of `candles`, sorted by minute, with start <= minute < end: found by binary search on the
    minutes' microseconds (a filter scans every row and turns each datetime into a polars literal)."""
    micros = candles["minute"].dt.cast_time_unit("us").to_physical()
    first, stop = (int(micros.search_sorted(_micros(moment), side="left")) for moment in (start, end))
    return candles.slice(first, max(stop - first, 0))


def _micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (the physical value of a UTC minute)."""
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def consecutive_day_batches(days: Iterable[date], max_days: int) -> list[list[date]]:
    """`days` sorted, without repeats, cut into runs of consecutive days of at most `max_days` each."""
    batches: list[list[date]] = []
    for day in sorted(set(days)):
        if batches and len(batches[-1]) < max_days and day - batches[-1][-1] == timedelta(days=1):
            batches[-1].append(day)
        else:
            batches.append([day])
    return batches


def empty_candles() -> pl.DataFrame:
    return pl.DataFrame(schema=CANDLE_SCHEMA)


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast a source's frame to `CANDLE_SCHEMA` (naive datetimes are taken as UTC)."""
    missing = [name for name in CANDLE_SCHEMA if name not in frame.columns]
    if missing:
        raise ValueError(f"candle frame lacks column(s) {missing}; has {frame.columns}")
    minute = frame["minute"]
    if isinstance(minute.dtype, pl.Datetime) and minute.dtype.time_zone is None:
        frame = frame.with_columns(pl.col("minute").dt.replace_time_zone("UTC"))
    return frame.select(
        pl.col("minute").cast(pl.Datetime("us", "UTC")),
        *[pl.col(name).cast(pl.Float64) for name in ("open", "high", "low", "close", "volume")],
    )


@dataclass(frozen=True)
class ValidationReport:
    """What validation kept and why it dropped the rest.

    `identical_duplicates` counts extra copies of a candle sent more than once with the same values: one
    copy is kept and the extras are not invalid.
    """

    symbol: str
    day: date
    rows_in: int
    rows_valid: int
    invalid_by_reason: dict[str, int] = field(default_factory=dict)
    identical_duplicates: int = 0

    @property
    def rows_invalid(self) -> int:
        return sum(self.invalid_by_reason.values())

    @property
    def invalid_share(self) -> float:
        return self.rows_invalid / self.rows_in if self.rows_in else 0.0


class InvalidPartitionError(ValueError):
    """Too many invalid rows in one (symbol, day): nothing of it is stored."""


class EmptyDayError(InvalidPartitionError):
    """The source answered a (symbol, day) with no valid candle: nothing of it is stored."""


@dataclass(frozen=True)
class PageSpan:
    """One page of a paged fetch: the window asked, the span its answer covered and what it held.

    A page with candles covers [start, last candle + 1 minute); the next page starts there. A page the
    exchange answered empty (after re-asking) covers its whole window: its minutes are a gap the exchange
    reported.
    """

    start: datetime
    asked_end: datetime
    covered_end: datetime
    rows: int
    attempts: int

    @property
    def empty(self) -> bool:
        return self.rows == 0


@dataclass
class FetchLog:
    """What a paged fetch of one range did: its pages, and the rows it dropped from answers."""

    pages: list[PageSpan] = field(default_factory=list)
    #: Candles answers held outside the window asked for (dropped and counted; a misplaced page is re-asked).
    rows_outside_window: int = 0
    #: Requests repeated after an error, a malformed answer, an empty or misplaced page.
    retries: int = 0

    @property
    def empty_pages(self) -> int:
        return sum(page.empty for page in self.pages)

    def uncovered_minutes(self, start: datetime, end: datetime) -> int:
        """Minutes of [start, end) outside every page's span: gaps the client produced (0 when exact)."""
        covered = sum(
            max(0, (min(p.covered_end, end) - max(p.start, start)) // timedelta(minutes=1))
            for p in self.pages
        )
        return (end - start) // timedelta(minutes=1) - covered


# Each rule is a boolean expression that is True for an invalid row. Order matters only for the
# report: a row is counted under the first rule it breaks.
_ROW_RULES: dict[str, pl.Expr] = {
    "null or NaN value": pl.any_horizontal(
        [pl.col(c).is_null() | pl.col(c).is_nan() for c in (*PRICE_COLUMNS, "volume")]
        + [pl.col("minute").is_null()]
    ),
    "non-positive price": pl.any_horizontal([pl.col(c) <= 0 for c in PRICE_COLUMNS]),
    "infinite value": pl.any_horizontal([pl.col(c).is_infinite() for c in (*PRICE_COLUMNS, "volume")]),
    "negative volume": pl.col("volume") < 0,
    "high < low": pl.col("high") < pl.col("low"),
    "open/close outside [low, high]": (
        (pl.col("open") > pl.col("high"))
        | (pl.col("open") < pl.col("low"))
        | (pl.col("close") > pl.col("high"))
        | (pl.col("close") < pl.col("low"))
    ),
    "off-grid timestamp": (pl.col("minute").dt.second() != 0) | (pl.col("minute").dt.microsecond() != 0),
}


def validate_candles(
    frame: pl.DataFrame, symbol: str, day: date, max_invalid_share: float
) -> tuple[pl.DataFrame, ValidationReport]:
    """Keep the valid candles of `symbol` on `day`; count the rest by reason.

    A candle sent several times with identical values is kept once. Copies of a minute with different
    values are all dropped as "duplicate timestamp" (no way to tell which copy is right). Raises
    `InvalidPartitionError` naming symbol, day and reasons when the invalid share exceeds
    `max_invalid_share`.
    """
    frame = conform(frame)
    rows_in = frame.height
    frame = frame.unique(maintain_order=True)
    start, end = day_bounds(day)
    reason = pl.lit(None, dtype=pl.String)
    checks = [
        ("outside the partition's day", (pl.col("minute") < start) | (pl.col("minute") >= end)),
        *_ROW_RULES.items(),
        ("duplicate timestamp", pl.col("minute").is_duplicated()),
    ]
    for name, is_invalid in reversed(checks):
        reason = pl.when(is_invalid.fill_null(True)).then(pl.lit(name)).otherwise(reason)
    labelled = frame.with_columns(reason.alias("_reason"))
    counts = labelled.filter(pl.col("_reason").is_not_null()).group_by("_reason").len()
    invalid_by_reason = dict(zip(counts["_reason"].to_list(), counts["len"].to_list(), strict=True))
    valid = labelled.filter(pl.col("_reason").is_null()).drop("_reason").sort("minute")
    report = ValidationReport(
        symbol, day, rows_in, valid.height, invalid_by_reason, identical_duplicates=rows_in - frame.height
    )
    if report.invalid_share > max_invalid_share:
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(invalid_by_reason.items()))
        raise InvalidPartitionError(
            f"{symbol} {day.isoformat()}: {report.rows_invalid} of {report.rows_in} candles invalid "
            f"({report.invalid_share:.1%} > allowed {max_invalid_share:.1%}): {reasons}"
        )
    return valid, report


@dataclass(frozen=True)
class DayQuality:
    """Coverage and gaps of one day of stored candles."""

    rows: int
    coverage: float
    gap_count: int
    longest_gap_minutes: int
    gaps: list[tuple[datetime, int]]


def day_quality(minutes: pl.Series, day: date) -> DayQuality:
    """Coverage of the day's 1,440 minutes and the runs of missing minutes (start, length)."""
    start, end = day_bounds(day)
    edges = pl.concat(
        [
            pl.Series([start - timedelta(minutes=1)], dtype=pl.Datetime("us", "UTC")),
            minutes.sort().cast(pl.Datetime("us", "UTC")),
            pl.Series([end], dtype=pl.Datetime("us", "UTC")),
        ]
    )
    step_minutes = (edges.diff().dt.total_minutes()).slice(1)
    gap_lengths = (step_minutes - 1).to_list()
    gaps = [
        (edges[i] + timedelta(minutes=1), int(length)) for i, length in enumerate(gap_lengths) if length > 0
    ]
    return DayQuality(
        rows=minutes.len(),
        coverage=minutes.len() / MINUTES_PER_DAY,
        gap_count=len(gaps),
        longest_gap_minutes=max((length for _, length in gaps), default=0),
        gaps=gaps,
    )
