import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from trading_assets.definitions import defs

PROJECT = Path(__file__).resolve().parents[1]


def test_the_code_location_validates_from_the_workspace(tmp_path: Path) -> None:
    dagster = Path(sys.executable).with_name("dagster")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "Validation successful for code location trading_assets.definitions" in result.stdout + result.stderr
    )


def test_definitions_hold_the_candle_asset_and_its_checks() -> None:
    repository = defs.get_repository_def()
    assert dg.AssetKey("raw_candles") in repository.asset_graph.get_all_asset_keys()
    check_names = {key.name for key in repository.asset_graph.asset_check_keys}
    assert {"coverage", "ohlc_consistency", "no_duplicate_minutes", "freshness"} <= check_names
