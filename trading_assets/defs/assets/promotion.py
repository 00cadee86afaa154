"""The model registry in Dagster: `promoted_<type>_model` per symbol and the `model_registry` job.

`promoted_<type>_model` promotes its model's latest artifact once the model's blocking gates passed
(automation), re-checking the artifact and the recorded gates, so nothing that failed a gate is promoted by
any path. The `model_registry` job (launchpad config: model type, symbol, action promote | rollback |
forward | pin, version, reason) changes what serves by hand; `trading-assets promote` runs the same job.
Every change, automatic or by hand, records a materialization of `promoted_<type>_model` for the symbol:
the version served, the previous one, by whom, why, and the version list with aliases (champion,
previous, challenger, ...), so the UI always shows what the runtime serves.
"""

from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field

from trading_assets.defs.automation import PROMOTE_AFTER_PASSING_GATES
from trading_assets.defs.metadata import markdown_image, markdown_records
from trading_assets.defs.partitions import Partitions
from trading_assets.defs.resources import ModelStoreResource
from trading_assets.defs.run_guard import guard_step
from trading_assets.ml.artifacts import ModelArtifactError
from trading_assets.ml.model_types import CATALOGUE
from trading_assets.plots import version_comparison_png
from trading_assets.promotion.registry import PromotionRefused
from trading_assets.promotion.service import ServiceChange, change_service, comparison_curves, version_table
from trading_assets.settings import Settings

REGISTRY_JOB = "model_registry"


def promoted_key(model_type: str) -> dg.AssetKey:
    return dg.AssetKey(f"promoted_{model_type}_model")


def service_metadata(change: ServiceChange, models_dir: Path) -> dict[str, object]:
    """What a change of service shows on `promoted_<type>_model`."""
    served = change.served
    metrics = served.manifest["metrics"]["calibrated"]
    return {
        "version": served.version,
        "previous_version": change.previous or "none",
        "action": change.action,
        "by": change.by,
        "reason": change.reason or "none given",
        "promoted_path": dg.MetadataValue.path(str(served.directory)),
        "test_accuracy": metrics["accuracy"],
        "test_ece": metrics["ece"],
        "schema_hash": served.manifest["schema_hash"],
        "versions": markdown_records(version_table(models_dir, served.model_type, served.symbol)),
        "comparison_chart": markdown_image(
            "versions side by side",
            version_comparison_png(
                comparison_curves(models_dir, served.model_type, served.symbol),
                f"{served.symbol} · {served.model_type}",
            ),
        ),
    }


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
        key=promoted_key(model_type),
        description=(
            f"The {model_type} model in service for one symbol: promoted automatically after {model_type}_model "
            "passed its gates, or changed by the model_registry job (rollback, roll forward, pin). When a "
            "gate failed, an observation here names it."
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
            change = change_service(
                model_store.models_dir,
                model_type,
                symbol,
                "promote",
                version=artifact.name,
                by=f"dagster run {context.run.run_id}",
                reason=f"{model_type}_model passed its gates",
                policy=settings.policy,
                costs=settings.costs_in_force(),
            )
        except PromotionRefused as error:
            raise dg.Failure(description=str(error)) from None
        return dg.MaterializeResult(
            metadata={
                **service_metadata(change, model_store.models_dir),
                "source_artifact": dg.MetadataValue.path(str(artifact)),
            }
        )

    return promoted_asset


def _service_change_config(settings: Settings) -> type[dg.Config]:
    """The `model_registry` job's run config: one change of what serves (the Launchpad's form)."""
    model_types = tuple(CATALOGUE)

    class ServiceChangeConfig(dg.Config):
        """One change of the model in service for (model_type, symbol)."""

        model_type: Literal[model_types] = Field(description="the model type: " + ", ".join(model_types))
        symbol: str = Field(description="one of the configured symbols: " + ", ".join(settings.symbols))
        action: Literal["promote", "rollback", "forward", "pin"] = Field(
            description="promote a trained version (gates re-checked), roll back / forward one step on the "
            "service stack, or pin a version promoted before"
        )
        version: str | None = Field(
            None, description="promote: the trained version (default: the latest); pin: the version to serve"
        )
        reason: str = Field(description="why (recorded with the change)")
        by: str = Field("operator", description="who asks (recorded with the change)")

    return ServiceChangeConfig


def build_registry_job(settings: Settings) -> dg.JobDefinition:
    """The `model_registry` job: one change of what serves, recorded on `promoted_<type>_model`."""
    ServiceChangeConfig = _service_change_config(settings)

    @dg.op(
        name="change_model_service",
        description="Promote, roll back, roll forward or pin; records the result on promoted_<type>_model.",
    )
    def change_model_service(
        context: dg.OpExecutionContext, config: ServiceChangeConfig, model_store: ModelStoreResource
    ):
        if config.symbol not in settings.symbols:
            raise dg.Failure(description=f"symbol {config.symbol!r} is not one of {list(settings.symbols)}")
        run_active = guard_step(context)
        run_active()
        try:
            change = change_service(
                model_store.models_dir,
                config.model_type,
                config.symbol,
                config.action,
                version=config.version,
                by=f"{config.by} (dagster run {context.run.run_id[:8]})",
                reason=config.reason,
                policy=settings.policy,
                costs=settings.costs_in_force(),
            )
        except (PromotionRefused, ModelArtifactError) as error:
            raise dg.Failure(description=str(error)) from None
        context.log.info(
            f"{config.model_type} {config.symbol}: {change.action}: {change.served.version} in service "
            f"(was {change.previous or 'none'})"
        )
        yield dg.AssetMaterialization(
            asset_key=promoted_key(config.model_type),
            partition=config.symbol,
            metadata=service_metadata(change, model_store.models_dir),
            description=f"{change.action} by {change.by}: {change.reason}",
        )
        yield dg.Output(change.served.version)

    @dg.job(
        name=REGISTRY_JOB,
        description="Change the model in service by hand (promote, rollback, forward, pin); the CLI's "
        "`trading-assets promote` runs this job too.",
    )
    def model_registry() -> None:
        change_model_service()

    return model_registry
