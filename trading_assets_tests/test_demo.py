import os
import subprocess
import sys
from pathlib import Path

import duckdb

from trading_assets.promotion.registry import current

PROJECT = Path(__file__).resolve().parents[1]
#: The demo's data depends on its days, so the test pins them: the same result on any date.
PINNED_END_DAY = "2026-11-25"


def test_the_demo_runs_the_whole_chain_offline_into_a_fresh_instance(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "home"),
        "TA_DATA_DIR": str(tmp_path / "data"),
        "TA_MODELS_DIR": str(tmp_path / "models"),
        "TA_SYMBOLS": "ETH-USD",  # one symbol keeps the test short; the README's demo runs all three
    }
    cli = Path(sys.executable).with_name("trading-assets")
    result = subprocess.run(
        [str(cli), "demo", "--sleep-seconds", "0", "--end-day", PINNED_END_DAY],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "9/9 checks passed" in result.stdout, result.stdout
    assert result.stdout.count("(no orders placed)") == 3
    for model_type in ("lstm", "transformer", "sklearn"):
        assert current(tmp_path / "models", model_type, "ETH-USD") is not None
    with duckdb.connect(str(tmp_path / "data" / "trading_assets.duckdb"), read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM candles").fetchall()[0][0] == 15 * 1440
        assert connection.execute("SELECT count(*) FROM features WHERE usable").fetchall()[0][0] == 14 * 1440
        assert connection.execute("SELECT count(*) FROM signals").fetchall()[0][0] == 3
    assert any((tmp_path / "home").iterdir()), "runs were recorded in DAGSTER_HOME"
