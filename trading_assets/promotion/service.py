"""What an operator does to the registry, one call per action, and the version list a person reads.

`change_service` promotes a trained version (default: the latest trained), rolls the version in service
back or forward, or pins a version promoted before; it returns a `ServiceChange` (what serves now, what
served before, by whom, why), which the Dagster job `model_registry` records on `promoted_<type>_model` and
the command line prints. Both go through this function, and the registry re-checks every target.

`version_table` lists every trained and promoted version of a (model type, symbol), newest first, with an
alias as a model registry gives them: `champion` (in service), `previous` (served before it; what a
rollback serves), `challenger` (not promoted, but passed its gates or lost only to the champion), `rolled
back` (promoted, above the champion after a rollback), `retired` (promoted earlier) or `failed gates`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trading_assets.features.registry import MODEL_FEATURES, schema_hash
from trading_assets.ml.artifacts import ModelArtifactError, artifact_dir, read_manifest, trained_versions
from trading_assets.ml.gates import blocking_failures, lost_to_champion, recorded_gates
from trading_assets.ml.policy import CostPolicy, PromotionPolicy
from trading_assets.promotion.registry import (
    PromotedModel,
    PromotionRefused,
    ServiceStack,
    current_version,
    pin,
    promote,
    roll_forward,
    rollback,
    service_stack,
    version_dir,
)

ACTIONS = ("promote", "rollback", "forward", "pin")
#: Rows of the version list shown in the UI (newest first).
VERSIONS_SHOWN = 20


@dataclass(frozen=True)
class ServiceChange:
    """One change of what serves (model type, symbol): the action, the model now in service, the version
    served before (None: nothing was), who asked and why."""

    action: str
    served: PromotedModel
    previous: str | None
    by: str
    reason: str


def change_service(
    models_dir: Path,
    model_type: str,
    symbol: str,
    action: str,
    *,
    by: str,
    reason: str,
    policy: PromotionPolicy,
    costs: CostPolicy,
    version: str | None = None,
) -> ServiceChange:
    """Carry out `action` (one of ACTIONS); `version` names the trained version to promote (default: the
    latest trained) or the promoted version to pin. PromotionRefused / ModelArtifactError in one line."""
    previous = current_version(models_dir, model_type, symbol)
    features, schema = list(MODEL_FEATURES), schema_hash()
    if action == "promote":
        artifact = _trained(models_dir, model_type, symbol, version)
        served = promote(artifact, models_dir, features, schema, by, policy, costs, reason=reason)
    elif action in ("rollback", "forward"):
        move = rollback if action == "rollback" else roll_forward
        served = move(models_dir, model_type, symbol, by, features, schema, reason=reason)
    elif action == "pin":
        if not version:
            raise PromotionRefused(f"{model_type} {symbol}: pin needs the version to serve")
        served = pin(models_dir, model_type, symbol, version, by, features, schema, reason=reason)
    else:
        raise PromotionRefused(f"unknown registry action {action!r}: expected one of {', '.join(ACTIONS)}")
    return ServiceChange(action, served, previous, by, reason)


def _trained(models_dir: Path, model_type: str, symbol: str, version: str | None) -> Path:
    if version is not None:
        artifact = artifact_dir(models_dir, model_type, symbol, version)
        if not artifact.is_dir():
            raise PromotionRefused(f"no trained {model_type} model of {symbol} at {artifact}")
        return artifact
    trained = trained_versions(models_dir, model_type, symbol)
    if not trained:
        folder = artifact_dir(models_dir, model_type, symbol, "")
        raise PromotionRefused(f"no trained {model_type} model of {symbol} in {folder}: train one first")
    return trained[-1]


def version_table(models_dir: Path, model_type: str, symbol: str) -> list[dict[str, Any]]:
    """The newest VERSIONS_SHOWN trained or promoted versions with alias, training, figures and gates."""
    stack = service_stack(models_dir, model_type, symbol)
    trained = {path.name: path for path in trained_versions(models_dir, model_type, symbol)}
    promoted = set(stack.versions) if stack else set()
    newest = sorted(set(trained) | promoted, reverse=True)[:VERSIONS_SHOWN]
    return [_row(version, trained.get(version), stack, models_dir, model_type, symbol) for version in newest]


def _row(
    version: str,
    trained: Path | None,
    stack: ServiceStack | None,
    models_dir: Path,
    model_type: str,
    symbol: str,
) -> dict[str, Any]:
    try:
        directory = trained or version_dir(models_dir, model_type, symbol, version)
        manifest = read_manifest(directory)
    except ModelArtifactError as error:
        return {"version": version, "alias": "refused", "gates": str(error)[:120]}
    gates = recorded_gates(manifest)
    failed = blocking_failures(gates)
    metrics, backtest = manifest["metrics"]["calibrated"], manifest["metrics"].get("backtest", {})
    return {
        "version": version,
        "alias": _alias(version, stack, passed=not failed or lost_to_champion(gates)),
        "training": manifest.get("training_mode", "cold")
        + (f" from {manifest['parent_version']}" if manifest.get("parent_version") else ""),
        "accuracy": round(metrics["accuracy"], 4),
        "ECE": round(metrics["ece"], 4),
        "net return": round(backtest["return"], 5) if "return" in backtest else None,
        "gates": "passed" if not failed else "failed: " + ", ".join(gate.name for gate in failed),
    }


def _alias(version: str, stack: ServiceStack | None, passed: bool) -> str:
    if stack is not None and version in stack.versions:
        position = stack.versions.index(version)
        if position == stack.position:
            return "champion"
        if position == stack.position - 1:
            return "previous"
        return "rolled back" if position > stack.position else "retired"
    return "challenger" if passed else "failed gates"
