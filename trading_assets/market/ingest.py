"""One partition of ingestion: fetch a (symbol, day), validate, store, summarise. No Dagster."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from trading_assets.market.candles import (
    CandleSource,
    DayQuality,
    ValidationReport,
    day_bounds,
    day_quality,
    validate_candles,
)
from trading_assets.store.duckdb_store import write_candle_slices


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


def ingest_day(
    source: CandleSource, db_path: Path, symbol: str, day: date, max_invalid_share: float
) -> IngestReport:
    """Replace the stored candles of `symbol` on `day` with the source's validated candles."""
    [report] = ingest_days(source, db_path, symbol, [day], max_invalid_share)
    return report


def ingest_days(
    source: CandleSource, db_path: Path, symbol: str, days: Sequence[date], max_invalid_share: float
) -> list[IngestReport]:
    """Replace the stored candles of `symbol` on each of `days` with the source's validated candles.

    Every day is fetched and validated first (an invalid day raises `InvalidPartitionError` before
    anything is written), then all the days' slices are replaced in one transaction.
    """
    days = sorted(set(days))
    if not days:
        return []
    validated = []
    for day in days:
        fetched = source.fetch(symbol, *day_bounds(day))
        validated.append((day, *validate_candles(fetched, symbol, day, max_invalid_share)))
    write_candle_slices(
        db_path,
        pl.concat([valid for _, valid, _ in validated]),
        symbol,
        [day_bounds(day) for day in days],
        source.name,
        datetime.now(UTC),
    )
    return [_report(source.name, symbol, day, valid, validation) for day, valid, validation in validated]


def _report(
    source_name: str, symbol: str, day: date, valid: pl.DataFrame, validation: ValidationReport
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
    )
