"""`trading-assets bench backfill` in small form: 2 days of one symbol through a real `dagster dev`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from trading_assets import cli
from trading_assets_bench import backfill
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
