"""One partition of ingestion: fetch a (symbol, day), validate, store, summarise. No Dagster."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

import polars as pl

from trading_assets.market.candles import (
    CandleSource,
    DayQuality,
    EmptyDayError,
    FetchLog,
    ValidationReport,
    day_bounds,
    day_quality,
    validate_candles,
)
from trading_assets.market.integrity import (
    DEFAULT_REVISION_TOLERANCE,
    RevisionDiff,
    RevisionRefusedError,
    RevisionTolerance,
    diff_candles,
    revision_refused_message,
)
from trading_assets.store.duckdb_store import BeforeWrite, Store, write_candle_slices


@dataclass(frozen=True)
class IngestReport:
    symbol: str
    day: date
    source: str
    validation: ValidationReport
    quality: DayQuality
    rows_written: int
    price_low: float | None
    price_high: float | None
    first_minute: datetime | None
    last_minute: datetime | None
    preview: pl.DataFrame
    #: The pages of a paged source (ccxt) for this day; None for sources that answer a range at once.
    fetch_log: FetchLog | None = None
    #: How this write changed the day's stored minutes (None: nothing was stored for the day before).
    revision: RevisionDiff | None = None


def ingest_day(
    source: CandleSource,
    db_path: Store,
    symbol: str,
    day: date,
    max_invalid_share: float,
    allow_shrink: bool = False,
    allow_revision: bool = False,
    tolerance: RevisionTolerance = DEFAULT_REVISION_TOLERANCE,
) -> IngestReport:
    """Replace the stored candles of `symbol` on `day` with the source's validated candles."""
    [report] = ingest_days(
        source, db_path, symbol, [day], max_invalid_share, allow_shrink, allow_revision, tolerance
    )
    return report


def ingest_days(
    source: CandleSource,
    db_path: Store,
    symbol: str,
    days: Sequence[date],
    max_invalid_share: float,
    allow_shrink: bool = False,
    allow_revision: bool = False,
    tolerance: RevisionTolerance = DEFAULT_REVISION_TOLERANCE,
    before_write: BeforeWrite | None = None,
) -> list[IngestReport]:
    """Replace the stored candles of `symbol` on each of `days` with the source's validated candles.

    Every day is fetched and validated first (an invalid day raises `InvalidPartitionError`, a day
    without a single valid candle `EmptyDayError`, before anything is written), then all the days'
    slices are replaced in one transaction, which refuses to leave any day with fewer rows than it holds
    (`ShrinkRefusedError`) and, comparing the stored minutes with the new ones inside that transaction,
    to revise stored minutes beyond `tolerance` (`RevisionRefusedError`, one line naming every revised
    day; see `trading_assets.market.integrity`). `allow_shrink=True` permits empty days, shrinking
    rewrites and stored minutes that the new answer lacks; `allow_revision=True` accepts revised minutes.
    Each report carries its day's `RevisionDiff` (None for a day that had nothing stored). `before_write`
    is called inside that transaction last before the slices are replaced; what it raises writes nothing.
    """
    days = sorted(set(days))
    if not days:
        return []
    reports = [_fetch_and_validate(source, symbol, day, max_invalid_share, allow_shrink) for day in days]
    incoming = pl.concat([valid for valid, _ in reports])
    diffs: dict[date, RevisionDiff] = {}

    def refuse_revisions(stored: pl.DataFrame) -> None:
        stored_days = set(stored["minute"].dt.date().unique().to_list()) if stored.height else set()
        diffs.update(
            {
                day: diff_candles(stored, incoming, symbol, day, tolerance)
                for day in days
                if day in stored_days
            }
        )
        refused = [diff for diff in diffs.values() if diff.refused(allow_shrink)]
        if refused and not allow_revision:
            raise RevisionRefusedError(revision_refused_message(symbol, refused, tolerance))

    write_candle_slices(
        db_path,
        incoming,
        symbol,
        [day_bounds(day) for day in days],
        source.name,
        datetime.now(UTC),
        allow_shrink=allow_shrink,
        guard=refuse_revisions,
        before_write=before_write,
    )
    return [replace(report, revision=diffs.get(report.day)) for _, report in reports]


def _fetch_and_validate(
    source: CandleSource, symbol: str, day: date, max_invalid_share: float, allow_shrink: bool
) -> tuple[pl.DataFrame, IngestReport]:
    fetched = source.fetch(symbol, *day_bounds(day))
    fetch_log = getattr(source, "last_fetch", None)
    valid, validation = validate_candles(fetched, symbol, day, max_invalid_share)
    if valid.height == 0 and not allow_shrink:
        raise EmptyDayError(
            f"{symbol} {day.isoformat()}: source {source.name} answered {fetched.height} candle(s), "
            "none valid; an empty answer is not an empty day (stored rows kept; run config "
            "allow_shrink: true stores it)"
        )
    return valid, _report(source.name, symbol, day, valid, validation, fetch_log)


def _report(
    source_name: str,
    symbol: str,
    day: date,
    valid: pl.DataFrame,
    validation: ValidationReport,
    fetch_log: FetchLog | None,
) -> IngestReport:
    return IngestReport(
        symbol=symbol,
        day=day,
        source=source_name,
        validation=validation,
        quality=day_quality(valid["minute"], day),
        rows_written=valid.height,
        price_low=valid["low"].min() if valid.height else None,
        price_high=valid["high"].max() if valid.height else None,
        first_minute=valid["minute"].min() if valid.height else None,
        last_minute=valid["minute"].max() if valid.height else None,
        preview=valid.head(5),
        fetch_log=fetch_log,
    )
