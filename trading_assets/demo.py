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
    steps = [
        # candles of one extra day first, so the first day's features have their full lookback
        ("raw_candles", first - timedelta(days=1)),
        ("features", first),
    ]
    for asset, step_first in steps:
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(asset)],
            tags=partition_range_tags(step_first, last, settings.symbols),
            raise_on_error=False,
        )
        failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
        print(
            f"  {asset}: run {result.run_id[:8]} {'succeeded' if result.success else 'FAILED'}, "
            f"{len(failed)} failed check(s) {[(e.check_name, e.partition) for e in failed][:5]}"
        )
        if not result.success:
            return 1
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    summary = query(
        settings.duckdb_path,
        "SELECT symbol, count(*) AS feature_rows, count(*) FILTER (WHERE usable) AS usable_rows, "
        "min(minute) AS first, max(minute) AS last FROM features WHERE minute >= ? AND minute < ? "
        "GROUP BY symbol ORDER BY symbol",
        [start, start + timedelta(days=days)],
    )
    print(summary)
    print(f"DuckDB store: {settings.duckdb_path}")
    print(
        f"Open the UI: DAGSTER_HOME={os.environ['DAGSTER_HOME']} .venv/bin/dagster dev -w workspace.yaml"
        "  (http://127.0.0.1:3000)"
    )
    return 0
