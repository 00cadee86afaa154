"""Per-symbol models with blocking promotion gates; built with them, the promoted models and the ensemble.

`<type>_model` trains on all stored features of its symbol, reports test metrics and judges the gates of
`ml.gates.GATES` (accuracy, calibration, skill over naive rules, after-fee economics), each a blocking (ERROR)
check. A failed gate fails the step, so `promoted_<type>_model` downstream is skipped; promotion itself
re-checks the artifact and the gates recorded in its manifest, so nothing that failed a gate is promoted by
any path.
"""

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import dagster as dg
from pydantic import Field, create_model

from trading_assets.defs.assets.ensemble import build_ensemble_asset
from trading_assets.defs.assets.model_metadata import (
    gate_check_result,
    model_metadata,
    not_promoted_observation,
)
from trading_assets.defs.assets.promotion import build_promoted_asset
from trading_assets.defs.automation import retrain_on_cadence
from trading_assets.defs.checks import partition_check_specs
from trading_assets.defs.partitions import Partitions
from trading_assets.defs.resources import DuckDBStoreResource, ModelStoreResource
from trading_assets.defs.run_guard import guard_step
from trading_assets.ml.config import RUN_OPTIONS, TrainConfig, run_option
from trading_assets.ml.gates import GATES
from trading_assets.ml.model_types import CATALOGUE
from trading_assets.ml.policy import POLICY_RECORDS, CostPolicy, PolicyError, PromotionPolicy, tightened
from trading_assets.ml.train import TrainSpec, train_symbol
from trading_assets.ml.training_run import run_train_config
from trading_assets.promotion.registry import current
from trading_assets.settings import Settings

if TYPE_CHECKING:  # torch's modules: imported where a model trains, not with the code location
    from trading_assets.ml.fit import EpochProgress

#: Steps tagged with this key share the training slots of the multiprocess executor (definitions.py),
#: and training steps of all runs share the `training` pool (limit in dagster_home/dagster.yaml).
TRAINING_TAG = "trading_assets/training"
TRAINING_POOL = "training"


class ModelAssets(NamedTuple):
    models: list[dg.AssetsDefinition]  # `<type>_model`
    promoted: list[dg.AssetsDefinition]  # `promoted_<type>_model`
    ensemble: dg.AssetsDefinition


def build_model_assets(settings: Settings, partitions: Partitions) -> ModelAssets:
    """The model, promotion and ensemble assets per symbol; run config defaults and the retraining cadence
    from the settings."""
    run_config = model_run_config(settings)
    models = [_build_model_asset(t, run_config, partitions, settings) for t in CATALOGUE]
    promoted = [build_promoted_asset(t, partitions, settings) for t in CATALOGUE]
    return ModelAssets(models, promoted, build_ensemble_asset(partitions))


class _ModelRunConfig(dg.Config):
    """Training settings of one model run (defaults: all stored history, the settings' epochs and samples);
    the training fields (`model_run_config`) are those of `TrainConfig` a run may set, as declared there.

    `mode`: "cold" trains from scratch; "warm" fine-tunes the promoted model in service on the new data plus
    a replay sample of older data (`TrainConfig.warm_*`), or trains cold, saying why, when there is none or
    it does not fit (another architecture, feature schema or window). The manifest records `parent_version`.
    The policy and cost fields (unset: the deployment's policy, TA_* settings) may only tighten it.
    """

    train_start: str | None = None
    train_end: str | None = None
    mode: Literal["cold", "warm"] = "cold"

    def training_range(self, history_start: date) -> tuple[date, date]:
        """From `train_start` (default: `history_start`) to `train_end` (default: today, UTC), inclusive."""
        start = date.fromisoformat(self.train_start) if self.train_start else history_start
        end = date.fromisoformat(self.train_end) if self.train_end else datetime.now(UTC).date()
        return start, end

    def train_config(self, model_type: str) -> TrainConfig:
        """What `model_type` trains with: this run config over the shared defaults, the type's recipe over it."""
        fields = {field: getattr(self, option) for option, field in RUN_OPTIONS.items()}
        return run_train_config(model_type, warm_start=self.mode == "warm", **fields)

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


