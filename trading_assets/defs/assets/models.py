"""Per-symbol models with blocking promotion gates, the promoted models, and the ensemble.

`<type>_model` trains on all stored features of its symbol, reports test metrics and judges the gates of
`ml.gates.GATES` (accuracy, calibration, skill over naive rules, after-fee economics), each a blocking (ERROR)
check. A failed gate fails the step, so `promoted_<type>_model` downstream is skipped; promotion itself
re-checks the artifact and the gates recorded in its manifest, so nothing that failed a gate is promoted by
any path.
"""

from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from trading_assets.defs.automation import (
    ENSEMBLE_FOLLOWS_PROMOTIONS,
    PROMOTE_AFTER_PASSING_GATES,
    retrain_on_cadence,
)
from trading_assets.defs.metadata import markdown_table
from trading_assets.defs.resources import DuckDBStoreResource, ModelStoreResource
from trading_assets.features.registry import FEATURE_SET_VERSION, MODEL_FEATURES, schema_hash
from trading_assets.features.store import read_feature_matrix
from trading_assets.market.candles import day_bounds
from trading_assets.ml.config import TrainConfig
from trading_assets.ml.gates import GATES, GateResult, GateThresholds
from trading_assets.ml.train import TrainResult, train_model
from trading_assets.partitions import symbol_partitions
from trading_assets.promotion.ensemble import DEFAULT_WEIGHTS, NoPromotedMembers, build_ensemble
from trading_assets.promotion.registry import promote
from trading_assets.settings import load_settings

_settings = load_settings()
MODEL_TYPES = ("lstm", "transformer", "sklearn")
#: Steps tagged with this key share the training slots of the multiprocess executor (definitions.py),
#: and training steps of all runs share the `training` pool (limit in dagster_home/dagster.yaml).
TRAINING_TAG = "trading_assets/training"
TRAINING_POOL = "training"
#: Trainings that may run at once; each uses cores / TRAINING_SLOTS torch threads.
TRAINING_SLOTS = 2


class ModelRunConfig(dg.Config):
    """Training and gate settings of one model run (defaults: all stored history, settings' gates)."""

    epochs: int = _settings.train_epochs
    batch_size: int = 64
    samples_per_epoch: int = _settings.train_samples_per_epoch
    seq_len: int = 60
    horizon: int = 1
    train_start: str | None = None
    train_end: str | None = None
    seed: int = 0
    min_accuracy: float = _settings.min_accuracy
    max_calibration_error: float = _settings.max_calibration_error
    min_skill_margin: float = _settings.min_skill_margin
    min_excess_return: float = _settings.min_excess_return
    fee_bps: float = _settings.fee_bps
    slippage_bps: float = _settings.slippage_bps

    def thresholds(self) -> GateThresholds:
        return GateThresholds(
            self.min_accuracy, self.max_calibration_error, self.min_skill_margin, self.min_excess_return
        )

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            max_epochs=self.epochs,
            batch_size=self.batch_size,
            samples_per_epoch=self.samples_per_epoch,
            seq_len=self.seq_len,
            horizon=self.horizon,
            seed=self.seed,
            fee_bps=self.fee_bps,
            slippage_bps=self.slippage_bps,
            concurrent_trainings=TRAINING_SLOTS,
        )


def _gate_specs(asset: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            name, asset=asset, description=description, blocking=True, partitions_def=symbol_partitions
        )
        for name, description in GATES.items()
    ]


def _gate_result(gate: GateResult) -> dg.AssetCheckResult:
    low, high = gate.interval
    return dg.AssetCheckResult(
        check_name=gate.name,
        passed=gate.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "measured": gate.measured,
            "threshold": gate.threshold,
            "samples": gate.samples,
            "interval_low": low,
            "interval_high": high,
        },
        description=gate.describe(),
    )


def _training_range(config: ModelRunConfig) -> tuple[date, date]:
    start = date.fromisoformat(config.train_start) if config.train_start else _settings.history_start
    end = date.fromisoformat(config.train_end) if config.train_end else date.today()
    return start, end


def _model_metadata(result: TrainResult) -> dict[str, object]:
    calibrated, uncalibrated = result.metrics["calibrated"], result.metrics["uncalibrated"]
    manifest = result.manifest
    return {
        "test_accuracy": calibrated["accuracy"],
        "test_ece": calibrated["ece"],
        "test_brier": calibrated["brier"],
        "test_log_loss": calibrated["log_loss"],
        "test_roc_auc": calibrated["roc_auc"],
        "test_samples": calibrated["samples"],
        "base_rate": calibrated["base_rate"],
        "uncalibrated_accuracy": uncalibrated["accuracy"],
        "uncalibrated_ece": uncalibrated["ece"],
        "temperature": manifest["calibration"]["temperature"],
        "confusion_matrix": dg.MetadataValue.json(calibrated["confusion_matrix"]),
        "parameter_count": result.parameter_count,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "training_seconds": round(result.seconds, 2),
        "samples_per_s": round(result.samples_per_s, 1),
        "artifact_path": dg.MetadataValue.path(str(result.artifact_dir)),
        "schema_hash": manifest["schema_hash"],
        "data_ranges": dg.MetadataValue.json(manifest["data_ranges"]),
        "signal_backtest": dg.MetadataValue.json(result.metrics["backtest"]),
        "learning_curve": _table(result.learning_curve),
        "reliability_diagram": _table(result.reliability_table),
    }


