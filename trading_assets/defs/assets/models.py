"""Per-symbol models with blocking promotion gates, the promoted models, and the ensemble.

`<type>_model` trains on all stored features of its symbol, reports test metrics and judges the gates of
`ml.gates.GATES` (accuracy, calibration, skill over naive rules, after-fee economics), each a blocking (ERROR)
check. A failed gate fails the step, so `promoted_<type>_model` downstream is skipped; promotion itself
re-checks the artifact and the gates recorded in its manifest, so nothing that failed a gate is promoted by
any path.
"""

import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

import dagster as dg
from pydantic import Field, create_model

from trading_assets.defs.automation import (
    ENSEMBLE_FOLLOWS_PROMOTIONS,
    PROMOTE_AFTER_PASSING_GATES,
    retrain_on_cadence,
)
from trading_assets.defs.checks import partition_check_specs
from trading_assets.defs.dagster_private import FINISHED_CHECK_STATUSES, PartitionKeyFilter
from trading_assets.defs.metadata import (
    ASSET_OWNERS,
    confusion_matrix_table,
    markdown_image,
    markdown_mapping,
    markdown_records,
)
from trading_assets.defs.partitions import Partitions
from trading_assets.defs.resources import DuckDBStoreResource, ModelStoreResource
from trading_assets.defs.run_guard import guard_step
from trading_assets.features.registry import MODEL_FEATURES, schema_hash
from trading_assets.ml.config import TrainConfig
from trading_assets.ml.gates import GATES, GateResult, blocking_failures, lost_to_champion
from trading_assets.ml.model_types import CATALOGUE, DEFAULT_WEIGHTS, UnknownModelType, canonical_weights
from trading_assets.ml.policy import POLICY_RECORDS, CostPolicy, PolicyError, PromotionPolicy, tightened
from trading_assets.ml.train import TrainResult, TrainSpec, train_symbol
from trading_assets.plots import (
    equity_curve_png,
    learning_curve_png,
    reliability_diagram_png,
)
from trading_assets.promotion.ensemble import EnsembleSpec, NoPromotedMembers, build_ensemble
from trading_assets.promotion.registry import PromotionRefused, current, promote
from trading_assets.settings import Settings

#: Steps tagged with this key share the training slots of the multiprocess executor (definitions.py),
#: and training steps of all runs share the `training` pool (limit in dagster_home/dagster.yaml).
TRAINING_TAG = "trading_assets/training"
TRAINING_POOL = "training"
#: Trainings that may run at once; each uses cores / TRAINING_SLOTS torch threads.
TRAINING_SLOTS = 2


class ModelAssets(NamedTuple):
    models: list[dg.AssetsDefinition]  # `<type>_model`
    promoted: list[dg.AssetsDefinition]  # `promoted_<type>_model`
    ensemble: dg.AssetsDefinition


def build_model_assets(settings: Settings, partitions: Partitions) -> ModelAssets:
    """The model, promotion and ensemble assets per symbol; run config defaults and the retraining cadence
    from the settings."""
    run_config = model_run_config(settings)
    models = [_build_model_asset(t, run_config, partitions, settings) for t in CATALOGUE]
    promoted = [_build_promoted_asset(t, partitions, settings) for t in CATALOGUE]
    return ModelAssets(models, promoted, _build_ensemble(partitions))


class _ModelRunConfig(dg.Config):
    """Training settings of one model run (defaults: all stored history, the settings' epochs and samples).

    `mode`: "cold" trains from scratch; "warm" fine-tunes the promoted model in service on the new data plus
    a replay sample of older data (`TrainConfig.warm_*`), or trains cold, saying why, when there is none or
    it does not fit (another architecture, feature schema or window). The manifest records `parent_version`.
    The policy and cost fields (unset: the deployment's policy, TA_* settings) may only tighten it.
    """

    epochs: int
    batch_size: int = 64
    samples_per_epoch: int
    seq_len: int = 60
    horizon: int = TrainConfig.horizon
    train_start: str | None = None
    train_end: str | None = None
    seed: int = 0
    mode: Literal["cold", "warm"] = "cold"

    def training_range(self, history_start: date) -> tuple[date, date]:
        """From `train_start` (default: `history_start`) to `train_end` (default: today, UTC), inclusive."""
        start = date.fromisoformat(self.train_start) if self.train_start else history_start
        end = date.fromisoformat(self.train_end) if self.train_end else datetime.now(UTC).date()
        return start, end

    def train_config(self, model_type: str) -> TrainConfig:
        """What `model_type` trains with: this run config over the shared defaults, the type's recipe over it."""
        shared = TrainConfig(
            max_epochs=self.epochs,
            batch_size=self.batch_size,
            samples_per_epoch=self.samples_per_epoch,
            seq_len=self.seq_len,
            horizon=self.horizon,
            seed=self.seed,
            concurrent_trainings=TRAINING_SLOTS,
            warm_start=self.mode == "warm",
        )
        return CATALOGUE[model_type].train_config(shared)

    def policy_in_force(self, settings: Settings) -> tuple[PromotionPolicy, CostPolicy]:
        """The settings' policy and costs, tightened by this run config; PolicyError (one line) if it loosens."""
        overrides = {
            record: {name: getattr(self, name, None) for name in record.model_fields}
            for record in POLICY_RECORDS
        }
        return (
            tightened(settings.policy, overrides[PromotionPolicy]),
            tightened(settings.costs_in_force(), overrides[CostPolicy]),
        )


