from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from trading_assets.defs.assets.candles import _partition_checks
from trading_assets.defs.partitions import partition_range_tags
from trading_assets.defs.resources import DuckDBStoreResource, MarketDataResource
from trading_assets.market.candles import day_bounds
from trading_assets.market.ingest import ingest_day
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.store.duckdb_store import candle_integrity_by_day, read_candles, run_write
from trading_assets_tests.defs.code_location import raw_candles, raw_candles_freshness

SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")


def materialize_one(instance: dg.DagsterInstance, resources: dict, key: str) -> dg.ExecuteInProcessResult:
    return dg.materialize([raw_candles], partition_key=key, resources=resources, instance=instance)


def test_one_partition_stores_a_day_with_rich_metadata(dagster_instance, resources, db_path: Path) -> None:
    result = materialize_one(dagster_instance, resources, "2024-01-02|ETH-USD")
    assert result.success
    [materialization] = result.asset_materializations_for_node("raw_candles")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert materialization.partition == "2024-01-02|ETH-USD"
    assert metadata["rows"] == 1440 and metadata["coverage_pct"] == 100.0
    assert metadata["first_minute"] == "2024-01-02T00:00:00+00:00"
    assert metadata["last_minute"] == "2024-01-02T23:59:00+00:00"
    assert metadata["gap_count"] == 0 and metadata["source"] == "synthetic"
    assert metadata["price_low"] < metadata["price_high"]
    assert "| minute | open |" in metadata["preview"]
    stored = read_candles(db_path, ["ETH-USD"])
    expected = SyntheticSource(predictability=0.7).fetch("ETH-USD", *day_bounds(date(2024, 1, 2)))
    assert stored.select(expected.columns).equals(expected)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == {"coverage", "ohlc_consistency", "no_duplicate_minutes", "stored_rows"}
    assert all(e.passed and e.partition == "2024-01-02|ETH-USD" for e in checks.values())
    assert checks["coverage"].metadata["min_coverage"].value == pytest.approx(0.95)


def test_rerun_is_idempotent(dagster_instance, resources, db_path: Path) -> None:
    materialize_one(dagster_instance, resources, "2024-01-02|BTC-USD")
    first = read_candles(db_path, ["BTC-USD"]).drop("ingested_at")
    assert materialize_one(dagster_instance, resources, "2024-01-02|BTC-USD").success
    assert read_candles(db_path, ["BTC-USD"]).drop("ingested_at").equals(first)


def test_a_multi_day_multi_symbol_range_runs_once_and_stores_exactly_its_rows(
    dagster_instance, resources, db_path: Path
) -> None:
    assert raw_candles.backfill_policy == dg.BackfillPolicy.single_run()
    first, last = date(2024, 3, 1), date(2024, 3, 4)
    job = dg.Definitions(assets=[raw_candles], resources=resources).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=dagster_instance, tags=partition_range_tags(first, last, SYMBOLS)
    )
    assert result.success
    assert len(dagster_instance.get_run_records()) == 1
    materialized = {m.partition for m in result.asset_materializations_for_node("raw_candles")}
    assert materialized == {f"{first + timedelta(days=d)}|{s}" for d in range(4) for s in SYMBOLS}
    assert len(result.get_asset_check_evaluations()) == 4 * len(materialized)
    stored = read_candles(db_path, SYMBOLS)
    assert stored.height == 4 * 3 * 1440
    assert stored.group_by("symbol").len().sort("symbol")["len"].to_list() == [4 * 1440] * 3
    assert stored["minute"].min() == datetime(2024, 3, 1, tzinfo=UTC)
    assert stored["minute"].max() == datetime(2024, 3, 4, 23, 59, tzinfo=UTC)


