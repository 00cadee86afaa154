from datetime import date, timedelta

import dagster as dg

from trading_assets.definitions import defs
from trading_assets.defs.assets import candles as candles_module
from trading_assets.defs.assets import features as features_module
from trading_assets.defs.assets.features import _partition_checks
from trading_assets.defs.partitions import partition_range_tags
from trading_assets.features.build import build_feature_day
from trading_assets.features.registry import FEATURE_NAMES, schema_hash
from trading_assets.features.store import read_feature_days, read_features
from trading_assets.market.ingest import ingest_days
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.store.duckdb_store import run_write
from trading_assets_tests.defs.code_location import features, raw_candles

SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")
HISTORY_START = date(2023, 11, 10)


def run_range(instance, resources, assets: list[str], first: date, last: date) -> dg.ExecuteInProcessResult:
    job = dg.Definitions(
        assets=[raw_candles, features], resources=resources
    ).resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey(a) for a in assets],
        tags=partition_range_tags(first, last, SYMBOLS),
    )


def test_candles_and_features_backfill_in_one_run(dagster_instance, resources, db_path) -> None:
    first, last = date(2024, 2, 1), date(2024, 2, 3)
    result = run_range(dagster_instance, resources, ["raw_candles", "features"], first, last)
    assert result.success
    assert len(dagster_instance.get_run_records()) == 1
    materialized = result.asset_materializations_for_node("features")
    assert len(materialized) == 9
    metadata = {m.partition: m.metadata for m in materialized}["2024-02-02|ETH-USD"]
    assert metadata["rows"].value == 1440 and metadata["usable_rows"].value == 1440
    assert metadata["schema_hash"].value == schema_hash()
    assert "| rsi_14 |" in metadata["feature_summary"].value
    evaluations = [e for e in result.get_asset_check_evaluations() if e.asset_key == dg.AssetKey("features")]
    assert len(evaluations) == 36 and all(e.passed or e.check_name == "usable_coverage" for e in evaluations)
    stored = read_features(db_path, "BTC-USD", first, last + timedelta(days=1))
    assert (
        stored.height == 3 * 1440 and stored.select(FEATURE_NAMES).null_count().sum_horizontal().item() == 0
    )


def test_a_day_in_the_asset_equals_the_day_computed_alone(
    dagster_instance, resources, db_path, monkeypatch
) -> None:
    # Batches of 2 days: the 3 days of each symbol are written as [Feb 1, Feb 2] and [Feb 3].
    for module in (candles_module, features_module):
        monkeypatch.setattr(module, "DAYS_PER_TRANSACTION", 2)
    run_range(dagster_instance, resources, ["raw_candles"], date(2024, 2, 1), date(2024, 2, 3))
    run_range(dagster_instance, resources, ["features"], date(2024, 2, 1), date(2024, 2, 3))
    for day in (date(2024, 2, 2), date(2024, 2, 3)):
        in_range = read_features(db_path, "SOL-USD", day, day + timedelta(days=1))
        alone = build_feature_day(db_path, "SOL-USD", day, HISTORY_START).frame
        assert in_range.select(alone.columns).equals(alone)


def test_stored_rows_fails_when_the_written_features_are_gone(tmp_path) -> None:
    db_path, day = tmp_path / "store.duckdb", date(2024, 2, 2)
    ingest_days(SyntheticSource(), db_path, "ETH-USD", [day - timedelta(days=1), day], 0.0)
    report = build_feature_day(db_path, "ETH-USD", day, HISTORY_START)

    def check_results() -> dict[str, bool]:
        stored = read_feature_days(db_path, "ETH-USD", [day])[day]
        evaluations = _partition_checks(_EvaluationsByName(), f"{day}|ETH-USD", report, stored, 0.95)
        return {name: passed for name, passed in evaluations}

    assert all(check_results().values())
    run_write(db_path, lambda connection: connection.execute("DELETE FROM features"))  # a lost write
    results = check_results()
    assert not results["stored_rows"] and results["finite_values"]


class _EvaluationsByName:
    """Stands in for PartitionChecks: keeps (name, passed) instead of Dagster events."""

    def evaluation(self, partition, name, passed, severity, metadata):
        return name, passed


def test_features_without_candles_fail_naming_the_partition(dagster_instance, resources) -> None:
    result = dg.materialize(
        [features],
        partition_key="2024-02-05|BTC-USD",
        resources=resources,
        instance=dagster_instance,
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "no stored candles for BTC-USD on 2024-02-05" in str(failure.step_failure_data)


def test_features_depend_on_the_day_and_the_day_before() -> None:
    graph = defs.get_repository_def().asset_graph
    upstream = graph.get_parents_partitions(
        dg.AssetKey("features"), dg.MultiPartitionKey({"date": "2024-02-05", "symbol": "ETH-USD"})
    ).parent_partitions
    assert {(str(p.asset_key.path[0]), str(p.partition_key)) for p in upstream} == {
        ("raw_candles", "2024-02-04|ETH-USD"),
        ("raw_candles", "2024-02-05|ETH-USD"),
    }
