"""Training entry points: `train_symbol` (a symbol's stored features in, checked artifact out) is the one call
the Dagster model asset, the CLI and the benchmarks use; `train_features` does the same for a feature matrix
in memory; `train_model` is the array-level core both call."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from trading_assets.features.registry import FEATURE_SET_VERSION, MODEL_FEATURES, schema_hash
from trading_assets.features.store import FeatureMatrix, read_feature_matrix
from trading_assets.market.candles import day_bounds
from trading_assets.ml import metrics
from trading_assets.ml.artifacts import (
    ModelArtifactError,
    artifact_dir,
    library_versions,
    new_version,
    write_artifact,
)
from trading_assets.ml.config import TrainConfig
from trading_assets.ml.data import (
    Samples,
    calibration_windows,
    chronological_splits,
    fit_scaler,
    make_samples,
)
from trading_assets.ml.fit import ProgressCallback
from trading_assets.ml.gates import GateResult, GateThresholds, evaluate_gates, gate_record
from trading_assets.ml.inference import LoadedModel, load_model
from trading_assets.ml.model_types import CATALOGUE, MODEL_TYPES

logger = logging.getLogger(__name__)


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


def train_symbol(
    db_path: Path,
    symbol: str,
    model_type: str,
    first_day: date,
    last_day: date,
    config: TrainConfig,
    thresholds: GateThresholds,
    models_dir: Path,
    progress: ProgressCallback | None = None,
    log: Callable[[str], None] | None = None,
    parent: Path | None = None,
) -> TrainResult:
    """Train `model_type` on the stored model features of `symbol` from `first_day` to `last_day` (inclusive),
    judge it by `thresholds` and write its artifact under `models_dir`; `log` hears how many rows it read.
    `parent`: the artifact to fine-tune (a warm retrain), see `train_model`."""
    matrix = read_feature_matrix(db_path, symbol, day_bounds(first_day)[0], day_bounds(last_day)[1])
    if log is not None:
        log(f"{model_type} {symbol}: {len(matrix.x)} feature rows, {int(matrix.usable.sum())} usable")
    return train_features(
        matrix, symbol, model_type, config, thresholds, models_dir, progress, parent, rows_are_scratch=True
    )


def train_features(
    matrix: FeatureMatrix,
    symbol: str,
    model_type: str,
    config: TrainConfig,
    thresholds: GateThresholds,
    models_dir: Path,
    progress: ProgressCallback | None = None,
    parent: Path | None = None,
    rows_are_scratch: bool = False,
) -> TrainResult:
    """`train_model` on a feature matrix of the current feature set (`MODEL_FEATURES`)."""
    if tuple(matrix.names) != MODEL_FEATURES:
        raise ValueError(f"{symbol}: the feature matrix holds {list(matrix.names)}, not the model features")
    return train_model(
        model_type, symbol, matrix.x, matrix.close, matrix.usable, matrix.minutes, list(MODEL_FEATURES),
        FEATURE_SET_VERSION, schema_hash(), config, models_dir, progress=progress, observed=matrix.observed,
        thresholds=thresholds, parent=parent, rows_are_scratch=rows_are_scratch,
    )  # fmt: skip


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
    parent: Path | None = None,
    rows_are_scratch: bool = False,
) -> TrainResult:
    """Train one model on one symbol's rows, calibrate it, evaluate and judge it on the test part, write its
    artifact (the gates' thresholds and results go into its manifest).

    x: (rows, features) float32 in row order; close: (rows,) close prices; usable[i]: the window ending at
    row i may be used (no long gap, no warm-up); minutes: optional datetime64 per row for the manifest;
    thresholds: the gates to judge it by (default: `GateThresholds()`);
    observed[i]: row i is a real candle, not a minute filled across a gap (default: all are). A sample whose
    last row or label row was filled is used nowhere: its label would be "no move" by construction.
    parent: with `config.warm_start`, the artifact (e.g. the promoted version in service) to fine-tune: its
    weights and scaler are the start (`TrainConfig.warm`); a parent of another architecture, feature schema,
    window or type, or one that does not load, means a cold training, said in a log line.
    rows_are_scratch: the caller read float32 `x` for this training alone, so it is standardised in place
    (one copy of the rows less: ~130 MB at two years of one symbol).
    """
    _check_inputs(model_type, x, close, usable, feature_names)
    started = time.perf_counter()
    labelled = usable if observed is None else usable & observed
    samples = make_samples(close, labelled, config.seq_len, config.horizon, config.dead_band)
    splits = chronological_splits(
        samples, config.train_fraction, config.val_fraction, purge=config.seq_len + config.horizon
    )
    start = (
        warm_start(model_type, symbol, parent, feature_names, schema_hash, config)
        if config.warm_start
        else None
    )
    config = config.warm() if start else replace(config, warm_start=False)
    scaler = start.model.scaler if start else fit_scaler(x, splits.train, config.seq_len)
    scaled = scaler.transform(x, in_place=rows_are_scratch and x.dtype == np.float32)
    replayed = _replayed(start, splits.train, minutes, config) if start else 0
    initial = start.model.model.module.state_dict() if start else None  # a torch scorer's network
    fitted = CATALOGUE[model_type].fit(scaled, splits, config, progress, initial, replayed)
    temperature = metrics.fit_temperature(fitted.val_logits, calibration_windows(splits.val, config).labels)
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
        "training_mode": "warm" if start else "cold",
        "parent_version": start.version if start else None,
        "windows_seen": fitted.outcome.windows_seen,
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


@dataclass(frozen=True)
class WarmStart:
    version: str
    model: LoadedModel


def warm_start(
    model_type: str,
    symbol: str,
    parent: Path | None,
    feature_names: list[str],
    schema_hash: str,
    config: TrainConfig,
) -> WarmStart | None:
    """The parent to fine-tune, or None (a cold training, with a log line saying why)."""
    why = None
    if parent is None:
        why = "no model in service"
    elif CATALOGUE[model_type].build is None:
        why = f"{model_type} models always train cold"
    else:
        try:
            loaded = load_model(parent, feature_names, schema_hash, symbol=symbol, model_type=model_type)
        except ModelArtifactError as error:
            why = f"parent not usable: {error}"
        else:
            ours = CATALOGUE[model_type].build(len(feature_names), config.warm())
            if str(ours) != loaded.manifest["architecture"]["summary"]:
                why = f"parent {parent.name} has another architecture"
            elif (loaded.seq_len, loaded.manifest["horizon"]) != (config.seq_len, config.horizon):
                why = (
                    f"parent {parent.name} has seq_len/horizon {loaded.seq_len}/{loaded.manifest['horizon']}"
                )
            elif "first_minute" not in loaded.manifest["data_ranges"]["train"]:
                why = f"parent {parent.name} records no training minutes"
            else:
                return WarmStart(Path(parent).name, loaded)
    logger.info("%s %s: training cold: %s", model_type, symbol, why)
    return None


def _replayed(start: WarmStart, train: Samples, minutes: np.ndarray | None, config: TrainConfig) -> int:
    """How many of the first training samples the parent trained on: labels up to its last training minute."""
    if minutes is None:
        raise ValueError("a warm start needs the rows' minutes to tell old training windows from new")
    last = np.datetime64(start.model.manifest["data_ranges"]["train"]["last_minute"].rstrip("Z"), "m")
    label_minutes = minutes[train.ends + config.horizon].astype("datetime64[m]")
    return int(np.searchsorted(label_minutes, last, side="right"))


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
