"""What a model materialization shows in the UI: gate check results, metrics, tables and charts."""

import math

import dagster as dg

from trading_assets.defs.metadata import (
    confusion_matrix_table,
    markdown_image,
    markdown_mapping,
    markdown_records,
)
from trading_assets.ml.gates import GateResult, blocking_failures, lost_to_champion
from trading_assets.ml.train import TrainResult
from trading_assets.plots import equity_curve_png, learning_curve_png, reliability_diagram_png


def gate_check_result(gate: GateResult) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=gate.name,
        passed=gate.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "measured": _finite_or_text(gate.measured),
            "bound": _finite_or_text(gate.bound),
            "threshold": gate.threshold,
            "samples": gate.samples,
            "rival": gate.rival or "none",
        },
        description=gate.describe(),
    )


def model_metadata(result: TrainResult) -> dict[str, object]:
    """Scalars rounded for the UI (the manifest keeps them exact), structured values as Markdown tables,
    and charts: learning curve, reliability diagram, backtest against buy-and-hold."""
    calibrated, uncalibrated = result.metrics["calibrated"], result.metrics["uncalibrated"]
    backtest, manifest = result.metrics["backtest"], result.manifest
    return {
        "verdict": _verdict(result.gates),
        "test_accuracy": _rounded(calibrated["accuracy"]),
        "test_ece": _rounded(calibrated["ece"]),
        "test_brier": _rounded(calibrated["brier"]),
        "test_log_loss": _rounded(calibrated["log_loss"]),
        "test_roc_auc": _rounded(calibrated["roc_auc"]),
        "test_samples": calibrated["samples"],
        "base_rate": _rounded(calibrated["base_rate"]),
        "uncalibrated_accuracy": _rounded(uncalibrated["accuracy"]),
        "uncalibrated_ece": _rounded(uncalibrated["ece"]),
        "temperature": _rounded(manifest["calibration"]["temperature"]),
        "backtest_return": _rounded(backtest["return"]),
        "buy_and_hold_return": _rounded(backtest["buy_and_hold_return"]),
        "confusion_matrix": confusion_matrix_table(calibrated["confusion_matrix"]),
        "parameter_count": result.parameter_count,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "training_seconds": round(result.seconds, 2),
        "samples_per_s": round(result.samples_per_s, 1),
        "artifact_path": dg.MetadataValue.path(str(result.artifact_dir)),
        "schema_hash": manifest["schema_hash"],
        "data_ranges": markdown_records(
            [{"split": name, **span} for name, span in manifest["data_ranges"].items()]
        ),
        "walk_forward_folds": markdown_records(result.metrics["folds"]),
        "strongest_rival": result.metrics["skill"]["strongest_rival"],
        "fold_accuracies": " / ".join(f"{fold['accuracy']:.3f}" for fold in result.metrics["folds"]),
        "break_even_fee_bps": _finite_or_text(backtest.get("break_even_fee_bps")),
        "signal_backtest": markdown_mapping(
            {name: value for name, value in backtest.items() if not isinstance(value, list | dict)},
            header=("backtest (pooled folds)", "value"),
        ),
        "learning_curve": markdown_records(result.learning_curve),
        "learning_curve_chart": markdown_image("learning curve", learning_curve_png(result.learning_curve)),
        "reliability_diagram": markdown_records(result.reliability_table),
        "reliability_chart": markdown_image(
            "reliability diagram", reliability_diagram_png(result.reliability_table)
        ),
        "backtest_chart": markdown_image("backtest vs buy and hold", _backtest_png(backtest)),
    }


def _finite_or_text(value: float | None) -> float | str:
    """A number for the UI, or why there is none (GraphQL has no infinity: a bound of -inf means too few
    samples for evidence)."""
    if value is None:
        return "none: no fee makes it pay"
    return float(value) if math.isfinite(value) else "no evidence: too few samples for the bound"


def _verdict(gates: list[GateResult]) -> str:
    """First line of the model's metadata: whether it may be promoted, and if not which gates said no."""
    failed = blocking_failures(gates)
    if not failed:
        return f"promotable: all {len(gates)} gates passed"
    if lost_to_champion(gates):
        return "challenger (not promoted: does not beat the model in service): " + failed[0].describe()
    return "NOT promoted: " + "; ".join(gate.describe() for gate in failed)


def _rounded(value: float) -> float:
    return round(float(value), 4)


def _backtest_png(backtest: dict) -> bytes:
    """The equity curves of the signal and of buy-and-hold over the test part."""
    curves = backtest["equity_curve"]
    return equity_curve_png(curves["strategy"], curves["buy_and_hold"], backtest["costs"]["fee_bps"])
