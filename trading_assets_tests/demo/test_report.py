import io
from pathlib import Path

import dagster as dg

from trading_assets.demo.report import DemoConsole, parse_epoch_progress, stage_line, symbol_summary
from trading_assets.demo.runs import RunOutcome


def _evaluation(asset: str, name: str, passed: bool, measured: float, blocking: bool = True):
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(asset),
        check_name=name,
        passed=passed,
        metadata={"measured": measured},
        blocking=blocking,
        severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
    )


def test_the_summary_has_a_column_per_check_the_run_evaluated_and_promotion_follows_the_run(
    tmp_path: Path,
) -> None:
    outcome = RunOutcome(
        "abcdef0123",
        dg.DagsterRunStatus.FAILURE,
        10.0,
        evaluations=[
            _evaluation("lstm_model", "accuracy_gate", True, 0.71),
            _evaluation("lstm_model", "skill_gate", False, 0.0123),  # a check this module never names
            _evaluation("lstm_model", "beats_base_rate", True, 0.71, blocking=False),
            _evaluation("logistic_model", "accuracy_gate", True, 0.70),
            _evaluation("logistic_model", "skill_gate", True, 0.05),
        ],
        materialized={
            "lstm_model": {"test_accuracy": dg.FloatMetadataValue(0.71), "test_ece": 0.02},
            "logistic_model": {"backtest_return": dg.FloatMetadataValue(-0.0204)},
            "promoted_logistic_model": {},
        },
    )
    summary = symbol_summary("ETH-USD", ("lstm", "logistic"), outcome, tmp_path)
    terminal = io.StringIO()
    DemoConsole(terminal).summary_table(summary)
    text = terminal.getvalue()
    header = next(line for line in text.splitlines() if line.startswith("model"))
    assert "skill" in header and "beats base rate*" in header
    rows = {
        line.split()[0]: line for line in text.splitlines() if line.split()[:1] in (["lstm"], ["logistic"])
    }
    assert "✗ 0.012" in rows["lstm"] and rows["lstm"].split()[-2] == "no"
    assert "-2.04%" in rows["logistic"] and rows["logistic"].split()[-2] == "yes"
    assert "warns, does not block" in text
    line = stage_line("models ETH-USD", outcome)
    assert (
        line.startswith("✓") and "stopped by failed blocking checks" in line and "4/5 checks passed" in line
    )


def test_training_progress_is_read_from_the_model_assets_log_line() -> None:
    from trading_assets.ml.fit import EpochProgress

    message = EpochProgress(1, 2, 0.62, 0.51, 0.7, 169.9, 24.5).log_line("lstm", "ETH-USD")
    assert message.startswith("lstm ETH-USD: epoch 1/2, loss 0.6200, val loss 0.5100, val acc 0.700")
    assert parse_epoch_progress("lstm ETH-USD: 1,000 feature rows, 998 usable") is None
    assert parse_epoch_progress(message) == (
        "lstm",
        {
            "epoch": 1,
            "max_epochs": 2,
            "loss": 0.62,
            "val_loss": 0.51,
            "val_accuracy": 0.7,
            "samples_per_s": 169.9,
            "eta_s": 24.5,
        },
    )
    assert parse_epoch_progress("lstm ETH-USD: 4000 feature rows, 3900 usable") is None
