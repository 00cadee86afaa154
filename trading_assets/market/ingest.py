"""One partition of ingestion: fetch a (symbol, day), validate, store, summarise. No Dagster."""

from __future__ import annotations

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
from trading_assets.store.duckdb_store import write_candles


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
    start, end = day_bounds(day)
    fetched = source.fetch(symbol, start, end)
    valid, validation = validate_candles(fetched, symbol, day, max_invalid_share)
    written = write_candles(db_path, valid, symbol, start, end, source.name, datetime.now(UTC))
    return IngestReport(
        symbol=symbol,
        day=day,
        source=source.name,
        validation=validation,
        quality=day_quality(valid["minute"], day),
        rows_written=written,
        price_low=valid["low"].min() if valid.height else None,
        price_high=valid["high"].max() if valid.height else None,
        first_minute=valid["minute"].min() if valid.height else None,
        last_minute=valid["minute"].max() if valid.height else None,
        preview=valid.head(5),
    )
