"""A separate process for the store tests: `python -m trading_assets_tests.store.writer_process ...`.

DB is a DuckDB file's path or a DuckLake as JSON (`{"catalog": DSN, "data_path": DIR}`, `store_argument`).

`ingest DB SYMBOL DAY [DAY...]` ingests synthetic days through the same code path as the asset.
`backfill DB SYMBOL FIRST_DAY DAYS` does what the candles and then the features step of a single-run
backfill do for one symbol: batches of consecutive days written in one transaction each, every batch read
back and compared with what was written (exit 1 naming the days whose stored rows differ).
`rewrite DB` rewrites one large slice forever, each version tagged in `source`, until killed.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from trading_assets.features.build import build_feature_days
from trading_assets.features.store import read_feature_days
from trading_assets.market.candles import consecutive_day_batches
from trading_assets.market.ingest import ingest_day, ingest_days
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.store.duckdb_store import (
    DAYS_PER_TRANSACTION,
    LakeStore,
    Store,
    candle_integrity_by_day,
    write_candles,
)

BIG_SLICE_START = datetime(2024, 1, 1, tzinfo=UTC)
BIG_SLICE_DAYS = 120


def big_slice() -> pl.DataFrame:
    return SyntheticSource().fetch(
        "BTC-USD", BIG_SLICE_START, BIG_SLICE_START + timedelta(days=BIG_SLICE_DAYS)
    )


def store_argument(text: str) -> Store:
    """A DuckDB file's path, or a DuckLake given as JSON {"catalog": ..., "data_path": ...}."""
    return LakeStore(**json.loads(text)) if text.startswith("{") else Path(text)


def backfill(db_path: Store, symbol: str, first_day: date, day_count: int) -> list[str]:
    """Candles, then features, of `day_count` days from `first_day`; the days whose read-back differs."""
    days = [first_day + timedelta(days=offset) for offset in range(day_count)]
    batches = consecutive_day_batches(days, DAYS_PER_TRANSACTION)
    lost: list[str] = []
    for batch in batches:
        written = {r.day: r.rows_written for r in ingest_days(SyntheticSource(), db_path, symbol, batch, 0.0)}
        stored = candle_integrity_by_day(db_path, symbol, batch)
        lost += [f"candles {day}" for day in batch if stored[day]["rows"] != written[day]]
    for batch in batches:
        written = {report.day: report.rows for report in build_feature_days(db_path, symbol, batch, days[0])}
        stored_features = read_feature_days(db_path, symbol, batch)
        lost += [f"features {day}" for day in batch if stored_features[day].height != written[day]]
    return lost


def main(argv: list[str]) -> None:
    command, db_path = argv[0], store_argument(argv[1])
    if command == "ingest":
        source = SyntheticSource()
        for day in argv[3:]:
            ingest_day(source, db_path, argv[2], date.fromisoformat(day), max_invalid_share=0.0)
    elif command == "backfill":
        lost = backfill(db_path, argv[2], date.fromisoformat(argv[3]), int(argv[4]))
        if lost:
            sys.exit(f"{argv[2]}: stored rows differ from the rows written on {', '.join(lost)}")
    elif command == "rewrite":
        candles = big_slice()
        end = BIG_SLICE_START + timedelta(days=BIG_SLICE_DAYS)
        version = 0
        while True:
            version += 1
            write_candles(db_path, candles, "BTC-USD", BIG_SLICE_START, end, f"v{version}", datetime.now(UTC))
            print(f"wrote v{version}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
