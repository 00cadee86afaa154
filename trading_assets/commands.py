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
        max_epochs=epochs or settings.train_epochs, samples_per_epoch=settings.train_samples_per_epoch,
        batch_size=batch_size, seq_len=seq_len, horizon=horizon, seed=seed,
        concurrent_trainings=settings.concurrent_trainings,
    )  # fmt: skip
    in_service = current(settings.models_dir, model_type, symbol)
    spec = TrainSpec(
        model_type, symbol, settings.models_dir, catalogue_record(model_type).train_config(shared),
        settings.policy, settings.costs_in_force(), champion=in_service.directory if in_service else None,
    )  # fmt: skip
    result = train_symbol(
        settings.duckdb_path, settings.history_start, datetime.now(UTC).date(), spec,
        progress=lambda p: print(p, flush=True),
    )  # fmt: skip
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
        artifact, settings.models_dir, list(MODEL_FEATURES), schema_hash(), "cli", settings.policy,
        settings.costs_in_force(),
    )  # fmt: skip


def promote_version(settings: Settings, symbol: str, model_type: str, version: str | None) -> int:
    """Promote a trained version (default: the latest) after re-checking its artifact and gates."""
    from trading_assets.ml.artifacts import ModelArtifactError
    from trading_assets.ml.model_types import stored_path
    from trading_assets.promotion.registry import PromotionRefused, service_stack

    trained = stored_path(settings.models_dir, model_type, symbol.replace("/", "-"), version or "")
    if version is None:
        versions = sorted(p.name for p in trained.glob("*") if p.is_dir() and not p.name.startswith("."))
        if not versions:
            print(f"no trained {model_type} model of {symbol} in {trained}: train one first", file=sys.stderr)
            return 1
        trained = trained / versions[-1]
    if not trained.is_dir():
        print(f"no trained {model_type} model of {symbol} at {trained}", file=sys.stderr)
        return 1
    try:
        promoted = _promote(settings, trained)
    except (PromotionRefused, ModelArtifactError) as error:
        print(error, file=sys.stderr)
        return 1
    stack = service_stack(settings.models_dir, model_type, symbol)
    print(f"promoted {model_type} {symbol} version {promoted.version}; service stack {list(stack.versions)}")
    return 0


def move_promotion(settings: Settings, symbol: str, model_type: str, forward: bool) -> int:
    """Roll the version in service back one step on the service stack, or forward one step."""
    from trading_assets.ml.artifacts import ModelArtifactError
    from trading_assets.promotion.registry import PromotionRefused, roll_forward, rollback

    move = roll_forward if forward else rollback
    try:
        restored = move(settings.models_dir, model_type, symbol, "cli", list(MODEL_FEATURES), schema_hash())
    except (PromotionRefused, ModelArtifactError) as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{model_type} {symbol}: version {restored.version} is in service again")
    return 0


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
    from trading_assets.market.sources import SourceOptions, build_source
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
    source = build_source(SourceOptions.from_settings(settings))
    dryrun = DryRunRuntime(
        source, settings.duckdb_path, settings.models_dir, symbols or list(settings.symbols),
        settings.history_start, SignalPolicy(long_above, short_below), settings.costs.allow_short,
    )  # fmt: skip
    run_iterations(dryrun, iterations, sleep_seconds)
    return 0