def _policy_fields() -> dict[str, Any]:
    """Each policy and cost field as an optional run config field (unset: the policy in force), its help from
    the one declaration in ml/policy.py."""
    fields: dict[str, Any] = {}
    for record in POLICY_RECORDS:
        for name, info in record.model_fields.items():
            kind = info.annotation if info.annotation is not None else float
            fields[name] = (
                kind | None,
                Field(None, description=f"{info.description}; may only tighten the policy in force"),
            )
    return fields


def model_run_config(settings: Settings) -> type[_ModelRunConfig]:
    """The model assets' run config class, its defaults from `settings` (also what `bench retrain` runs)."""
    return create_model(
        "ModelRunConfig",
        __base__=_ModelRunConfig,
        epochs=(int, settings.train_epochs),
        samples_per_epoch=(int, settings.train_samples_per_epoch),
        **_policy_fields(),
    )


def _gate_result(gate: GateResult) -> dg.AssetCheckResult:
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


def _model_metadata(result: TrainResult) -> dict[str, object]:
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


def _build_model_asset(
    model_type: str, run_config: type[_ModelRunConfig], partitions: Partitions, settings: Settings
) -> dg.AssetsDefinition:
    key = dg.AssetKey(f"{model_type}_model")

    @dg.asset(
        key=key,
        description=f"The {model_type} direction model of one symbol ({CATALOGUE[model_type].description}), "
        "trained on all its stored features.",
        group_name="models",
        partitions_def=partitions.symbol,
        deps=[
            dg.AssetDep(
                "features",
                partition_mapping=dg.MultiToSingleDimensionPartitionMapping(
                    partition_dimension_name="symbol"
                ),
            )
        ],
        check_specs=partition_check_specs(
            key, {name: (description, True) for name, description in GATES.items()}, partitions.symbol
        ),
        op_tags={TRAINING_TAG: model_type},
        pool=TRAINING_POOL,
        automation_condition=retrain_on_cadence(settings.retrain_cron),
        kinds={CATALOGUE[model_type].dagster_kind},
    )
    def model_asset(
        context: dg.AssetExecutionContext,
        config: run_config,
        store: DuckDBStoreResource,
        model_store: ModelStoreResource,
    ):
        symbol = context.partition_key
        run_active = guard_step(context)
        try:
            policy, costs = config.policy_in_force(settings)
        except PolicyError as error:
            raise dg.Failure(description=f"{model_type} {symbol}: {error}") from None
        in_service = current(model_store.models_dir, model_type, symbol)
        spec = TrainSpec(
            model_type, symbol, model_store.models_dir, config.train_config(model_type), policy, costs,
            parent=in_service.directory if in_service and config.mode == "warm" else None,
            champion=in_service.directory if in_service else None,
        )  # fmt: skip

        def progress(report: object) -> None:
            run_active()  # a training of a dead or failed run stops at its next progress report
            context.log.info(f"{model_type} {symbol}: {report}")

        result = train_symbol(
            store.db_path, *config.training_range(settings.history_start), spec,
            progress=progress, log=context.log.info, before_write=run_active,
        )  # fmt: skip
        context.log.info(
            f"{model_type} {symbol}: {result.manifest['training_mode']} training"
            + (f" from {result.manifest['parent_version']}" if result.manifest["parent_version"] else "")
        )
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


def _build_promoted_asset(model_type: str, partitions: Partitions, settings: Settings) -> dg.AssetsDefinition:
    model_key = dg.AssetKey(f"{model_type}_model")

    @dg.asset(
        key=dg.AssetKey(f"promoted_{model_type}_model"),
        description=(
            f"The {model_type} model in service for one symbol. Skipped when a blocking gate of "
            f"{model_type}_model failed: that model's `verdict` metadata and its gate alert name the gate."
        ),
        group_name="promotion",
        partitions_def=partitions.symbol,
        deps=[model_key],
        automation_condition=PROMOTE_AFTER_PASSING_GATES,
    )
    def promoted_asset(
        context: dg.AssetExecutionContext, model_store: ModelStoreResource
    ) -> dg.MaterializeResult:
        symbol = context.partition_key
        run_active = guard_step(context)
        artifact = _latest_artifact(context, model_key, symbol)
        run_active()
        try:
            promoted = promote(
                artifact, model_store.models_dir, list(MODEL_FEATURES), schema_hash(),
                promoted_by=f"dagster run {context.run.run_id}",
                policy=settings.policy, costs=settings.costs_in_force(),
            )  # fmt: skip
        except PromotionRefused as error:
            raise dg.Failure(description=str(error)) from None
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
    """Weight of each model type (renormalised over the promoted members); a former type name is accepted."""

    weights: dict[str, float] = dict(DEFAULT_WEIGHTS)


