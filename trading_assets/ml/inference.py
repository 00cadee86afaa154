"""`load_model`: a checked artifact, ready to score the latest windows of the feature store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trading_assets.ml import metrics
from trading_assets.ml.artifacts import (
    MANIFEST,
    ModelArtifactError,
    check_features,
    read_manifest,
    read_weights,
)
from trading_assets.ml.config import TrainConfig
from trading_assets.ml.data import Scaler, windows_of_rows
from trading_assets.ml.fit import build_torch_model
from trading_assets.ml.linear import SUMMARIES, LogisticDirectionModel
from trading_assets.ml.models import parameter_count


@dataclass(frozen=True)
class LoadedModel:
    directory: Path
    manifest: dict[str, Any]
    model: nn.Module | LogisticDirectionModel
    scaler: Scaler
    temperature: float
    seq_len: int
    batch_size: int = 2048

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Calibrated probability that the close rises over the horizon, from raw (unscaled) features.

        x: windows (batch, seq_len, features) -> (batch,), or rows (rows, features) -> one probability per
        complete window, i.e. for rows seq_len - 1 .. rows - 1 (the last entry scores the latest window).
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 2:
            x = windows_of_rows(self.scaler.transform(x), self.seq_len)
        elif x.ndim == 3:
            x = self.scaler.transform(x)
        else:
            raise ValueError(f"expected windows or rows, got an array of shape {x.shape}")
        if x.shape[1:] != (self.seq_len, len(self.scaler.mean)):
            raise ValueError(
                f"windows of shape {x.shape[1:]} given, the model needs ({self.seq_len}, {len(self.scaler.mean)})"
            )
        return metrics.sigmoid(self._logits(x) / self.temperature)

    def _logits(self, windows: np.ndarray) -> np.ndarray:
        if isinstance(self.model, LogisticDirectionModel):
            return self.model.logits(windows)
        self.model.eval()
        with torch.no_grad():
            chunks = [
                self.model(
                    torch.tensor(windows[i : i + self.batch_size])
                ).numpy()  # copies the read-only view
                for i in range(0, len(windows), self.batch_size)
            ]
        return np.concatenate(chunks) if chunks else np.zeros(0)


def load_model(
    artifact_dir: Path,
    feature_names: list[str],
    schema_hash: str,
    symbol: str | None = None,
    model_type: str | None = None,
) -> LoadedModel:
    """Load and check an artifact: manifest schema, feature names and schema hash, weights path, checksum and
    finiteness, temperature > 0, architecture and parameter count; with `symbol` / `model_type`, that the
    artifact is a model of that symbol and type.

    Raises ModelArtifactError with one line naming the file and both sides of any mismatch. Nothing in the
    artifact is executed: weights are read with weights_only=True / allow_pickle=False.
    """
    directory = Path(artifact_dir)
    manifest = read_manifest(directory)
    manifest_path = directory / MANIFEST
    for field, wanted in (("symbol", symbol), ("model_type", model_type)):
        if wanted is not None and manifest[field] != wanted:
            raise ModelArtifactError(
                f"{manifest_path}: a {manifest['model_type']} model of {manifest['symbol']}, "
                f"not the {model_type or manifest['model_type']} model of {symbol or manifest['symbol']} asked for"
            )
    check_features(manifest, feature_names, schema_hash, manifest_path)
    weights = read_weights(directory, manifest)
    try:
        config = TrainConfig(**manifest["training_config"])
        scaler = Scaler.from_dict(manifest["scaler"], list(feature_names))
    except (TypeError, KeyError, ValueError) as error:
        raise ModelArtifactError(
            f"{manifest_path}: training config or scaler not understood by this version: {error!r}"
        ) from error
    if not (np.isfinite(scaler.mean).all() and np.isfinite(scaler.std).all() and (scaler.std > 0).all()):
        raise ModelArtifactError(f"{manifest_path}: scaler holds a non-finite mean or a std that is not > 0")
    if manifest["model_type"] == "sklearn":
        model: nn.Module | LogisticDirectionModel = _logistic(
            weights, manifest, len(feature_names), directory
        )
    else:
        model = _torch_model(manifest, weights, config, len(feature_names), directory)
    return LoadedModel(
        directory=directory,
        manifest=manifest,
        model=model,
        scaler=scaler,
        temperature=float(manifest["calibration"]["temperature"]),
        seq_len=int(manifest["seq_len"]),
    )


def _torch_model(
    manifest: dict[str, Any], weights: dict[str, Any], config: TrainConfig, features: int, directory: Path
) -> nn.Module:
    model = build_torch_model(manifest["model_type"], features, config)
    expected = manifest.get("architecture")
    if not isinstance(expected, dict) or "summary" not in expected:
        raise ModelArtifactError(f"{directory / MANIFEST}: manifest has no architecture summary")
    if str(model) != expected["summary"] or parameter_count(model) != manifest["parameter_count"]:
        raise ModelArtifactError(
            f"{directory / MANIFEST}: describes a {manifest['model_type']} of {manifest['parameter_count']:,} "
            f"parameters but its training config builds another architecture of {parameter_count(model):,}"
        )
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise ModelArtifactError(
            f"{directory / manifest['weights_file']}: weights do not fit the manifest's architecture "
            f"({manifest['parameter_count']:,} parameters, {manifest['model_type']}): "
            + " ".join(str(error).split())[:300]
        ) from error
    return model.eval()


def _logistic(
    weights: dict[str, Any], manifest: dict[str, Any], features: int, directory: Path
) -> LogisticDirectionModel:
    path = directory / manifest["weights_file"]
    try:
        model = LogisticDirectionModel.from_arrays(weights)
    except (KeyError, IndexError, ValueError) as error:
        raise ModelArtifactError(f"{path}: weights are not a logistic model: {error!r}") from error
    if model.parameter_count != manifest["parameter_count"] or len(model.coef) != len(SUMMARIES) * features:
        raise ModelArtifactError(
            f"{path}: manifest describes {manifest['parameter_count']} parameters for {features} features but "
            f"the weights hold {model.parameter_count}"
        )
    return model
