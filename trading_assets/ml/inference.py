"""`load_model`: a checked artifact, ready to score the latest windows of the feature store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
from trading_assets.ml.model_types import CATALOGUE, DirectionScorer, canonical_name


@dataclass(frozen=True)
class LoadedModel:
    directory: Path
    manifest: dict[str, Any]
    model: DirectionScorer
    scaler: Scaler
    temperature: float
    seq_len: int

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
        return metrics.sigmoid(self.model.logits(x) / self.temperature)


def load_model(
    artifact_dir: Path,
    feature_names: list[str],
    schema_hash: str,
    symbol: str | None = None,
    model_type: str | None = None,
) -> LoadedModel:
    """Load and check an artifact: manifest signature (`verify_manifest`: unsigned or edited after training
    is refused), manifest schema, feature names and schema hash, weights path, checksum and
    finiteness, temperature > 0, architecture and parameter count; with `symbol` / `model_type`, that the
    artifact is a model of that symbol and type (today's or a former name of it).

    Raises ModelArtifactError with one line naming the file and both sides of any mismatch. Nothing in the
    artifact is executed: weights are read with weights_only=True / allow_pickle=False.
    """
    directory = Path(artifact_dir)
    manifest = read_manifest(directory)
    manifest_path = directory / MANIFEST
    model_type = canonical_name(model_type) if model_type is not None else None
    for field, wanted in (("symbol", symbol), ("model_type", model_type)):
        if wanted is not None and manifest[field] != wanted:
            raise ModelArtifactError(
                f"{manifest_path}: a {manifest['model_type']} model of {manifest['symbol']}, "
                f"not the {model_type or manifest['model_type']} model of {symbol or manifest['symbol']} asked for"
            )
    check_features(manifest, feature_names, schema_hash, manifest_path)
    weights = read_weights(directory, manifest)
    try:
        config = TrainConfig.from_dict(manifest["training_config"])
        scaler = Scaler.from_dict(manifest["scaler"], list(feature_names))
    except (TypeError, KeyError, ValueError) as error:
        raise ModelArtifactError(
            f"{manifest_path}: training config or scaler not understood by this version: {error!r}"
        ) from error
    if not (np.isfinite(scaler.mean).all() and np.isfinite(scaler.std).all() and (scaler.std > 0).all()):
        raise ModelArtifactError(f"{manifest_path}: scaler holds a non-finite mean or a std that is not > 0")
    load = CATALOGUE[manifest["model_type"]].load  # read_manifest gave today's name
    model = load(weights, manifest, config, len(feature_names), manifest_path)
    return LoadedModel(
        directory=directory,
        manifest=manifest,
        model=model,
        scaler=scaler,
        temperature=float(manifest["calibration"]["temperature"]),
        seq_len=int(manifest["seq_len"]),
    )
