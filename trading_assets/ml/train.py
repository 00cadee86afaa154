"""Training: `train(matrix, spec)` trains, calibrates, judges on walk-forward evidence and writes one artifact;
`train_symbol` reads a symbol's stored features for it (the Dagster model asset, the CLI and the benchmarks)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trading_assets.features.provenance import data_snapshot
from trading_assets.features.registry import FEATURE_SET_VERSION, MODEL_FEATURES
from trading_assets.features.registry import schema_hash as registry_schema_hash
from trading_assets.features.store import FeatureMatrix, read_feature_matrix
from trading_assets.market.candles import day_bounds
from trading_assets.ml import metrics
from trading_assets.ml.artifacts import (
    ModelArtifactError,
    artifact_dir,
    code_version,
    library_versions,
    new_version,
    write_artifact,
)
from trading_assets.ml.config import TrainConfig
from trading_assets.ml.data import (
    Samples,
    Scaler,
    Splits,
    calibration_windows,
    chronological_splits,
    fit_scaler,
    make_samples,
)
from trading_assets.ml.evaluation import ChampionCalls, evidence_report
from trading_assets.ml.gates import GateResult, evaluate_gates, gate_record
from trading_assets.ml.inference import LoadedModel, load_model
from trading_assets.ml.model_types import CATALOGUE, MODEL_TYPES
from trading_assets.ml.policy import CostPolicy, PromotionPolicy
from trading_assets.ml.walk_forward import walk_forward
from trading_assets.store.duckdb_store import Store

if TYPE_CHECKING:  # torch's modules: imported where a model trains, not with the code location
    from trading_assets.ml.fit import Fitted, ProgressCallback

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSpec:
    """What to train and how to judge it; everything but the data.

    `parent`: with `config.warm_start`, the artifact to fine-tune (`warm_start`); `champion`: the artifact in
    service for the symbol, the rival a candidate must beat (None: none in service). `feature_set_version` and
    `schema_hash` describe the matrix's columns (default: the registry's model features).
    """

    model_type: str
    symbol: str
    models_dir: Path
    config: TrainConfig = TrainConfig()
    policy: PromotionPolicy = PromotionPolicy()
    costs: CostPolicy = CostPolicy(fee_bps=10.0)
    parent: Path | None = None
    champion: Path | None = None
    feature_set_version: str = FEATURE_SET_VERSION
    schema_hash: str = field(default_factory=registry_schema_hash)


@dataclass(frozen=True)
class TrainResult:
    artifact_dir: Path
    manifest: dict[str, Any]
    metrics: dict[str, Any]  # the evidence report: pooled folds, skill, backtest, per-fold figures
    gates: list[GateResult]
    learning_curve: list[dict[str, float]]
    reliability_table: list[dict[str, float]]  # calibrated pooled fold probabilities
    epochs_run: int
    best_epoch: int
    seconds: float
    samples_per_s: float
    parameter_count: int


def train_symbol(
    db_path: Store,
    first_day: date,
    last_day: date,
    spec: TrainSpec,
    progress: ProgressCallback | None = None,
    log: Callable[[str], None] | None = None,
    before_write: Callable[[], None] | None = None,
) -> TrainResult:
    """`train` on the stored model features of `spec.symbol` from `first_day` to `last_day` (inclusive, UTC);
    `log` hears how many rows it read."""
    matrix = read_feature_matrix(db_path, spec.symbol, day_bounds(first_day)[0], day_bounds(last_day)[1])
    if log is not None:
        log(
            f"{spec.model_type} {spec.symbol}: {len(matrix.x)} feature rows, {int(matrix.usable.sum())} usable"
        )
    return train(matrix, spec, progress, rows_are_scratch=True, before_write=before_write)


def train(
    matrix: FeatureMatrix,
    spec: TrainSpec,
    progress: ProgressCallback | None = None,
    rows_are_scratch: bool = False,
    before_write: Callable[[], None] | None = None,
) -> TrainResult:
    """Train one model on one symbol's feature matrix, calibrate it, judge it on walk-forward evidence and
    write its artifact (the policy, costs and gate results go into its manifest).

    A sample whose last row or label row was filled across a gap (`matrix.observed` False) is used nowhere:
    its label would be "no move" by construction. rows_are_scratch: the caller read float32 `matrix.x` for
    this training alone, so it is standardised in place (one copy of the rows less: ~130 MB at two years).
    before_write: called last before the artifact is written; what it raises leaves no artifact.
    """
    _check_inputs(spec, matrix)
    started = time.perf_counter()
    trained_on = data_snapshot(matrix)  # before `x` is standardised in place
    fit = _fit_and_calibrate(matrix, spec, progress, rows_are_scratch)
    report = _evidence(matrix, spec, fit)
    gates = evaluate_gates(report, spec.policy)
    manifest = _manifest(matrix, spec, fit, trained_on, report, gates)
    target = artifact_dir(spec.models_dir, spec.model_type, spec.symbol, manifest["trained_at"])
    if before_write is not None:
        before_write()
    write_artifact(target, fit.fitted.weights, manifest, fit.fitted.is_torch)
    return _result(target, manifest, gates, fit.fitted, time.perf_counter() - started)


@dataclass(frozen=True)
class _Fit:
    """A model fitted on one matrix: the training config it ran with (warm or cold), the splits, the scaler
    and the rows it scaled, the fit and its calibration temperature, the parent it was fine-tuned from and
    the champion's calls on the test samples."""

    config: TrainConfig
    splits: Splits
    scaler: Scaler
    scaled: np.ndarray
    fitted: Fitted
    temperature: float
    start: WarmStart | None
    champion: ChampionCalls | None


