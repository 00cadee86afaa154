"""A separate process for the store tests: `python -m trading_assets_tests.store.writer_process ...`.

`ingest DB SYMBOL DAY [DAY...]` ingests synthetic days through the same code path as the asset.
`rewrite DB` rewrites one large slice forever, each version tagged in `source`, until killed.
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from trading_assets.market.ingest import ingest_day
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.store.duckdb_store import write_candles

BIG_SLICE_START = datetime(2024, 1, 1, tzinfo=UTC)
BIG_SLICE_DAYS = 120


def big_slice() -> pl.DataFrame:
    return SyntheticSource().fetch(
        "BTC-USD", BIG_SLICE_START, BIG_SLICE_START + timedelta(days=BIG_SLICE_DAYS)
    )


def main(argv: list[str]) -> None:
    command, db_path = argv[0], Path(argv[1])
    if command == "ingest":
        source = SyntheticSource()
        for day in argv[3:]:
            ingest_day(source, db_path, argv[2], date.fromisoformat(day), max_invalid_share=0.0)
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
