"""`trading-assets demo`: the offline pipeline into the project's persistent Dagster instance."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta

from trading_assets.settings import PROJECT_ROOT, load_settings


def demo_days(days: int, today: date | None = None) -> tuple[date, date]:
    """The last `days` complete UTC days: (first, last)."""
    last = (today or datetime.now(UTC).date()) - timedelta(days=1)
    return last - timedelta(days=days - 1), last


def run_demo(days: int = 3) -> int:
    os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / "dagster_home"))
    import dagster as dg

    from trading_assets.definitions import defs
    from trading_assets.partitions import partition_range_tags
    from trading_assets.store.duckdb_store import query

    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    first, last = demo_days(days)
    print(
        f"trading-assets demo: source={settings.source}, symbols={', '.join(settings.symbols)}, {first} .. {last}"
    )
    instance = dg.DagsterInstance.get()
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey("raw_candles")],
        tags=partition_range_tags(first, last, settings.symbols),
        raise_on_error=False,
    )
    print(f"  raw_candles run {result.run_id}: {'succeeded' if result.success else 'FAILED'}")
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            print(f"  check {evaluation.check_name} failed on {evaluation.partition}")
    summary = query(
        settings.duckdb_path,
        "SELECT symbol, count(*) AS candles, min(minute) AS first, max(minute) AS last FROM candles "
        "WHERE minute >= ? AND minute < ? GROUP BY symbol ORDER BY symbol",
        [
            datetime(first.year, first.month, first.day, tzinfo=UTC),
            datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1),
        ],
    )
    print(summary)
    print(f"DuckDB store: {settings.duckdb_path}")
    print(
        f"Open the UI: DAGSTER_HOME={os.environ['DAGSTER_HOME']} .venv/bin/dagster dev -w workspace.yaml  (http://127.0.0.1:3000)"
    )
    return 0 if result.success else 1
