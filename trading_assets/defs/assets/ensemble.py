"""`ensemble`: the weighted ensemble of a symbol's promoted members, and the comparison of every model type."""

from pathlib import Path

import dagster as dg

from trading_assets.defs.automation import ENSEMBLE_FOLLOWS_PROMOTIONS
from trading_assets.defs.metadata import ASSET_OWNERS, markdown_records
from trading_assets.defs.partitions import Partitions
from trading_assets.defs.resources import ModelStoreResource
from trading_assets.defs.run_guard import guard_step
from trading_assets.ml.model_types import CATALOGUE, DEFAULT_WEIGHTS, UnknownModelType, canonical_weights
from trading_assets.promotion.ensemble import EnsembleSpec, NoPromotedMembers, build_ensemble
from trading_assets.promotion.registry import current
from trading_assets.promotion.service import exclusion_reason, latest_trained


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
    comparison = [_comparison_row(models_dir, symbol, model_type, spec) for model_type in CATALOGUE]
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


def _comparison_row(models_dir: Path, symbol: str, model_type: str, spec: EnsembleSpec) -> dict[str, object]:
    """One model type of `symbol`: the promoted version and its weight and test figures, or, for a type left
    out, the figures of its newest trained model and why it is out (its failed blocking gates, if any), both
    from the artifacts' manifests."""
    weights = {member.model_type: member.weight for member in spec.members}
    promoted = current(models_dir, model_type, symbol) if model_type in weights else None
    manifest = promoted.manifest if promoted is not None else latest_trained(models_dir, model_type, symbol)
    metrics = manifest["metrics"] if manifest else {}
    calibrated, backtest = metrics.get("calibrated", {}), metrics.get("backtest", {})
    return {
        "model": model_type,
        "promoted version": promoted.version if promoted else None,
        "weight": weights.get(model_type),
        "accuracy": calibrated.get("accuracy"),
        "ECE": calibrated.get("ece"),
        "after-fee return": backtest.get("return"),
        "status": "member" if promoted else exclusion_reason(models_dir, model_type, symbol),
    }
