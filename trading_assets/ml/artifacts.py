"""Artifact directories models/<model_type>/<symbol>/<version>/ = weights + manifest.json, written atomically.

Weights are a torch state_dict (weights.pt, read with torch.load(weights_only=True)) or, for the
logistic regression model, arrays in weights.npz (read with allow_pickle=False). Nothing is ever unpickled.

An artifact is refused, with one line naming the file, when its manifest is not JSON or lacks a field of
the expected type, when its weights file name leaves the artifact directory, when the weights' sha256
differs from the manifest's, when any weight is not finite, or when its calibration temperature is not a
finite number > 0. The same checks run before an artifact is written, so training never writes one that
would be refused.

The manifest is signed at training: `manifest_sha256` is the SHA-256 of the manifest's canonical JSON (sorted
keys, compact separators) without that field, so it covers the weights' sha256 too. Every read of a
manifest (promotion, rollback, every load for scoring) checks it first (`verify_manifest`): a manifest
edited after training (another symbol, a seq_len, a field dropped) or never signed is refused with one line
(ManifestSignatureError). A deliberate edit is re-signed with `sign_manifest`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import platform
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from trading_assets.atomic import write_text_atomically
from trading_assets.ml.errors import ModelArtifactError, UnknownModelType
from trading_assets.ml.model_types import canonical_name

MANIFEST = "manifest.json"
#: the manifest's own checksum, taken at training over every other field (the weights' sha256 included)
SIGNATURE_FIELD = "manifest_sha256"
TORCH_WEIGHTS = "weights.pt"
ARRAY_WEIGHTS = "weights.npz"
#: The longest window a model may read: a week of minutes (an edited manifest asking for more would make
#: every scoring gather that many rows per window).
MAX_SEQ_LEN = 7 * 1440
#: manifest fields every loader relies on, with their JSON types
REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "model_type": str,
    "symbol": str,
    "feature_names": list,
    "schema_hash": str,
    "seq_len": int,
    "scaler": dict,
    "calibration": dict,
    "training_config": dict,
    "parameter_count": int,
    "weights_file": str,
    "weights_sha256": str,
}


class ManifestSignatureError(ModelArtifactError):
    """A manifest that is not the one training wrote: its manifest_sha256 is missing or does not match."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": metadata.version("torch"),  # not imported: only where weights are read or written
        "numpy": np.__version__,
        "scikit-learn": metadata.version("scikit-learn"),  # not imported: ~120 MB of a torch training
    }


def code_version() -> dict[str, str | None]:
    """The code that trained a model: the package version, and the git commit of the checkout it runs from
    (with "-dirty" when files differ from it; None outside a git checkout)."""
    root = Path(__file__).resolve().parents[2]
    commit = None
    if (root / ".git").exists():
        try:
            head = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            commit = head + ("-dirty" if dirty else "")
        except (OSError, subprocess.SubprocessError):
            commit = None
    try:
        package = metadata.version("trading_assets")
    except metadata.PackageNotFoundError:
        package = None
    return {"package": package, "commit": commit}


def new_version() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def artifact_dir(models_dir: Path, model_type: str, symbol: str, version: str) -> Path:
    return Path(models_dir) / model_type / symbol.replace("/", "-") / version


def trained_versions(models_dir: Path, model_type: str, symbol: str) -> list[Path]:
    """The trained artifact folders of (model_type, symbol), oldest first (a version is its UTC training
    time); a folder being written (a hidden temporary sibling) is not one."""
    folder = artifact_dir(models_dir, model_type, symbol, "")
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))


