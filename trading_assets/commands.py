"""The command line's actions outside Dagster: train, evaluate/promote, roll back, run the dry-run loop."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from trading_assets.features.registry import MODEL_FEATURES, schema_hash
from trading_assets.ml.policy import PromotionPolicy
from trading_assets.settings import Settings


def train(
    settings: Settings,
    symbol: str,
    model_type: str,
    epochs: int | None,
    batch_size: int,
    seq_len: int,
    horizon: int,
    seed: int,
) -> int:
    """The old pipeline's trainer command: the model asset's training call on all stored history up to today
    (UTC); `epochs` None takes the setting, as the asset does."""
    from trading_assets.ml.config import TrainConfig
    from trading_assets.ml.model_types import model_type as catalogue_record
    from trading_assets.ml.train import TrainSpec, train_symbol
    from trading_assets.promotion.registry import current

    shared = TrainConfig(
        max_epochs=epochs or settings.train_epochs,
        samples_per_epoch=settings.train_samples_per_epoch,
        batch_size=batch_size,
        seq_len=seq_len,
        horizon=horizon,
        seed=seed,
        concurrent_trainings=settings.concurrent_trainings,
    )
    in_service = current(settings.models_dir, model_type, symbol)
    spec = TrainSpec(
        model_type,
        symbol,
        settings.models_dir,
        catalogue_record(model_type).train_config(shared),
        settings.policy,
        settings.costs_in_force(),
        champion=in_service.directory if in_service else None,
    )
    result = train_symbol(
        settings.store_location,
        settings.history_start,
        datetime.now(UTC).date(),
        spec,
        progress=lambda p: print(p, flush=True),
    )
    print(
        json.dumps({"artifact": str(result.artifact_dir), "metrics": result.metrics["calibrated"]}, indent=2)
    )
    return 0


def evaluate(
    settings: Settings,
    model: Path,
    symbol: str,
    model_type: str,
    policy: PromotionPolicy,
    promote_if_passed: bool,
) -> int:
    """Verify the artifact, print its pooled walk-forward metrics and its gates judged by `policy` (the policy
    in force, perhaps tightened on the command line); exit 1 when a blocking gate fails."""
    from trading_assets.ml.gates import blocking_failures, evaluate_gates
    from trading_assets.ml.inference import load_model
    from trading_assets.promotion.registry import PromotionRefused

    manifest = load_model(model, list(MODEL_FEATURES), schema_hash()).manifest
    if (manifest["symbol"], manifest["model_type"]) != (symbol, model_type):
        print(
            f"{model} is a {manifest['model_type']} model of {manifest['symbol']}, not {model_type} {symbol}",
            file=sys.stderr,
        )
        return 2
    if "policy" not in manifest.get("gates", {}):
        print(
            f"{model}: trained by an older version, not judged on walk-forward evidence: retrain it",
            file=sys.stderr,
        )
        return 1
    gates = evaluate_gates(manifest["metrics"], policy)
    print(json.dumps(manifest["metrics"]["calibrated"], indent=2))
    for gate in gates:
        print(("   " if gate.passed else "!! ") + gate.describe())
    if blocking_failures(gates):
        print(f"{model_type} {symbol}: gates failed, not promoted")
        return 1
    if promote_if_passed:
        try:
            promoted = _promote(settings, model)
        except PromotionRefused as error:
            print(error, file=sys.stderr)
            return 1
        print(f"promoted {model_type} {symbol} version {promoted.version} -> {promoted.directory}")
    return 0


def _promote(settings: Settings, artifact: Path):
    """The registry's promotion of `artifact` under the policy and costs in force."""
    from trading_assets.promotion.registry import promote

    return promote(
        artifact,
        settings.models_dir,
        list(MODEL_FEATURES),
        schema_hash(),
        "cli",
        settings.policy,
        settings.costs_in_force(),
    )


def change_service_in_dagster(
    settings: Settings, model_type: str, symbol: str, action: str, version: str | None, reason: str
) -> int:
    """Run the code location's `model_registry` job in DAGSTER_HOME (as the UI's launchpad does), so the
    change is recorded on `promoted_<type>_model`; print what serves now, or the refusal in one line."""
    import getpass

    import dagster as dg

    from trading_assets.definitions import build_definitions
    from trading_assets.defs.assets.promotion import REGISTRY_JOB
    from trading_assets.settings import export_dagster_home

    export_dagster_home(settings.dagster_home)
    change = {"model_type": model_type, "symbol": symbol, "action": action, "reason": reason}
    change |= {"by": f"{getpass.getuser()} (cli)"} | ({"version": version} if version else {})
    with dg.DagsterInstance.get() as instance:
        result = (
            build_definitions(settings)
            .resolve_job_def(REGISTRY_JOB)
            .execute_in_process(
                run_config={
                    "ops": {"change_model_service": {"config": change}},
                    "loggers": {
                        "console": {"config": {"log_level": "CRITICAL"}}
                    },  # a summary, not the events
                },
                instance=instance,
                raise_on_error=False,
            )
        )
    if not result.success:
        print(_step_failure(result), file=sys.stderr)
        return 1
    [materialization] = result.asset_materializations_for_node("change_model_service")
    metadata = materialization.metadata
    print(
        f"{model_type} {symbol}: version {metadata['version'].value} in service "
        f"(was {metadata['previous_version'].value}; {action}); recorded on promoted_{model_type}_model "
        f"by run {result.run_id[:8]}"
    )
    return 0


def _step_failure(result) -> str:
    """The one-line description of the failed step of an in-process run."""
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                return data.user_failure_data.description
            return data.error.message.strip().splitlines()[0] if data.error else "the step failed"
    return "the run failed"


def runtime(
    settings: Settings,
    mode: str,
    iterations: int,
    sleep_seconds: float,
    symbols: list[str] | None,
    long_above: float,
    short_below: float,
) -> int:
    """The old pipeline's runtime command; only the dry-run mode exists."""
    from trading_assets.market.sources import build_source
    from trading_assets.ml.backtest import SignalPolicy
    from trading_assets.runtime.dryrun import (
        DryRunRuntime,
        LiveTradingRefused,
        check_mode,
        run_iterations,
    )

    try:
        check_mode(mode)
    except LiveTradingRefused as error:
        print(error, file=sys.stderr)
        return 2
    source = build_source(settings.source_options)
    dryrun = DryRunRuntime(
        source,
        settings.store_location,
        settings.models_dir,
        symbols or list(settings.symbols),
        settings.history_start,
        SignalPolicy(long_above, short_below),
        settings.costs.allow_short,
    )
    run_iterations(dryrun, iterations, sleep_seconds)
    return 0
