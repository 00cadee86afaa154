"""`trading-assets bench backfill` in small form: 2 days of one symbol through a real `dagster dev`; 2 days of two
symbols across Dask workers into a DuckLake (`--store ducklake`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from trading_assets import cli
from trading_assets_bench import BenchmarkRefused, backfill
from trading_assets_bench.harness.dagster_server import multi_partition_key


def test_defaults_and_registration() -> None:
    parser = argparse.ArgumentParser()
    backfill.add_arguments(parser)
    options = parser.parse_args([])
    assert options.days == 730 and options.mode == "single" and not options.keep
    assert tuple(options.symbols) == ("BTC-USD", "ETH-USD", "SOL-USD")
    assert "backfill" in cli.BENCHMARKS
    assert multi_partition_key(symbol="BTC-USD", date="2024-01-02") == "2024-01-02|BTC-USD"


@pytest.mark.e2e  # starts `dagster dev`
def test_small_backfill_through_dagster(tmp_path: Path) -> None:
    path = tmp_path / "backfill.json"
    argv = ["bench", "backfill", "--days", "2", "--symbols", "BTC-USD", "--quiet", "--json", str(path)]
    assert cli.main(argv) == 0
    result = json.loads(path.read_text())
    assert result["all_materialized"] is True
    # The 2 days and the day before them (the first day's lookback, where the history starts).
    assert result["partitions_by_asset"] == {"raw_candles": 3, "features": 3}
    assert (result["candle_rows"], result["feature_rows"]) == (3 * 1440, 3 * 1440)
    assert result["rows"] == 6 * 1440
    # One backfill; single-run policy and the same partitions: candles and features in one run.
    [phase] = result["backfills"]
    assert phase["status"] == "COMPLETED_SUCCESS"
    assert phase["runs"] - phase["retried_runs"] == 1
    assert result["seconds"] > 0 and result["rows_per_s"] > 0
    assert {"raw_candles", "features"} <= set(result["step_seconds"])


def test_the_lake_options_and_their_refusals() -> None:
    parser = argparse.ArgumentParser()
    backfill.add_arguments(parser)
    options = parser.parse_args(["--store", "ducklake", "--workers", "3", "--days", "30"])
    assert (options.store, options.workers, options.days, options.repeats) == ("ducklake", 3, 30, 1)
    assert parser.parse_args([]).store == "duckdb"
    with pytest.raises(BenchmarkRefused, match=r"--workers and --repeats need --store ducklake"):
        backfill.run(parser.parse_args(["--workers", "2"]))
    with pytest.raises(BenchmarkRefused, match=r"--mode applies to duckdb only"):
        backfill.run(parser.parse_args(["--store", "ducklake", "--mode", "two-phase"]))
    with pytest.raises(BenchmarkRefused, match=r"at least 1"):
        backfill.run(parser.parse_args(["--store", "ducklake", "--workers", "0"]))


@pytest.mark.e2e  # PostgreSQL, a Dask scheduler and workers, a dozen Dagster runs
def test_the_lake_backfill_reports_its_fields(tmp_path: Path) -> None:
    """`--store ducklake --workers 2`: 1 worker, then 2, into a DuckLake; compared with the embedded file."""
    path = tmp_path / "lake.json"
    argv = ["bench", "backfill", "--store", "ducklake", "--workers", "2", "--days", "2"]
    argv += ["--symbols", "BTC-USD", "ETH-USD", "--quiet", "--json", str(path)]
    assert cli.main(argv) == 0
    result = json.loads(path.read_text())
    assert result["store"] == "ducklake" and result["workers"] == 2
    # The 2 days and the day before them, candles and features: every slice equal to the embedded file's.
    assert result["rows"] == 2 * 2 * 3 * 1440
    assert (result["lost_partitions"], result["duplicate_rows"], result["matches_embedded"]) == (0, 0, True)
    assert result["all_trials_match_embedded"] is True
    assert result["seconds"] > 0 and result["one_worker_seconds"] > 0
    assert result["speedup_vs_1_worker"] == round(result["one_worker_seconds"] / result["seconds"], 2)
    assert [trial["workers"] for trial in result["trials"]] == [1, 2]
    two = result["trials"][1]
    assert [run["status"] for run in two["runs"]] == ["SUCCESS", "SUCCESS"]
    # Each run's steps ran on the workers (their names), none in the run's own process.
    workers = {worker for run in two["runs"] for names in run["steps"].values() for worker in names}
    assert workers <= {"worker-0", "worker-1"}