def _training_fields(settings: Settings) -> dict[str, Any]:
    """Each run option of `TrainConfig` (`RUN_OPTIONS`) as a run config field with its declared help, bounds
    and default; the epochs and samples per epoch default to the settings'."""
    defaults = {"epochs": settings.train_epochs, "samples_per_epoch": settings.train_samples_per_epoch}
    fields: dict[str, Any] = {}
    for option, name in RUN_OPTIONS.items():
        kind, default, help_text, bounds = run_option(name)
        fields[option] = (kind, Field(defaults.get(option, default), description=help_text, **bounds))
    return fields


def model_run_config(settings: Settings) -> type[_ModelRunConfig]:
    """The model assets' run config class, derived from the declarations of `TrainConfig` and the policy
    records, its defaults from `settings` (also what `bench retrain` runs)."""
    return create_model(
        "ModelRunConfig", __base__=_ModelRunConfig, **_training_fields(settings), **_policy_fields()
    )


def _build_model_asset(
    model_type: str, run_config: type[_ModelRunConfig], partitions: Partitions, settings: Settings
) -> dg.AssetsDefinition:
    """`<type>_model`: trains the model of its partition's symbol (`_train_partition`)."""
    key = dg.AssetKey(f"{model_type}_model")

    @dg.asset(**_model_asset_options(key, model_type, partitions, settings))
    def model_asset(
        context: dg.AssetExecutionContext,
        config: run_config,
        store: DuckDBStoreResource,
        model_store: ModelStoreResource,
    ):
        yield from _train_partition(context, config, store, model_store, model_type, settings)

    return model_asset


def _model_asset_options(
    key: dg.AssetKey, model_type: str, partitions: Partitions, settings: Settings
) -> dict[str, Any]:
    """The `dg.asset` arguments of `<type>_model`: per symbol, after the features, one blocking check per
    gate, in the training pool, retrained on the settings' cadence."""
    return dict(
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


def _train_partition(
    context: dg.AssetExecutionContext,
    config: _ModelRunConfig,
    store: DuckDBStoreResource,
    model_store: ModelStoreResource,
    model_type: str,
    settings: Settings,
) -> Iterator[dg.MaterializeResult | dg.AssetObservation | dg.AssetCheckResult]:
    """Train `model_type` on the partition's symbol (warm from the model in service when the run config
    says so, judged against it), then report the model, why it is not promoted, and its gates."""
    symbol = context.partition_key
    run_active = guard_step(context)
    spec = _train_spec(config, model_type, symbol, model_store, settings)

    def progress(report: "EpochProgress") -> None:
        run_active()  # a training of a dead or failed run stops at its next progress report
        context.log.info(report.log_line(model_type, symbol))

    result = train_symbol(
        store.db_path,
        *config.training_range(settings.history_start),
        spec,
        progress=progress,
        log=context.log.info,
        before_write=run_active,
    )
    context.log.info(
        f"{model_type} {symbol}: {result.manifest['training_mode']} training"
        + (f" from {result.manifest['parent_version']}" if result.manifest["parent_version"] else "")
    )
    yield dg.MaterializeResult(metadata=model_metadata(result))
    # A failed blocking gate skips promoted_<type>_model: its page shows this observation, naming the gate.
    not_promoted = not_promoted_observation(result, dg.AssetKey(f"promoted_{model_type}_model"))
    if not_promoted is not None:
        yield not_promoted
    for gate in result.gates:
        yield gate_check_result(gate)


def _train_spec(
    config: _ModelRunConfig, model_type: str, symbol: str, model_store: ModelStoreResource, settings: Settings
) -> TrainSpec:
    """What to train: the run config's training, policy and costs; the model in service as the champion
    (and, in warm mode, the parent). dg.Failure when the run config loosens the policy."""
    try:
        policy, costs = config.policy_in_force(settings)
    except PolicyError as error:
        raise dg.Failure(description=f"{model_type} {symbol}: {error}") from None
    in_service = current(model_store.models_dir, model_type, symbol)
    return TrainSpec(
        model_type,
        symbol,
        model_store.models_dir,
        config.train_config(model_type),
        policy,
        costs,
        parent=in_service.directory if in_service and config.mode == "warm" else None,
        champion=in_service.directory if in_service else None,
    )
