"""`trading-assets bench backfill`: 2 years x 3 symbols of candles and features through Dagster.

Starts `dagster dev` (webserver + daemon, the project's dagster.yaml: queued runs, at most 3 at once) on a
loopback port with a temporary DAGSTER_HOME and data directory, backfills `raw_candles` and `features` of
the synthetic source through the webserver's GraphQL API, waits, and reports wall seconds from the first
launch to the last backfill's end, the runs the backfills launched, the candle and feature rows in
DuckDB, partitions, rows/s, whether every targeted partition materialized, and the seconds spent in each
step (summed over runs). The backfill policy of both assets (single run) is in effect.

The days are the latest `--days` complete UTC days plus the day before them, whose candles the first
day's features read; the history (`TA_HISTORY_START`) starts on that extra day, so its features are
computed too (without lookback) and a backfill can give both assets the same partitions. `--mode`:

- `single` (default): one backfill of both assets with the UI's request shape (asset selection and
  partition names). Both assets having the same partitions, the daemon runs both in one run per symbol.
- `two-phase`: a backfill of the candles, then one of the features (3 runs each).
- `by-asset`: one backfill with per-asset ranges (`partitionsByAssets`), candles from the extra day and
  features from the first day. Kept to show a pathology: the daemon requests the features piecemeal as
  candle materializations appear, in hundreds of small runs.

`--keep` keeps the temporary directories (and prints where).

`--store ducklake --workers N` measures the scale-out instead (`trading_assets_bench.backfill_lake`): the
backfill across N Dask workers into a DuckLake with a PostgreSQL catalog (and across 1 worker, for
`speedup_vs_1_worker`), compared slice by slice with the same backfill into the embedded file.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from trading_assets.settings import PROJECT_ROOT
from trading_assets_bench import BenchmarkRefused, scratch_directory
from trading_assets_bench.harness.dagster_server import BackfillStatus, DagsterServer

SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")
MODES = ("single", "two-phase", "by-asset")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=int, default=730, help="days per symbol (default 730 = 2 years)")
    parser.add_argument(
        "--symbols", nargs="+", default=list(SYMBOLS), help=f"symbols (default {' '.join(SYMBOLS)})"
    )
    parser.add_argument("--mode", choices=MODES, default="single", help="how the backfill is launched")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for each backfill")
    parser.add_argument("--keep", action="store_true", help="keep the temporary DAGSTER_HOME and data dir")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--store",
        choices=("duckdb", "ducklake"),
        default="duckdb",
        help="duckdb (default): through `dagster dev` into the embedded file; ducklake: across Dask workers "
        "into a DuckLake (PostgreSQL catalog), 1 worker and --workers, compared with the embedded file",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="--store ducklake: Dask workers (default 2)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="--store ducklake: trials of each worker count (medians reported)",
    )


def run(args: argparse.Namespace) -> dict[str, object]:
    if args.store == "ducklake":
        from trading_assets_bench import backfill_lake

        if args.mode != "single":
            raise BenchmarkRefused(
                "--store ducklake backfills one run per symbol; --mode applies to duckdb only"
            )
        args.workers = 2 if args.workers is None else args.workers
        return backfill_lake.run(args)
    if args.workers is not None or args.repeats != 1:
        raise BenchmarkRefused(
            "--workers and --repeats need --store ducklake (the embedded file has one host)"
        )
    # The latest complete days: a backfill of both assets over the same days then targets no feature
    # partition after the last day (that day's features would read candles that are not backfilled).
    last = datetime.now(UTC).date() - timedelta(days=1)
    first = last - timedelta(days=args.days - 1)
    symbols: Sequence[str] = tuple(args.symbols)
    with scratch_directory("bench-backfill-", args.keep) as root:
        return _run(root, first, last, symbols, args)


def _keys(first: date, last: date, symbols: Sequence[str]) -> list[str]:
    days = [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
    return [f"{day.isoformat()}|{symbol}" for day in days for symbol in symbols]


def _ranges(first: date, last: date, symbols: Sequence[str]) -> list[tuple[str, str]]:
    return [(f"{first.isoformat()}|{symbol}", f"{last.isoformat()}|{symbol}") for symbol in symbols]


def _launch(
    server: DagsterServer, mode: str, first: date, last: date, symbols: Sequence[str], title: str
) -> Iterator[Callable[[], str]]:
    """The backfills of `mode` in order: functions that launch one and return its id."""
    history_start = first - timedelta(days=1)
    if mode == "single":
        yield lambda: server.launch_partition_backfill(
            ["raw_candles", "features"], _keys(history_start, last, symbols), title=title
        )
    elif mode == "two-phase":
        for asset in ("raw_candles", "features"):
            yield lambda asset=asset: server.launch_partition_backfill(
                [asset], _keys(history_start, last, symbols), title=f"{title}: {asset}"
            )
    else:
        ranges: Mapping[str, list[tuple[str, str]]] = {
            "raw_candles": _ranges(history_start, last, symbols),
            "features": _ranges(first, last, symbols),
        }
        yield lambda: server.launch_backfill_by_asset(ranges, title=title)


def _run(root: Path, first: date, last: date, symbols: Sequence[str], args: argparse.Namespace) -> dict:
    home, data = root / "dagster_home", root / "data"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    db_path = data / "trading_assets.duckdb"
    env = {
        "TA_DATA_DIR": str(data),
        "TA_MODELS_DIR": str(root / "models"),
        "TA_DUCKDB_PATH": str(db_path),
        "TA_SYMBOLS": ",".join(symbols),
        "TA_HISTORY_START": (first - timedelta(days=1)).isoformat(),
        "TA_SOURCE": "synthetic",
    }
    title = f"bench backfill {args.days} days x {len(symbols)} symbols ({args.mode})"
    clock = time.perf_counter()

    def progress(line: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - clock:7.1f} s] {line[:400]}", file=sys.stderr, flush=True)

    results: list[tuple[BackfillStatus, float]] = []
    with DagsterServer(home, env) as server:
        startup_seconds = time.perf_counter() - clock
        started = time.perf_counter()
        for launch in _launch(server, args.mode, first, last, symbols, title):
            phase_started = time.perf_counter()
            status = server.wait_for_backfill(launch(), timeout=args.timeout, progress=progress)
            results.append((status, time.perf_counter() - phase_started))
        seconds = time.perf_counter() - started
    candle_rows, feature_rows = _count_rows(db_path)
    rows = candle_rows + feature_rows
    targeted: dict[str, int] = {}
    materialized: dict[str, int] = {}
    for status, _ in results:
        for key, counts in status.assets.items():
            targeted[key] = targeted.get(key, 0) + counts["numPartitionsTargeted"]
            materialized[key] = materialized.get(key, 0) + counts["numPartitionsMaterialized"]
    phases = [_phase_report(status, phase_seconds) for status, phase_seconds in results]
    run_ids = [str(run["runId"]) for status, _ in results for run in status.runs]
    partitions = sum(targeted.values())
    return {
        "benchmark": "backfill",
        "mode": args.mode,
        "symbols": len(symbols),
        "days": args.days,
        "candle_days": (last - first).days + 2,
        "first_day": first.isoformat(),
        "last_day": last.isoformat(),
        "partitions": partitions,
        "partitions_by_asset": targeted,
        "materialized_by_asset": materialized,
        "all_materialized": bool(targeted) and materialized == targeted,
        "seconds": round(seconds, 1),
        "server_startup_seconds": round(startup_seconds, 1),
        "runs": len(run_ids),
        "candle_rows": candle_rows,
        "feature_rows": feature_rows,
        "rows": rows,
        "rows_per_s": round(rows / seconds, 1) if seconds else None,
        "partitions_per_s": round(partitions / seconds, 2) if seconds else None,
        "backfills": phases,
        "step_seconds": _step_seconds(home, run_ids),
    }


def _phase_report(status: BackfillStatus, seconds: float) -> dict[str, object]:
    """One backfill: its status, wall seconds and runs (with each run's seconds from start to end)."""
    run_list = [
        {
            "runId": run["runId"],
            "status": run["status"],
            "seconds": round(run["endTime"] - run["startTime"], 1)
            if run.get("startTime") and run.get("endTime")
            else None,
        }
        for run in status.runs
    ]
    return {
        "backfill_id": status.backfill_id,
        "assets": sorted(status.assets),
        "status": status.status,
        "seconds": round(seconds, 1),
        "runs": len(run_list),
        "retried_runs": sum(
            1 for run in status.runs if any(tag["key"] == "dagster/parent_run_id" for tag in run["tags"])
        ),
        "run_seconds_sum": round(sum(run["seconds"] or 0.0 for run in run_list), 1),
        "run_list": run_list,
    }


def _step_seconds(home: Path, run_ids: list[str]) -> dict[str, float]:
    """Seconds spent in each step (summed over runs), from the instance's step stats."""
    import dagster as dg

    totals: dict[str, float] = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for run_id in run_ids:
            for step in instance.get_run_step_stats(run_id):
                if step.start_time and step.end_time:
                    totals[step.step_key] = totals.get(step.step_key, 0.0) + step.end_time - step.start_time
    return {key: round(value, 1) for key, value in sorted(totals.items())}


def _count_rows(db_path: Path) -> tuple[int, int]:
    """Candle and feature rows in the store (read after the server stopped: no writer holds the lock)."""
    if not db_path.exists():
        return 0, 0
    connection = duckdb.connect(str(db_path), read_only=True)
    try:
        tables = {
            row[0]
            for row in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
        counts = [
            connection.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] if table in tables else 0
            for table in ("candles", "features")
        ]
    finally:
        connection.close()
    return int(counts[0]), int(counts[1])
