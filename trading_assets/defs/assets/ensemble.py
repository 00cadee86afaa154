"""`ensemble`: the weighted ensemble of a symbol's promoted members, and the comparison of every model type."""

from pathlib import Path

import dagster as dg

from trading_assets.defs.automation import ENSEMBLE_FOLLOWS_PROMOTIONS
from trading_assets.defs.dagster_private import FINISHED_CHECK_STATUSES, PartitionKeyFilter
from trading_assets.defs.metadata import ASSET_OWNERS, markdown_records
from trading_assets.defs.partitions import Partitions
from trading_assets.defs.resources import ModelStoreResource
from trading_assets.defs.run_guard import guard_step
from trading_assets.ml.gates import GATES
from trading_assets.ml.model_types import CATALOGUE, DEFAULT_WEIGHTS, UnknownModelType, canonical_weights
from trading_assets.promotion.ensemble import EnsembleSpec, NoPromotedMembers, build_ensemble
from trading_assets.promotion.registry import current


class EnsembleConfig(dg.Config):
    """Weight of each model type (renormalised over the promoted members); a former type name is accepted."""

    weights: dict[str, float] = dict(DEFAULT_WEIGHTS)


def build_ensemble_asset(partitions: Partitions) -> dg.AssetsDefinition:
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