def _table(rows: list[dict[str, float]]) -> dg.MetadataValue:
    return markdown_table(pl.DataFrame(rows)) if rows else dg.MetadataValue.md("(empty)")


def build_model_asset(model_type: str) -> dg.AssetsDefinition:
    key = dg.AssetKey(f"{model_type}_model")

    @dg.asset(
        key=key,
        description=f"The {model_type} direction model of one symbol, trained on all its stored features.",
        group_name="models",
        partitions_def=symbol_partitions,
        deps=[
            dg.AssetDep(
                "features",
                partition_mapping=dg.MultiToSingleDimensionPartitionMapping(
                    partition_dimension_name="symbol"
                ),
            )
        ],
        check_specs=_gate_specs(key),
        op_tags={TRAINING_TAG: model_type},
        pool=TRAINING_POOL,
        automation_condition=retrain_on_cadence(_settings.retrain_cron),
        kinds={"pytorch" if model_type != "sklearn" else "scikitlearn"},
    )
    def model_asset(
        context: dg.AssetExecutionContext,
        config: ModelRunConfig,
        store: DuckDBStoreResource,
        model_store: ModelStoreResource,
    ):
        symbol = context.partition_key
        first, last = _training_range(config)
        matrix = read_feature_matrix(store.db_path, symbol, day_bounds(first)[0], day_bounds(last)[1])
        context.log.info(
            f"{model_type} {symbol}: {len(matrix.x)} feature rows, {int(matrix.usable.sum())} usable"
        )
        result = train_model(
            model_type, symbol, matrix.x, matrix.close, matrix.usable, matrix.minutes,
            list(MODEL_FEATURES), FEATURE_SET_VERSION, schema_hash(), config.train_config(),
            model_store.models_dir, progress=lambda p: context.log.info(f"{model_type} {symbol}: {p}"),
            observed=matrix.observed, thresholds=config.thresholds(),
        )  # fmt: skip
        yield dg.MaterializeResult(metadata=_model_metadata(result))
        for gate in result.gates:
            yield _gate_result(gate)

    return model_asset


def _latest_artifact(context: dg.AssetExecutionContext, model_key: dg.AssetKey, symbol: str) -> Path:
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=model_key, asset_partitions=[symbol]), limit=1
    ).records
    if not records:
        raise dg.Failure(f"{model_key.to_user_string()} has no materialization for {symbol}: train it first")
    return Path(records[0].asset_materialization.metadata["artifact_path"].value)


def build_promoted_asset(model_type: str) -> dg.AssetsDefinition:
    model_key = dg.AssetKey(f"{model_type}_model")

    @dg.asset(
        key=dg.AssetKey(f"promoted_{model_type}_model"),
        description=f"The {model_type} model in service for one symbol (only models that passed their gates).",
        group_name="promotion",
        partitions_def=symbol_partitions,
        deps=[model_key],
        automation_condition=PROMOTE_AFTER_PASSING_GATES,
    )
    def promoted_asset(
        context: dg.AssetExecutionContext, model_store: ModelStoreResource
    ) -> dg.MaterializeResult:
        symbol = context.partition_key
        artifact = _latest_artifact(context, model_key, symbol)
        promoted = promote(
            artifact, model_store.models_dir, list(MODEL_FEATURES), schema_hash(),
            promoted_by=f"dagster run {context.run.run_id}",
        )  # fmt: skip
        metrics = promoted.manifest["metrics"]["calibrated"]
        return dg.MaterializeResult(
            metadata={
                "version": promoted.version,
                "promoted_path": dg.MetadataValue.path(str(promoted.directory)),
                "source_artifact": dg.MetadataValue.path(str(artifact)),
                "test_accuracy": metrics["accuracy"],
                "test_ece": metrics["ece"],
                "schema_hash": promoted.manifest["schema_hash"],
            }
        )

    return promoted_asset


class EnsembleConfig(dg.Config):
    lstm_weight: float = DEFAULT_WEIGHTS["lstm"]
    transformer_weight: float = DEFAULT_WEIGHTS["transformer"]
    sklearn_weight: float = DEFAULT_WEIGHTS["sklearn"]


@dg.asset(
    description="Weighted ensemble of the symbol's promoted members (weights renormalised over them).",
    group_name="promotion",
    partitions_def=symbol_partitions,
    deps=[dg.AssetKey(f"promoted_{t}_model") for t in MODEL_TYPES],
    automation_condition=ENSEMBLE_FOLLOWS_PROMOTIONS,
)
def ensemble(
    context: dg.AssetExecutionContext, config: EnsembleConfig, model_store: ModelStoreResource
) -> dg.MaterializeResult:
    symbol = context.partition_key
    weights = {
        "lstm": config.lstm_weight,
        "transformer": config.transformer_weight,
        "sklearn": config.sklearn_weight,
    }
    try:
        spec = build_ensemble(model_store.models_dir, symbol, weights)
    except NoPromotedMembers as error:
        raise dg.Failure(description=str(error)) from error
    return dg.MaterializeResult(
        metadata={
            "members": dg.MetadataValue.json([m.__dict__ for m in spec.members]),
            "weights": dg.MetadataValue.json(spec.weights),
            "schema_hash": spec.schema_hash,
        }
    )


model_assets = [build_model_asset(t) for t in MODEL_TYPES]
promoted_assets = [build_promoted_asset(t) for t in MODEL_TYPES]
