"""`trading-assets bench ingest`: synthetic candles through the asset's code path, and the ccxt path.

The first part generates, validates and writes `--days` x 3 symbols with `ingest_days` in batches of
consecutive days, exactly what the `raw_candles` asset runs for a range of partitions, into a temporary
DuckDB file.
The second runs the ccxt source against a loopback server that speaks Coinbase's candle protocol with
a configured rate limit and reports the request rate achieved against the rate allowed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from trading_assets.market.candles import consecutive_day_batches
from trading_assets.market.ingest import ingest_days
from trading_assets.market.synthetic import DEFAULT_SYNTHETIC_PREDICTABILITY, SyntheticSource
from trading_assets.store.duckdb_store import DAYS_PER_TRANSACTION

SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=int, default=730, help="days per symbol (default 730 = 2 years)")
    parser.add_argument("--start", default="2023-11-10", help="first day (default 2023-11-10)")
    parser.add_argument("--exchange-requests", type=int, default=100, help="requests in the ccxt part")
    parser.add_argument("--exchange-rate-limit-ms", type=int, default=100, help="allowed ms between requests")


def run(args: argparse.Namespace) -> dict:
    first_day = date.fromisoformat(args.start)
    days = [first_day + timedelta(days=i) for i in range(args.days)]
    source = SyntheticSource(predictability=DEFAULT_SYNTHETIC_PREDICTABILITY)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as directory:
        db_path = Path(directory) / "bench.duckdb"
        started = time.perf_counter()
        rows = sum(
            report.rows_written
            for symbol in SYMBOLS
            for batch in consecutive_day_batches(days, DAYS_PER_TRANSACTION)
            for report in ingest_days(source, db_path, symbol, batch, max_invalid_share=0.0)
        )
        seconds = time.perf_counter() - started
    from trading_assets_bench.exchange import measure_exchange_rate

    exchange = measure_exchange_rate(
        requests=args.exchange_requests, rate_limit_ms=args.exchange_rate_limit_ms
    )
    return {
        "benchmark": "ingest",
        "symbols": len(SYMBOLS),
        "days": args.days,
        "partitions": len(SYMBOLS) * args.days,
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds, 1),
        **exchange,
    }
