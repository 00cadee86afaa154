"""The promoted-model registry under models/promoted/.

Layout for one (model type, symbol):

    models/promoted/<model_type>/<symbol>/versions/<version>/   copies of promoted artifacts
    models/promoted/<model_type>/<symbol>/CURRENT               the version in service
    models/promoted/history.jsonl                               every promotion and rollback

A copy is staged in a temporary sibling and renamed into place; CURRENT is replaced with os.replace. So a
reader sees the old or the new promoted model, never half of one. Promotion re-checks the artifact's
checksum and feature schema (by loading it) and its gates; a model that fails a blocking gate is refused.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trading_assets.ml.artifacts import read_manifest
from trading_assets.ml.gates import blocking_failures, recorded_gates
from trading_assets.ml.inference import load_model

PROMOTED_DIR = "promoted"
CURRENT_FILE = "CURRENT"
HISTORY_FILE = "history.jsonl"


class PromotionRefused(RuntimeError):
    """The artifact failed a gate, or there is nothing to roll back to."""


@dataclass(frozen=True)
class PromotedModel:
    model_type: str
    symbol: str
    version: str
    directory: Path
    manifest: dict[str, Any]


def promoted_root(models_dir: Path) -> Path:
    return Path(models_dir) / PROMOTED_DIR


def _slot(models_dir: Path, model_type: str, symbol: str) -> Path:
    return promoted_root(models_dir) / model_type / symbol.replace("/", "-")


def promote(
    artifact: Path,
    models_dir: Path,
    feature_names: list[str],
    schema_hash: str,
    promoted_by: str,
) -> PromotedModel:
    """Copy `artifact` into the registry, verify the copy (checksum, features, the gates recorded in its
    manifest), make it current."""
    manifest = read_manifest(artifact)
    slot = _slot(models_dir, manifest["model_type"], manifest["symbol"])
    version = Path(artifact).name
    target = slot / "versions" / version
    if target.exists():  # promoted before (versions are immutable): verify what is there
        _verify(target, feature_names, schema_hash)
    else:
        _copy_verified(Path(artifact), target, feature_names, schema_hash)
    _write_atomically(slot / CURRENT_FILE, version + "\n")
    _append_history(
        models_dir,
        action="promote",
        model_type=manifest["model_type"],
        symbol=manifest["symbol"],
        version=version,
        promoted_by=promoted_by,
        source=str(artifact),
        metrics={
            k: manifest["metrics"]["calibrated"][k] for k in ("accuracy", "ece", "base_rate", "samples")
        },
    )
    return current(models_dir, manifest["model_type"], manifest["symbol"])


def current(models_dir: Path, model_type: str, symbol: str) -> PromotedModel | None:
    """The promoted model in service for (model_type, symbol), or None."""
    slot = _slot(models_dir, model_type, symbol)
    pointer = slot / CURRENT_FILE
    if not pointer.is_file():
        return None
    version = pointer.read_text().strip()
    directory = slot / "versions" / version
    return PromotedModel(model_type, symbol, version, directory, read_manifest(directory))


def rollback(models_dir: Path, model_type: str, symbol: str, promoted_by: str) -> PromotedModel:
    """Make the version promoted before the current one current again."""
    promoted = [
        entry["version"]
        for entry in history(models_dir)
        if entry["action"] == "promote" and entry["model_type"] == model_type and entry["symbol"] == symbol
    ]
    now = current(models_dir, model_type, symbol)
    if now is None:
        raise PromotionRefused(f"nothing promoted for {model_type} {symbol}: nothing to roll back")
    earlier = [version for version in promoted if version != now.version]
    if not earlier:
        raise PromotionRefused(f"{model_type} {symbol}: {now.version} is the only promoted version")
    previous = earlier[-1]
    _write_atomically(_slot(models_dir, model_type, symbol) / CURRENT_FILE, previous + "\n")
    _append_history(
        models_dir,
        action="rollback",
        model_type=model_type,
        symbol=symbol,
        version=previous,
        promoted_by=promoted_by,
        source=now.version,
        metrics={},
    )
    return current(models_dir, model_type, symbol)


def history(models_dir: Path) -> list[dict[str, Any]]:
    path = promoted_root(models_dir) / HISTORY_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _append_history(models_dir: Path, **entry: Any) -> None:
    path = promoted_root(models_dir) / HISTORY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"at": datetime.now(UTC).isoformat(), "user": getpass.getuser(), **entry}
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _verify(directory: Path, feature_names: list[str], schema_hash: str) -> None:
    """Raise unless the artifact loads (checksum, features, architecture) and passes every gate it records."""
    manifest = load_model(directory, feature_names, schema_hash).manifest
    try:
        failures = blocking_failures(recorded_gates(manifest))
    except ValueError as error:
        raise PromotionRefused(f"{directory}: {error}") from error
    if failures:
        raise PromotionRefused(
            f"{manifest['model_type']} model for {manifest['symbol']} ({directory.name}) is not promoted: "
            + "; ".join(failure.describe() for failure in failures)
        )


def _copy_verified(source: Path, target: Path, feature_names: list[str], schema_hash: str) -> None:
    """Copy into a temporary sibling, verify the copy, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        _verify(staging, feature_names, schema_hash)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path)
