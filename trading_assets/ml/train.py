"""`train_model`: the training entry point the Dagster asset and the CLI call."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trading_assets.ml import metrics
from trading_assets.ml.artifacts import artifact_dir, library_versions, new_version, write_artifact
from trading_assets.ml.config import TrainConfig
from trading_assets.ml.data import Samples, chronological_splits, fit_scaler, make_samples
from trading_assets.ml.gates import GateResult, GateThresholds, evaluate_gates, gate_record
from trading_assets.ml.model_types import CATALOGUE, MODEL_TYPES
from trading_assets.ml.trainer import ProgressCallback


@dataclass(frozen=True)
class TrainResult:
    artifact_dir: Path
    manifest: dict[str, Any]
    metrics: dict[str, Any]  # {"uncalibrated": ..., "calibrated": ..., "skill": ..., "backtest": ...}
    gates: list[GateResult]
    learning_curve: list[dict[str, float]]
    reliability_table: list[dict[str, float]]  # calibrated test probabilities
    epochs_run: int
    best_epoch: int
    seconds: float
    samples_per_s: float
    parameter_count: int


def train_model(
    model_type: str,
    symbol: str,
    x: np.ndarray,
    close: np.ndarray,
    usable: np.ndarray,
    minutes: np.ndarray | None,
    feature_names: list[str],
    feature_set_version: str,
    schema_hash: str,
    config: TrainConfig,
    models_dir: Path,
    progress: ProgressCallback | None = None,
    observed: np.ndarray | None = None,
    thresholds: GateThresholds | None = None,
) -> TrainResult:
    """Train one model on one symbol's rows, calibrate it, evaluate and judge it on the test part, write its
    artifact (the gates' thresholds and results go into its manifest).

    x: (rows, features) float32 in row order; close: (rows,) close prices; usable[i]: the window ending at
    row i may be used (no long gap, no warm-up); minutes: optional datetime64 per row for the manifest;
    thresholds: the gates to judge it by (default: `GateThresholds()`);
    observed[i]: row i is a real candle, not a minute filled across a gap (default: all are). A sample whose
    last row or label row was filled is used nowhere: its label would be "no move" by construction.
    """
    _check_inputs(model_type, x, close, usable, feature_names)
    started = time.perf_counter()
    labelled = usable if observed is None else usable & observed
    samples = make_samples(close, labelled, config.seq_len, config.horizon, config.dead_band)
    splits = chronological_splits(
        samples, config.train_fraction, config.val_fraction, purge=config.seq_len + config.horizon
    )
    scaler = fit_scaler(x, splits.train, config.seq_len)
    scaled = scaler.transform(x)
    fitted = CATALOGUE[model_type].fit(scaled, splits, config, progress)
    temperature = metrics.fit_temperature(fitted.val_logits, splits.val.labels)
    report = report_on_test_part(fitted.test_logits, temperature, splits.test, close, config)
    thresholds = thresholds or GateThresholds()
    gates = evaluate_gates(report, thresholds)
    manifest = {
        "model_type": model_type,
        "symbol": symbol,
        "architecture": fitted.architecture,
        "parameter_count": fitted.architecture["parameter_count"],
        "feature_names": list(feature_names),
        "feature_set_version": feature_set_version,
        "schema_hash": schema_hash,
        "seq_len": config.seq_len,
        "horizon": config.horizon,
        "scaler": scaler.to_dict(list(feature_names)),
        "calibration": {"method": "temperature", "temperature": temperature},
        "training_config": config.to_dict(),
        "data_ranges": {
            name: _range(getattr(splits, name), minutes, config) for name in ("train", "val", "test")
        },
        "metrics": report,
        "gates": gate_record(gates, thresholds),
        "learning_curve": fitted.outcome.learning_curve,
        "epochs_run": fitted.outcome.epochs_run,
        "best_epoch": fitted.outcome.best_epoch,
        "library_versions": library_versions(),
        "trained_at": new_version(),
    }
    target = artifact_dir(models_dir, model_type, symbol, manifest["trained_at"])
    write_artifact(target, fitted.weights, manifest, fitted.is_torch)
    return TrainResult(
        artifact_dir=target,
        manifest=manifest,
        metrics=report,
        gates=gates,
        learning_curve=fitted.outcome.learning_curve,
        reliability_table=report["reliability_table"],
        epochs_run=fitted.outcome.epochs_run,
        best_epoch=fitted.outcome.best_epoch,
        seconds=time.perf_counter() - started,
        samples_per_s=fitted.outcome.samples_per_s,
        parameter_count=fitted.architecture["parameter_count"],
    )


def _check_inputs(
    model_type: str, x: np.ndarray, close: np.ndarray, usable: np.ndarray, feature_names: list[str]
) -> None:
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}, not {model_type!r}")
    if x.ndim != 2 or x.shape[1] != len(feature_names):
        raise ValueError(f"x has shape {x.shape} but {len(feature_names)} feature names were given")
    if not len(x) == len(close) == len(usable):
        raise ValueError(f"x, close and usable differ in length: {len(x)}, {len(close)}, {len(usable)}")


def report_on_test_part(
    logits: np.ndarray, temperature: float, test: Samples, close: np.ndarray, config: TrainConfig
) -> dict[str, Any]:
    """Metrics of the calibrated and raw predictions, skill over naive rules, and the after-fee backtest."""
    calibrated = logits / temperature
    probs = metrics.sigmoid(calibrated)
    naive = metrics.naive_forecasts(close, test.ends, test.labels, config.horizon)
    # One period per horizon: every horizon-th test sample trades, so holdings never overlap.
    traded = slice(None, None, config.horizon)
    ends = test.ends[traded]
    period_returns = close[ends + config.horizon] / close[ends] - 1.0
    return {
        "uncalibrated": metrics.classification_metrics(logits, test.labels, config.calibration_bins),
        "calibrated": metrics.classification_metrics(calibrated, test.labels, config.calibration_bins),
        "reliability_table": metrics.reliability_table(probs, test.labels, config.calibration_bins),
        "skill": metrics.skill_report(probs > 0.5, test.labels, naive),
        "backtest": metrics.signal_backtest(
            probs[traded], period_returns, config.fee_bps + config.slippage_bps, config.horizon
        ),
    }


def _range(part: Samples, minutes: np.ndarray | None, config: TrainConfig) -> dict[str, Any]:
    """Rows a split covers, from its first window's first row to its last label's row."""
    first, last = int(part.ends[0]) - config.seq_len + 1, int(part.ends[-1]) + config.horizon
    span: dict[str, Any] = {"samples": len(part.ends), "first_row": first, "last_row": last}
    if minutes is not None:
        span["first_minute"] = str(np.datetime_as_string(minutes[first].astype("datetime64[m]"))) + "Z"
        span["last_minute"] = str(np.datetime_as_string(minutes[last].astype("datetime64[m]"))) + "Z"
    return span