def _fit_and_calibrate(
    matrix: FeatureMatrix, spec: TrainSpec, progress: ProgressCallback | None, rows_are_scratch: bool
) -> _Fit:
    """Split the samples in time, warm start from the parent when it fits, scale, fit the model type and
    calibrate its logits on the validation part."""
    config = spec.config
    samples = make_samples(
        matrix.close, matrix.usable & matrix.observed, config.seq_len, config.horizon, config.dead_band
    )
    splits = chronological_splits(
        samples, config.train_fraction, config.val_fraction, purge=config.seq_len + config.horizon
    )
    champion = champion_calls(spec, matrix, splits.test.ends) if spec.champion else None
    start = warm_start(spec, list(matrix.names)) if config.warm_start else None
    config = config.warm() if start else replace(config, warm_start=False)
    scaler = start.model.scaler if start else fit_scaler(matrix.x, splits.train, config.seq_len)
    scaled = scaler.transform(matrix.x, in_place=rows_are_scratch and matrix.x.dtype == np.float32)
    replayed = _replayed(start, splits.train, matrix.minutes, config) if start else 0
    initial = start.model.model.module.state_dict() if start else None  # a torch scorer's network
    fitted = CATALOGUE[spec.model_type].fit(scaled, splits, config, progress, initial, replayed)
    temperature = metrics.fit_temperature(fitted.val_logits, calibration_windows(splits.val, config).labels)
    return _Fit(config, splits, scaler, scaled, fitted, temperature, start, champion)


def _evidence(matrix: FeatureMatrix, spec: TrainSpec, fit: _Fit) -> dict[str, Any]:
    """The evidence report of the walk-forward folds (with each fold's first and last minute)."""
    config, splits = fit.config, fit.splits
    folds = walk_forward(
        spec.model_type, fit.scaled, splits, config, spec.policy.folds, fit.fitted, fit.temperature
    )
    report = evidence_report(
        folds,
        matrix.close,
        (splits.train, splits.val),
        config.horizon,
        spec.policy,
        spec.costs,
        comparisons=len(CATALOGUE),
        champion=fit.champion,
        calibration_bins=config.calibration_bins,
        minutes=matrix.minutes,
    )
    _add_fold_minutes(report, matrix.minutes)
    return report


def _manifest(
    matrix: FeatureMatrix,
    spec: TrainSpec,
    fit: _Fit,
    trained_on: dict[str, Any],
    report: dict[str, Any],
    gates: list[GateResult],
) -> dict[str, Any]:
    """What the artifact records: the model, its features and scaling, calibration, training config and
    data, evidence and gates, learning curve, versions and lineage."""
    config, fitted, start, champion = fit.config, fit.fitted, fit.start, fit.champion
    return {
        "model_type": spec.model_type,
        "symbol": spec.symbol,
        "architecture": fitted.architecture,
        "parameter_count": fitted.architecture["parameter_count"],
        "feature_names": list(matrix.names),
        "feature_set_version": spec.feature_set_version,
        "schema_hash": spec.schema_hash,
        "seq_len": config.seq_len,
        "horizon": config.horizon,
        "scaler": fit.scaler.to_dict(list(matrix.names)),
        "calibration": {"method": "temperature", "temperature": fit.temperature},
        "training_config": config.to_dict(),
        "data_ranges": {
            name: _range(getattr(fit.splits, name), matrix.minutes, config)
            for name in ("train", "val", "test")
        },
        "data_snapshot": trained_on,
        "metrics": report,
        "gates": gate_record(gates, spec.policy, spec.costs),
        "learning_curve": fitted.outcome.learning_curve,
        "epochs_run": fitted.outcome.epochs_run,
        "best_epoch": fitted.outcome.best_epoch,
        "library_versions": library_versions(),
        "code_version": code_version(),
        "trained_at": new_version(),
        "training_mode": "warm" if start else "cold",
        "parent_version": start.version if start else None,
        "champion_version": champion.version if champion else None,
        "windows_seen": fitted.outcome.windows_seen,
    }


def _result(
    target: Path, manifest: dict[str, Any], gates: list[GateResult], fitted: Fitted, seconds: float
) -> TrainResult:
    """What `train` hands back: the artifact written, its evidence and gates, and how the fit went."""
    report = manifest["metrics"]
    return TrainResult(
        artifact_dir=target,
        manifest=manifest,
        metrics=report,
        gates=gates,
        learning_curve=fitted.outcome.learning_curve,
        reliability_table=report["reliability_table"],
        epochs_run=fitted.outcome.epochs_run,
        best_epoch=fitted.outcome.best_epoch,
        seconds=seconds,
        samples_per_s=fitted.outcome.samples_per_s,
        parameter_count=fitted.architecture["parameter_count"],
    )