def write_artifact(
    target: Path, weights: dict[str, Any], manifest: dict[str, Any], torch_format: bool
) -> Path:
    """Write weights and manifest (with the weights' sha256) into a temporary sibling, then rename it.

    Refuses (ModelArtifactError, nothing written) weights with a non-finite value or a calibration
    temperature that is not a finite number > 0: such a model would serve p = NaN or divide by zero.
    """
    check_temperature(manifest, target / MANIFEST)
    check_finite(weights, target / (TORCH_WEIGHTS if torch_format else ARRAY_WEIGHTS))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        weights_path = staging / (TORCH_WEIGHTS if torch_format else ARRAY_WEIGHTS)
        if torch_format:
            import torch  # only where torch weights are written: serving and the code location do not need it

            torch.save({k: v.detach().cpu() for k, v in weights.items()}, weights_path)
        else:
            np.savez(weights_path, **weights)
        manifest = {**manifest, "weights_file": weights_path.name, "weights_sha256": sha256_of(weights_path)}
        (staging / MANIFEST).write_text(_signed_text(manifest))
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest after checking its signature and that it is JSON with every required field of the
    right type."""
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ModelArtifactError(f"cannot read {path}: {_one_line(error)}") from error
    check_manifest(manifest, path)
    return manifest


def manifest_digest(manifest: dict[str, Any]) -> str:
    """SHA-256 of the manifest's canonical JSON (sorted keys, compact separators) without its signature."""
    body = {field: value for field, value in manifest.items() if field != SIGNATURE_FIELD}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def verify_manifest(manifest: dict[str, Any], path: Path) -> None:
    """Refuse (ManifestSignatureError, one line naming `path`) a manifest whose manifest_sha256 is missing
    or differs from its content: edited after training, or written before manifests were signed."""
    recorded = manifest.get(SIGNATURE_FIELD)
    if recorded is None:
        raise ManifestSignatureError(
            f"{path}: manifest not signed at training (no {SIGNATURE_FIELD}: written by an older version "
            "or by hand); retrain or re-sign"
        )
    if recorded != manifest_digest(manifest):
        raise ManifestSignatureError(
            f"{path}: manifest edited after training ({SIGNATURE_FIELD} mismatch); retrain or re-sign"
        )


def sign_manifest(artifact: Path) -> Path:
    """Re-sign the manifest of `artifact` (its directory or its manifest.json) as it is now, atomically.

    For a deliberate edit only: whoever signs vouches for the edit. The weights' sha256 is not recomputed,
    so a replaced weights file stays refused. Returns the manifest's path.
    """
    path = Path(artifact)
    path = path / MANIFEST if path.is_dir() else path
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ModelArtifactError(f"cannot read {path}: {_one_line(error)}") from error
    if not isinstance(manifest, dict):
        raise ModelArtifactError(f"{path}: not a manifest (a JSON {type(manifest).__name__}, not an object)")
    write_text_atomically(path, _signed_text(manifest))
    return path


def _signed_text(manifest: dict[str, Any]) -> str:
    """The manifest as written: read back through JSON first (so the digest is over what a reader parses),
    then with its manifest_sha256."""
    body = json.loads(json.dumps(manifest, default=str))
    body.pop(SIGNATURE_FIELD, None)
    return json.dumps({**body, SIGNATURE_FIELD: manifest_digest(body)}, indent=2, sort_keys=True)


def check_manifest(manifest: Any, path: Path) -> None:
    """Refuse a manifest that training did not write as it is (`verify_manifest`) or of another schema: a
    missing or mistyped field, an unknown model type, a seq_len outside 2..MAX_SEQ_LEN.

    A model type under a former name (`sklearn`) is rewritten in place to today's name (`logistic`).
    """
    if not isinstance(manifest, dict):
        raise ModelArtifactError(f"{path}: not a manifest (a JSON {type(manifest).__name__}, not an object)")
    verify_manifest(manifest, path)
    for field, kind in REQUIRED_FIELDS.items():
        if field not in manifest:
            raise ModelArtifactError(f"{path}: manifest has no field {field!r}")
        value = manifest[field]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ModelArtifactError(
                f"{path}: manifest field {field!r} is {value!r}, expected {getattr(kind, '__name__', kind)}"
            )
    try:
        manifest["model_type"] = canonical_name(manifest["model_type"])
    except UnknownModelType as error:
        raise ModelArtifactError(f"{path}: manifest field 'model_type': {error}") from error
    if not 2 <= manifest["seq_len"] <= MAX_SEQ_LEN:
        raise ModelArtifactError(f"{path}: seq_len {manifest['seq_len']} must lie in 2..{MAX_SEQ_LEN}")
    check_temperature(manifest, path)


