"""What a model materialization shows in the UI: gate check results, metrics, tables and charts, and the
observation a candidate that failed a gate leaves on `promoted_<type>_model`."""

import math
from datetime import UTC, datetime, timedelta

import dagster as dg

from trading_assets.defs.metadata import (
    confusion_matrix_table,
    markdown_image,
    markdown_mapping,
    markdown_records,
)
from trading_assets.ml.backtest import MIN_SHARPE_DAYS
from trading_assets.ml.gates import GateResult, blocking_failures, lost_to_champion
from trading_assets.ml.train import TrainResult
from trading_assets.plots import (
    equity_curve_png,
    learning_curve_png,
    model_subject,
    reliability_diagram_png,
)


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
    and charts titled with symbol, model type and version: learning curve, reliability diagram, backtest
    against buy-and-hold. The Sharpe ratio shows only over `MIN_SHARPE_DAYS` days; else why it is withheld."""
    calibrated, uncalibrated = result.metrics["calibrated"], result.metrics["uncalibrated"]
    backtest, manifest = result.metrics["backtest"], result.manifest
    subject = model_subject(manifest["symbol"], manifest["model_type"], manifest["trained_at"])
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
        "sharpe": _sharpe(backtest, "sharpe"),
        "backtest_days": _rounded(backtest["days"]),
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
            {
                **{name: value for name, value in backtest.items() if not isinstance(value, list | dict)},
                "sharpe": _sharpe(backtest, "sharpe"),
                "buy_and_hold_sharpe": _sharpe(backtest, "buy_and_hold_sharpe"),
            },
            header=("backtest (pooled folds)", "value"),
        ),
        "learning_curve": markdown_records(result.learning_curve),
        "learning_curve_chart": markdown_image(
            f"learning curve, {subject}", learning_curve_png(result.learning_curve, subject)
        ),
        "reliability_diagram": markdown_records(result.reliability_table),
        "reliability_chart": markdown_image(
            f"reliability diagram, {subject}", reliability_diagram_png(result.reliability_table, subject)
        ),
        "backtest_chart": markdown_image(
            f"backtest vs buy and hold, {subject}", _backtest_png(backtest, result.metrics["folds"], subject)
        ),
    }


def not_promoted_observation(result: TrainResult, promoted_key: dg.AssetKey) -> dg.AssetObservation | None:
    """What `promoted_<type>_model` records for its symbol when the candidate failed a blocking gate (its
    step is skipped, so without this its page would only say "did not materialize"): which gates failed,
    measured against threshold, and the candidate's artifact. None when every gate passed."""
    failed = blocking_failures(result.gates)
    if not failed:
        return None
    manifest = result.manifest
    return dg.AssetObservation(
        asset_key=promoted_key,
        partition=manifest["symbol"],
        description=_verdict(result.gates),
        metadata={
            "not_promoted": _verdict(result.gates),
            "failed_gates": markdown_records(
                [
                    {
                        "gate": gate.name,
                        "measured": _finite_or_text(gate.measured),
                        "bound": _finite_or_text(gate.bound),
                        "threshold": gate.threshold,
                        "rival": gate.rival or "none",
                        "samples": gate.samples,
                    }
                    for gate in failed
                ]
            ),
            "candidate_version": manifest["trained_at"],
            "candidate_artifact": dg.MetadataValue.path(str(result.artifact_dir)),
        },
    )


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


def _sharpe(backtest: dict, key: str) -> float | str:
    """The annualised Sharpe ratio, or why it is withheld (fewer than `MIN_SHARPE_DAYS` days)."""
    value = backtest.get(key)
    if value is None:
        return f"not reported: {backtest['days']:.3g} days evaluated (< {MIN_SHARPE_DAYS})"
    return _rounded(value)


def _backtest_png(backtest: dict, folds: list[dict], subject: str) -> bytes:
    """The returns of the signal and of buy-and-hold over the pooled walk-forward folds, over time."""
    curves = backtest["equity_curve"]
    costs = backtest["costs"]
    sharpe = _sharpe(backtest, "sharpe")
    note = f"costs {costs['per_side_bps']:g} bps per side; Sharpe " + (
        f"{sharpe:.2f} (annualised)" if isinstance(sharpe, float) else str(sharpe)
    )
    return equity_curve_png(
        _curve_times(curves, folds), curves["strategy"], curves["buy_and_hold"], note, subject
    )


def _curve_times(curves: dict, folds: list[dict]) -> list[datetime]:
    """The UTC times of the curve's points: recorded (`times`), or for a report without them the first
    fold's first minute plus each point's minute offset (exact where the folds have no gap)."""
    if "times" in curves:
        return [_utc_minute(text) for text in curves["times"]]
    start = _utc_minute(folds[0]["first_minute"])
    return [start + timedelta(minutes=offset) for offset in curves["minutes"]]


def _utc_minute(text: str) -> datetime:
    """A minute as the manifest writes it (`2024-01-02T03:04Z`)."""
    return datetime.fromisoformat(text.removesuffix("Z")).replace(tzinfo=UTC)
