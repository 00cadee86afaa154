"""What an operator does to the registry, one call per action, and the version list a person reads.

`change_service` promotes a trained version (default: the latest trained), rolls the version in service
back or forward, or pins a version promoted before; it returns a `ServiceChange` (what serves now, what
served before, by whom, why), which the Dagster job `model_registry` records on `promoted_<type>_model` and
the command line prints. Both go through this function, and the registry re-checks every target.

`version_table` lists every trained and promoted version of a (model type, symbol), newest first, side by
side: walk-forward fold accuracies, gates, the fee judged at, hyperparameters, warm/cold and parent, the
training data (lake snapshot or rows hash) and the code (commit or package version), with an
alias as a model registry gives them: `champion` (in service), `previous` (served before it; what a
rollback serves), `challenger` (not promoted, but passed its gates or lost only to the champion), `rolled
back` (promoted, above the champion after a rollback), `retired` (promoted earlier) or `failed gates`.
`comparison_curves` gives the champion's and the newest versions' learning and equity curves for one chart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from trading_assets.features.registry import MODEL_FEATURES, schema_hash
from trading_assets.ml.artifacts import ModelArtifactError, artifact_dir, read_manifest, trained_versions
from trading_assets.ml.gates import blocking_failures, lost_to_champion, recorded_gates
from trading_assets.ml.policy import CostPolicy, PromotionPolicy
from trading_assets.plots import VersionCurves
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
    config, costs = manifest.get("training_config", {}), manifest.get("gates", {}).get("costs", {})
    return {
        "version": version,
        "alias": _alias(version, stack, passed=not failed or lost_to_champion(gates)),
        "training": manifest.get("training_mode", "cold")
        + (f" from {manifest['parent_version']}" if manifest.get("parent_version") else ""),
        "accuracy": round(metrics["accuracy"], 4),
        "folds": " / ".join(f"{fold['accuracy']:.3f}" for fold in manifest["metrics"].get("folds", [])),
        "ECE": round(metrics["ece"], 4),
        "net return": round(backtest["return"], 5) if "return" in backtest else None,
        "gates": "passed" if not failed else "failed: " + ", ".join(gate.name for gate in failed),
        "fee bps": costs.get("fee_bps"),
        "lr / batch / seq_len / epochs": " / ".join(
            str(config.get(key)) for key in ("learning_rate", "batch_size", "seq_len", "max_epochs")
        ),
        "data": _data(manifest.get("data_snapshot")),
        "code": _code(manifest.get("code_version")),
    }


def _data(snapshot: dict[str, Any] | None) -> str:
    """The training rows in a few characters: the lake snapshot, else the rows' hash, and the row count."""
    if not snapshot:
        return "not recorded"
    where = (
        f"snapshot {snapshot['snapshot']}"
        if snapshot.get("snapshot") is not None
        else snapshot["sha256"][:10]
    )
    return f"{where}, {snapshot.get('rows', 0):,} rows"


def _code(version: dict[str, str | None] | None) -> str:
    if not version:
        return "not recorded"
    return (version.get("commit") or "")[:12] or f"package {version.get('package')}"


def comparison_curves(models_dir: Path, model_type: str, symbol: str, shown: int = 4) -> list[VersionCurves]:
    """The champion's and the newest other versions' learning and walk-forward equity curves (at most
    `shown`), for one chart: the champion first."""
    rows = version_table(models_dir, model_type, symbol)
    ordered = [row for row in rows if row["alias"] == "champion"] + [
        row for row in rows if row["alias"] not in ("champion", "refused")
    ]
    curves = []
    for row in ordered[:shown]:
        trained = artifact_dir(models_dir, model_type, symbol, row["version"])
        directory = (
            trained if trained.is_dir() else version_dir(models_dir, model_type, symbol, row["version"])
        )
        manifest = read_manifest(directory)
        equity = manifest["metrics"].get("backtest", {}).get("equity_curve", {})
        curves.append(
            VersionCurves(
                label=f"{row['version'][:15]} ({row['alias']})",
                epochs=[int(point["epoch"]) for point in manifest.get("learning_curve", [])],
                val_loss=[point["val_loss"] for point in manifest.get("learning_curve", [])],
                times=[
                    datetime.fromisoformat(moment.replace("Z", "+00:00"))
                    for moment in equity.get("times", [])
                ],
                equity=equity.get("strategy", []),
            )
        )
    return curves


def _alias(version: str, stack: ServiceStack | None, passed: bool) -> str:
    if stack is not None and version in stack.versions:
        position = stack.versions.index(version)
        if position == stack.position:
            return "champion"
        if position == stack.position - 1:
            return "previous"
        return "rolled back" if position > stack.position else "retired"
    return "challenger" if passed else "failed gates"


def latest_trained(models_dir: Path, model_type: str, symbol: str) -> dict[str, Any] | None:
    """The newest trained artifact's manifest of (model_type, symbol), None when none was trained (or it is
    refused: an edited or unsigned manifest is no evidence)."""
    trained = trained_versions(models_dir, model_type, symbol)
    if not trained:
        return None
    try:
        return read_manifest(trained[-1])
    except ModelArtifactError:
        return None


def exclusion_reason(models_dir: Path, model_type: str, symbol: str) -> str:
    """Why (model_type, symbol) is not in service, from its newest trained manifest: its failed blocking
    gates (`accuracy_gate FAILED: measured ..., threshold ...`), or 'not promoted' / 'not trained'."""
    manifest = latest_trained(models_dir, model_type, symbol)
    if manifest is None:
        return "not trained"
    failed = blocking_failures(recorded_gates(manifest))
    return "excluded: " + "; ".join(gate.describe() for gate in failed) if failed else "not promoted"
