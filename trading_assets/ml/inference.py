"""`load_model`: a checked artifact, ready to score the latest windows of the feature store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trading_assets.ml import metrics
from trading_assets.ml.artifacts import ModelArtifactError, check_features, read_manifest, read_weights
from trading_assets.ml.config import TrainConfig
from trading_assets.ml.data import Scaler, windows_of_rows
from trading_assets.ml.linear import SUMMARIES, LogisticDirectionModel
from trading_assets.ml.models import parameter_count
from trading_assets.ml.trainer import build_torch_model


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


def load_model(artifact_dir: Path, feature_names: list[str], schema_hash: str) -> LoadedModel:
    """Load and check an artifact: checksum, feature names and schema hash, architecture and parameter count.

    Raises ModelArtifactError naming both sides of any mismatch.
    """
    directory = Path(artifact_dir)
    manifest = read_manifest(directory)
    check_features(manifest, feature_names, schema_hash)
    weights = read_weights(directory, manifest)
    try:
        config = TrainConfig(**manifest["training_config"])
    except TypeError as error:
        raise ModelArtifactError(
            f"{directory}: training config not understood by this version: {error}"
        ) from error
    if manifest["model_type"] == "sklearn":
        model: nn.Module | LogisticDirectionModel = _logistic(weights, manifest, len(feature_names))
    else:
        model = _torch_model(manifest, weights, config, len(feature_names))
    return LoadedModel(
        directory=directory,
        manifest=manifest,
        model=model,
        scaler=Scaler.from_dict(manifest["scaler"], list(feature_names)),
        temperature=float(manifest["calibration"]["temperature"]),
        seq_len=int(manifest["seq_len"]),
    )


def _torch_model(
    manifest: dict[str, Any], weights: dict[str, Any], config: TrainConfig, features: int
) -> nn.Module:
    model = build_torch_model(manifest["model_type"], features, config)
    expected = manifest["architecture"]
    if str(model) != expected["summary"] or parameter_count(model) != expected["parameter_count"]:
        raise ModelArtifactError(
            f"manifest describes {expected['parameter_count']:,} parameters:\n{expected['summary']}\n"
            f"but its training config builds {parameter_count(model):,}:\n{model}"
        )
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise ModelArtifactError(
            f"weights do not fit the manifest's architecture ({expected['parameter_count']:,} parameters, "
            f"{manifest['model_type']}): {error}"
        ) from error
    return model.eval()


def _logistic(weights: dict[str, Any], manifest: dict[str, Any], features: int) -> LogisticDirectionModel:
    try:
        model = LogisticDirectionModel.from_arrays(weights)
    except (KeyError, IndexError, ValueError) as error:
        raise ModelArtifactError(f"weights are not a logistic model: {error}") from error
    if model.parameter_count != manifest["parameter_count"] or len(model.coef) != len(SUMMARIES) * features:
        raise ModelArtifactError(
            f"manifest describes {manifest['parameter_count']} parameters for {features} features but the "
            f"weights hold {model.parameter_count}"
        )
    return model
