"""Artifact directories models/<model_type>/<symbol>/<version>/ = weights + manifest.json, written atomically.

Weights are a torch state_dict (weights.pt, read with torch.load(weights_only=True)) or, for the
scikit-learn (logistic regression) model, arrays in weights.npz (read with allow_pickle=False). Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import torch

MANIFEST = "manifest.json"
TORCH_WEIGHTS = "weights.pt"
ARRAY_WEIGHTS = "weights.npz"


class ModelArtifactError(RuntimeError):
    """An artifact that cannot be used: damaged, not what its manifest says, or for another feature set."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }


def new_version() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def artifact_dir(models_dir: Path, model_type: str, symbol: str, version: str) -> Path:
    return Path(models_dir) / model_type / symbol.replace("/", "-") / version


def write_artifact(
    target: Path, weights: dict[str, Any], manifest: dict[str, Any], torch_format: bool
) -> Path:
    """Write weights and manifest (with the weights' sha256) into a temporary sibling, then rename it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        weights_path = staging / (TORCH_WEIGHTS if torch_format else ARRAY_WEIGHTS)
        if torch_format:
            torch.save({k: v.detach().cpu() for k, v in weights.items()}, weights_path)
        else:
            np.savez(weights_path, **weights)
        manifest = {**manifest, "weights_file": weights_path.name, "weights_sha256": sha256_of(weights_path)}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def read_manifest(directory: Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ModelArtifactError(f"cannot read {path}: {error}") from error


def check_features(manifest: dict[str, Any], feature_names: list[str], schema_hash: str) -> None:
    """Refuse a model trained on another feature set, naming both sides."""
    expected, schema = list(manifest["feature_names"]), manifest["schema_hash"]
    if expected == list(feature_names) and schema == schema_hash:
        return
    raise ModelArtifactError(
        f"model expects {len(expected)} features [{', '.join(expected)}] (schema {schema}) but the feature "
        f"store provides {len(feature_names)} (schema {schema_hash})"
    )


def read_weights(directory: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Weights after checking their sha256 against the manifest."""
    path = Path(directory) / manifest["weights_file"]
    if not path.is_file():
        raise ModelArtifactError(f"{path} is missing")
    actual = sha256_of(path)
    if actual != manifest["weights_sha256"]:
        raise ModelArtifactError(
            f"{path} has sha256 {actual} but the manifest says {manifest['weights_sha256']}: damaged or replaced"
        )
    try:
        if path.name == TORCH_WEIGHTS:
            return torch.load(path, map_location="cpu", weights_only=True)
        with np.load(path, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}
    except Exception as error:
        raise ModelArtifactError(f"cannot read weights {path}: {error}") from error