def check_temperature(manifest: dict[str, Any], path: Path) -> None:
    temperature = manifest.get("calibration", {}).get("temperature")
    valid = isinstance(temperature, int | float) and not isinstance(temperature, bool)
    if not valid or not math.isfinite(temperature) or temperature <= 0:
        raise ModelArtifactError(
            f"{path}: calibration temperature {temperature!r} must be a finite number > 0"
        )


def check_finite(weights: dict[str, Any], path: Path) -> None:
    """Refuse weights holding NaN or infinity (a diverged training), naming the first such tensor."""
    for name, value in weights.items():
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)  # a tensor
        if array.dtype.kind not in "biuf":
            raise ModelArtifactError(f"{path}: weight {name!r} is not numeric ({array.dtype})")
        if not np.isfinite(array).all():
            bad = int(array.size - np.isfinite(array).sum())
            raise ModelArtifactError(f"{path}: weight {name!r} holds {bad} non-finite value(s) (NaN or inf)")


def check_features(
    manifest: dict[str, Any], feature_names: list[str], schema_hash: str, path: Path | None = None
) -> None:
    """Refuse a model trained on another feature set, naming both sides (and the manifest, when given)."""
    expected, schema = list(manifest["feature_names"]), manifest["schema_hash"]
    if expected == list(feature_names) and schema == schema_hash:
        return
    where = f"{path}: " if path is not None else ""
    raise ModelArtifactError(
        f"{where}model expects {len(expected)} features [{', '.join(expected)}] (schema {schema}) but the "
        f"feature store provides {len(feature_names)} (schema {schema_hash})"
    )


def weights_path(directory: Path, manifest: dict[str, Any]) -> Path:
    """The weights file the manifest names, refused unless it is a plain file inside `directory`."""
    directory = Path(directory)
    name = manifest["weights_file"]
    path = directory / name
    if name not in (TORCH_WEIGHTS, ARRAY_WEIGHTS):
        raise ModelArtifactError(
            f"{directory / MANIFEST}: weights_file {name!r} is not {TORCH_WEIGHTS} or {ARRAY_WEIGHTS} "
            "(a path escaping the artifact directory is never read)"
        )
    if not path.resolve().is_relative_to(directory.resolve()):
        raise ModelArtifactError(
            f"{path}: links to {path.resolve()}, outside the artifact directory "
            "(a path escaping the artifact directory is never read)"
        )
    return path


def read_weights(directory: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Weights after checking their path, their sha256 against the manifest, and that all are finite."""
    path = weights_path(directory, manifest)
    if not path.is_file():
        raise ModelArtifactError(f"{path} is missing")
    actual = sha256_of(path)
    if actual != manifest["weights_sha256"]:
        raise ModelArtifactError(
            f"{path} has sha256 {actual} but the manifest says {manifest['weights_sha256']}: damaged or replaced"
        )
    weights = _load_weights(path)
    if not isinstance(weights, dict):
        raise ModelArtifactError(f"{path}: holds a {type(weights).__name__}, not a dict of weights")
    check_finite(weights, path)
    return weights


def _load_weights(path: Path) -> Any:
    """Tensors or arrays only: torch.load(weights_only=True) and np.load(allow_pickle=False) refuse objects."""
    try:
        if path.name == TORCH_WEIGHTS:
            import torch

            return torch.load(path, map_location="cpu", weights_only=True)
        with np.load(path, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}
    except pickle.UnpicklingError as error:
        raise ModelArtifactError(
            f"{path}: holds objects other than tensors, refused by torch.load(weights_only=True) without "
            "executing them"
        ) from error
    except Exception as error:
        raise ModelArtifactError(f"cannot read weights {path}: {_one_line(error)}") from error


def _one_line(error: BaseException) -> str:
    """An exception's message on one line (torch's unpickling errors run to a dozen)."""
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."