def _build_ensemble(partitions: Partitions) -> dg.AssetsDefinition:
    @dg.asset(
        description="Weighted ensemble of the symbol's promoted members (weights renormalised over them); its "
        "`model_comparison` table shows every model type: promoted version, weight, metrics, or why it is out.",
        group_name="promotion",
        partitions_def=partitions.symbol,
        deps=[dg.AssetKey(f"promoted_{t}_model") for t in CATALOGUE],
        automation_condition=ENSEMBLE_FOLLOWS_PROMOTIONS,
        owners=ASSET_OWNERS,
    )
    def ensemble(
        context: dg.AssetExecutionContext, config: EnsembleConfig, model_store: ModelStoreResource
    ) -> dg.MaterializeResult:
        return _ensemble(context, config, model_store.models_dir)

    return ensemble


def _ensemble(
    context: dg.AssetExecutionContext, config: EnsembleConfig, models_dir: Path
) -> dg.MaterializeResult:
    symbol = context.partition_key
    run_active = guard_step(context)
    try:
        weights = canonical_weights(config.weights)
    except UnknownModelType as error:
        raise dg.Failure(description=f"ensemble config `weights` of {symbol}: {error}") from error
    run_active()
    try:
        spec = build_ensemble(models_dir, symbol, weights)
    except NoPromotedMembers as error:
        raise dg.Failure(description=str(error)) from error
    comparison = [
        _comparison_row(context.instance, models_dir, symbol, model_type, spec) for model_type in CATALOGUE
    ]
    return dg.MaterializeResult(
        metadata={
            "model_comparison": markdown_records(comparison),
            "members": markdown_records(
                [
                    {"model": m.model_type, "version": m.version_at_build, "weight": m.weight}
                    for m in spec.members
                ]
            ),
            "excluded": ", ".join(row["model"] for row in comparison if row["weight"] is None) or "none",
            "schema_hash": spec.schema_hash,
        }
    )


def _comparison_row(
    instance: dg.DagsterInstance, models_dir: Path, symbol: str, model_type: str, spec: EnsembleSpec
) -> dict[str, object]:
    """One model type of `symbol`: the promoted version and its weight and test figures, or, for a type left
    out, the figures of its latest trained model and why it is out (its failed blocking gates, if any)."""
    weights = {member.model_type: member.weight for member in spec.members}
    promoted = current(models_dir, model_type, symbol) if model_type in weights else None
    if promoted is not None:
        metrics, backtest = (
            promoted.manifest["metrics"]["calibrated"],
            promoted.manifest["metrics"]["backtest"],
        )
        figures = (metrics["accuracy"], metrics["ece"], backtest["return"])
        version, status = promoted.version, "member"
    else:
        figures = _latest_model_figures(instance, model_type, symbol)
        version, status = None, _exclusion_reason(instance, model_type, symbol)
    accuracy, ece, after_fee_return = figures
    return {
        "model": model_type,
        "promoted version": version,
        "weight": weights.get(model_type),
        "accuracy": accuracy,
        "ECE": ece,
        "after-fee return": after_fee_return,
        "status": status,
    }


def _latest_model_figures(
    instance: dg.DagsterInstance, model_type: str, symbol: str
) -> tuple[float | None, float | None, float | None]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(f"{model_type}_model"), asset_partitions=[symbol]),
        limit=1,
    ).records
    metadata = records[0].asset_materialization.metadata if records else {}
    return tuple(  # type: ignore[return-value]
        metadata[name].value if name in metadata else None
        for name in ("test_accuracy", "test_ece", "backtest_return")
    )


def _exclusion_reason(instance: dg.DagsterInstance, model_type: str, symbol: str) -> str:
    """The latest model's failed blocking gates (`accuracy_gate FAILED: measured ..., threshold ...`), or
    'not trained' / 'not promoted'."""
    asset = dg.AssetKey(f"{model_type}_model")
    failed, evaluated = [], False
    for gate in GATES:  # every gate is a blocking check
        records = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(asset, gate),
            limit=1,
            status=FINISHED_CHECK_STATUSES,
            partition_filter=PartitionKeyFilter(key=symbol),
        )
        evaluation = (
            records[0].event.dagster_event.event_specific_data if records and records[0].event else None
        )
        evaluated = evaluated or evaluation is not None
        if evaluation is not None and not evaluation.passed:
            failed.append(evaluation.description or f"{gate} failed")
    if failed:
        return "excluded: " + "; ".join(failed)
    return "not promoted" if evaluated else "not trained"
