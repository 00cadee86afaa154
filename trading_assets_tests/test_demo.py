import os
import subprocess
import sys
from pathlib import Path

import duckdb

PROJECT = Path(__file__).resolve().parents[1]


def test_demo_runs_offline_into_a_fresh_instance(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "home"),
        "TA_DATA_DIR": str(tmp_path / "data"),
        "TA_MODELS_DIR": str(tmp_path / "models"),
    }
    (tmp_path / "home").mkdir()
    cli = Path(sys.executable).with_name("trading-assets")
    result = subprocess.run(
        [str(cli), "demo", "--days", "2"], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "dagster dev -w workspace.yaml" in result.stdout
    with duckdb.connect(str(tmp_path / "data" / "trading_assets.duckdb"), read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM candles").fetchall()[0][0] == 3 * 3 * 1440
        assert (
            connection.execute("SELECT count(*) FROM features WHERE usable").fetchall()[0][0] == 3 * 2 * 1440
        )
    assert any((tmp_path / "home").iterdir()), "runs were recorded in DAGSTER_HOME"
