import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.events import DagsterEventType

from trading_assets.cli import main
from trading_assets.demo import MODEL_TYPES, replay_minutes

PROJECT = Path(__file__).resolve().parents[2]
#: The demo's data depends on its days, so the test pins them: the same result on any date.
PINNED_END_DAY = "2026-11-25"
MAX_TERMINAL_LINES = 60


@pytest.mark.e2e  # the whole demo through the code location
def test_the_demo_runs_the_whole_chain_through_the_code_location_and_ends_in_a_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
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
        timeout=900,
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert len(lines) <= MAX_TERMINAL_LINES, result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    log_files = list(home.glob("demo-*.log"))
    assert len(log_files) == 1 and str(log_files[0]) in lines[0], lines[0]
    assert "ASSET_MATERIALIZATION" in log_files[0].read_text(), "Dagster's events go to the log file"

    print(result.stdout)  # shown when a later assertion fails
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert len(runs) >= 3  # candles, features, models (+ the ensemble when something was promoted)
        assert all(run.remote_job_origin is not None and run.job_name == "__ASSET_JOB" for run in runs)
        (model_run,) = [
            run for run in runs if "lstm_model" in {k.to_user_string() for k in run.asset_selection}
        ]
        passed_blocking_gates = _passed_blocking_gates(instance, model_run.run_id)

    # The output ends in the table of ETH-USD: one row per model whose `promoted` column agrees with the
    # model's blocking checks in the run.
    rows = {line.split()[0]: line.split() for line in lines[-8:] if line.split()}
    for model_type in MODEL_TYPES:
        assert model_type in rows, result.stdout
        promoted_column = rows[model_type][-2]
        assert promoted_column == ("yes" if passed_blocking_gates[model_type] else "no"), result.stdout

    with duckdb.connect(str(tmp_path / "data" / "trading_assets.duckdb"), read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM candles").fetchall()[0][0] == 15 * 1440
        assert connection.execute("SELECT count(*) FROM features WHERE usable").fetchall()[0][0] == 14 * 1440
        tables = {row[0] for row in connection.execute("SHOW TABLES").fetchall()}
        ensemble_rows = "SELECT count(*) FROM signals WHERE member = 'ensemble'"
        signals = connection.execute(ensemble_rows).fetchall()[0][0] if "signals" in tables else 0
    if any(passed_blocking_gates.values()):
        # the dry-run scores three consecutive minutes: the last three of the end day
        assert signals == 3
        for minute in ("23:57", "23:58", "23:59"):
            assert f"{PINNED_END_DAY} {minute}" in result.stdout, result.stdout
    else:
        assert signals == 0 and "dry-run: skipped" in result.stdout, result.stdout


def _passed_blocking_gates(instance: dg.DagsterInstance, run_id: str) -> dict[str, bool]:
    """Per model type: did every blocking check of its model asset pass in the run?"""
    passed = dict.fromkeys(MODEL_TYPES, True)
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.asset_check_evaluation_data
        model_type = evaluation.asset_key.to_user_string().removesuffix("_model")
        if evaluation.blocking and not evaluation.passed:
            passed[model_type] = False
    return passed


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["--days", "0"], "--days 0"),
        (["--epochs", "0"], "--epochs 0"),
        (["--iterations", "-1"], "--iterations -1"),
        (["--sleep-seconds", "-2"], "--sleep-seconds -2"),
        (["--end-day", (datetime.now(UTC).date() + timedelta(days=1)).isoformat()], "--end-day"),
    ],
)
def test_the_demo_refuses_bad_arguments_in_one_line_with_exit_code_2(
    arguments: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(["demo", *arguments])
    except SystemExit as refused:  # argparse's refusals exit; the demo's own return
        code = refused.code
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1, captured.err
    assert all(part in captured.err for part in named.split()), captured.err  # the option and its value


def test_the_dry_run_replays_consecutive_minutes_ending_at_the_end_of_the_last_day() -> None:
    moments = replay_minutes(date(2026, 11, 25), 3)
    assert [moment.isoformat() for moment in moments] == [
        "2026-11-25T23:58:00+00:00",
        "2026-11-25T23:59:00+00:00",
        "2026-11-26T00:00:00+00:00",
    ]