def _add_fold_minutes(report: dict[str, Any], minutes: np.ndarray) -> None:
    """Each fold's first and last sample minute (UTC), for the UI and the manifest."""
    for fold in report["folds"]:
        for key, row in (("first_minute", fold["first_row"]), ("last_minute", fold["last_row"])):
            fold[key] = _minute_text(minutes[row])


def _minute_text(minute: np.datetime64) -> str:
    """A row's minute as the manifest writes it: `2024-01-02T03:04Z`."""
    return str(np.datetime_as_string(np.datetime64(minute).astype("datetime64[m]"))) + "Z"


def _check_inputs(spec: TrainSpec, matrix: FeatureMatrix) -> None:
    if spec.model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}, not {spec.model_type!r}")
    if spec.schema_hash == registry_schema_hash() and tuple(matrix.names) != MODEL_FEATURES:
        raise ValueError(
            f"{spec.symbol}: the feature matrix holds {list(matrix.names)}, not the model features"
        )
    x = matrix.x
    if x.ndim != 2 or x.shape[1] != len(matrix.names):
        raise ValueError(f"x has shape {x.shape} but {len(matrix.names)} feature names were given")
    lengths = {len(x), len(matrix.close), len(matrix.usable), len(matrix.observed), len(matrix.minutes)}
    if len(lengths) != 1:
        raise ValueError(f"the feature matrix's columns differ in length: {sorted(lengths)}")


@dataclass(frozen=True)
class WarmStart:
    version: str
    model: LoadedModel


def warm_start(spec: TrainSpec, feature_names: list[str]) -> WarmStart | None:
    """The parent to fine-tune, or None (a cold training, with a log line saying why)."""
    model_type, parent, config = spec.model_type, spec.parent, spec.config
    why = None
    if parent is None:
        why = "no model in service"
    elif CATALOGUE[model_type].build is None:
        why = f"{model_type} models always train cold"
    else:
        try:
            loaded = load_model(
                parent, feature_names, spec.schema_hash, symbol=spec.symbol, model_type=model_type
            )
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
    logger.info("%s %s: training cold: %s", model_type, spec.symbol, why)
    return None


def champion_calls(spec: TrainSpec, matrix: FeatureMatrix, ends: np.ndarray) -> ChampionCalls:
    """The model in service scored on the evaluation samples `ends` (raw rows: before scaling), with the
    samples it never saw: windows that start after its validation part."""
    assert spec.champion is not None
    version = Path(spec.champion).name
    none = np.zeros(len(ends), dtype=bool)
    try:
        loaded = load_model(
            spec.champion,
            list(matrix.names),
            spec.schema_hash,
            symbol=spec.symbol,
            model_type=spec.model_type,
        )
    except ModelArtifactError as error:
        return ChampionCalls(version, none, none, f"model in service not comparable: {error}")
    if loaded.manifest["horizon"] != spec.config.horizon:
        return ChampionCalls(
            version, none, none, f"model in service predicts horizon {loaded.manifest['horizon']}"
        )
    seen_until = np.datetime64(loaded.manifest["data_ranges"]["val"]["last_minute"].rstrip("Z"), "m")
    unseen = matrix.minutes[ends - spec.config.seq_len + 1].astype("datetime64[m]") > seen_until
    unseen &= ends >= loaded.seq_len - 1
    up = np.zeros(len(ends), dtype=bool)
    offsets = np.arange(1 - loaded.seq_len, 1)
    for start in range(0, len(ends), 2048):
        batch = ends[start : start + 2048]
        up[start : start + len(batch)] = loaded.predict_proba(matrix.x[batch[:, None] + offsets]) > 0.5
    note = "" if unseen.any() else f"model in service {version} saw every evaluation sample"
    return ChampionCalls(version, up, unseen, note)


def _replayed(start: WarmStart, train: Samples, minutes: np.ndarray | None, config: TrainConfig) -> int:
    """How many of the first training samples the parent trained on: labels up to its last training minute."""
    if minutes is None:
        raise ValueError("a warm start needs the rows' minutes to tell old training windows from new")
    last = np.datetime64(start.model.manifest["data_ranges"]["train"]["last_minute"].rstrip("Z"), "m")
    label_minutes = minutes[train.ends + config.horizon].astype("datetime64[m]")
    return int(np.searchsorted(label_minutes, last, side="right"))


def _range(part: Samples, minutes: np.ndarray | None, config: TrainConfig) -> dict[str, Any]:
    """Rows a split covers, from its first window's first row to its last label's row."""
    first, last = int(part.ends[0]) - config.seq_len + 1, int(part.ends[-1]) + config.horizon
    span: dict[str, Any] = {"samples": len(part.ends), "first_row": first, "last_row": last}
    if minutes is not None:
        span["first_minute"], span["last_minute"] = _minute_text(minutes[first]), _minute_text(minutes[last])
    return span
