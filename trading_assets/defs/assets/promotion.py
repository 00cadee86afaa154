"""`promoted_<type>_model`: the model in service per symbol, promoted after its blocking gates passed.

Promotion re-checks the artifact and the gates recorded in its manifest (`promotion.registry.promote`), so
nothing that failed a gate is promoted by any path.
"""

from pathlib import Path

import dagster as dg

from trading_assets.defs.automation import PROMOTE_AFTER_PASSING_GATES
from trading_assets.defs.partitions import Partitions
from trading_assets.defs.resources import ModelStoreResource
from trading_assets.defs.run_guard import guard_step
from trading_assets.features.registry import MODEL_FEATURES, schema_hash
from trading_assets.promotion.registry import PromotionRefused, promote
from trading_assets.settings import Settings


def _latest_artifact(context: dg.AssetExecutionContext, model_key: dg.AssetKey, symbol: str) -> Path:
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=model_key, asset_partitions=[symbol]), limit=1
    ).records
    if not records:
        raise dg.Failure(f"{model_key.to_user_string()} has no materialization for {symbol}: train it first")
    return Path(records[0].asset_materialization.metadata["artifact_path"].value)


def build_promoted_asset(model_type: str, partitions: Partitions, settings: Settings) -> dg.AssetsDefinition:
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