def test_a_partition_with_too_many_invalid_rows_fails_and_stores_nothing(
    dagster_instance, tmp_path: Path, db_path: Path
) -> None:
    day = date(2024, 1, 2)
    candles = SyntheticSource().fetch("BTC-USD", *day_bounds(day))
    broken = candles.with_columns(
        pl.when(pl.col("minute").dt.hour() < 3)
        .then(pl.col("low") * 0.5)
        .otherwise(pl.col("high"))
        .alias("high")
    )
    files = tmp_path / "files"
    files.mkdir()
    broken.write_parquet(files / "BTC-USD.parquet")
    resources = {
        "market_data": MarketDataResource(source="files", files_dir=str(files)),
        "store": DuckDBStoreResource(path=str(db_path)),
    }
    result = dg.materialize(
        [raw_candles],
        partition_key="2024-01-02|BTC-USD",
        resources=resources,
        instance=dagster_instance,
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message + str(failure.step_failure_data.user_failure_data)
    assert "BTC-USD 2024-01-02: 180 of 1440 candles invalid" in message and "high < low" in message
    assert not db_path.exists() or read_candles(db_path, ["BTC-USD"]).height == 0


def test_a_shrinking_rewrite_fails_and_keeps_the_day_unless_the_run_allows_it(
    dagster_instance, tmp_path: Path, db_path: Path
) -> None:
    day, key = date(2024, 1, 2), "2024-01-02|BTC-USD"
    candles = SyntheticSource().fetch("BTC-USD", *day_bounds(day))
    files = tmp_path / "files"
    files.mkdir()
    resources = {
        "market_data": MarketDataResource(source="files", files_dir=str(files)),
        "store": DuckDBStoreResource(path=str(db_path)),
    }

    def materialize(frame: pl.DataFrame, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
        frame.write_parquet(files / "BTC-USD.parquet")
        return dg.materialize(
            [raw_candles],
            partition_key=key,
            resources=resources,
            instance=dagster_instance,
            raise_on_error=False,
            run_config=run_config,
        )

    assert materialize(candles).success
    before = read_candles(db_path, ["BTC-USD"])
    refused = materialize(candles.head(1000))
    assert not refused.success
    [failure] = [e for e in refused.all_events if e.is_step_failure]
    assert (
        "refusing to shrink candles of BTC-USD: 2024-01-02 1440 rows stored, 1000 fetched; stored rows kept"
        in failure.step_failure_data.error.message
    )
    assert read_candles(db_path, ["BTC-USD"]).equals(before)

    allowed = {"ops": {"raw_candles": {"config": {"allow_shrink": True}}}}
    assert materialize(candles.head(1000), allowed).success
    assert read_candles(db_path, ["BTC-USD"]).height == 1000


def run_freshness(instance: dg.DagsterInstance, resources: dict) -> dg.AssetCheckEvaluation:
    result = dg.materialize(
        [raw_candles, raw_candles_freshness],
        resources=resources,
        instance=instance,
        selection=dg.AssetSelection.checks(raw_candles_freshness),
    )
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_freshness_passes_for_yesterday_and_warns_for_old_candles(
    dagster_instance, resources, tmp_path
) -> None:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    for symbol in SYMBOLS:
        materialize_one(dagster_instance, resources, f"{yesterday}|{symbol}")
    assert run_freshness(dagster_instance, resources).passed

    old_store = {**resources, "store": DuckDBStoreResource(path=str(tmp_path / "old.duckdb"))}
    materialize_one(dagster_instance, old_store, "2024-01-02|BTC-USD")
    stale = run_freshness(dagster_instance, old_store)
    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.WARN
    assert stale.metadata["stale_symbols"].value == list(SYMBOLS)
    assert stale.metadata["freshness_hours"].value == 48.0
    for symbol in SYMBOLS:  # a coverage chart per symbol, of the 30 days up to the newest stored candle
        assert stale.metadata[f"coverage_{symbol}"].value.startswith(
            f"![{symbol} coverage](data:image/png;base64,"
        )


class _EvaluationsByName:
    """Stands in for PartitionChecks: keeps (name, passed, metadata) instead of Dagster events."""

    def evaluation(self, partition, name, passed, severity, metadata):
        return name, passed, metadata


def test_stored_rows_fails_when_the_written_slice_is_gone(tmp_path: Path) -> None:
    db_path, day = tmp_path / "store.duckdb", date(2024, 1, 2)
    report = ingest_day(SyntheticSource(), db_path, "BTC-USD", day, max_invalid_share=0.0)

    def check_results() -> dict[str, tuple[bool, dict]]:
        stored = candle_integrity_by_day(db_path, "BTC-USD", [day])[day]
        evaluations = _partition_checks(_EvaluationsByName(), "2024-01-02|BTC-USD", report, stored, 0.95)
        return {name: (passed, metadata) for name, passed, metadata in evaluations}

    results = check_results()
    assert results["stored_rows"][0] and results["stored_rows"][1]["rows_written"] == 1440
    run_write(db_path, lambda connection: connection.execute("DELETE FROM candles"))  # a lost write
    results = check_results()
    assert not results["stored_rows"][0] and results["stored_rows"][1]["stored_rows"] == 0
    assert results["ohlc_consistency"][0]  # the other checks cannot see a missing slice
