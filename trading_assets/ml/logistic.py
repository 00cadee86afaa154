"""The cheap ensemble member: logistic regression on the latest step plus lagged summaries of the window.

Stored as plain numbers (`coef`, `intercept` in an .npz read with allow_pickle=False), never a pickle.
`fit_logistic_model` and `load_logistic_model` are the model type's fit and load (ml/model_types.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from trading_assets.ml import metrics
from trading_assets.ml.config import TrainConfig
from trading_assets.ml.data import Splits, calibration_windows
from trading_assets.ml.errors import ModelArtifactError
from trading_assets.ml.fit import FitOutcome, Fitted, ProgressCallback

SUMMARIES = ("last", "previous", "mean_5", "mean_window")
_CHUNK = 8192


def summary_features(windows: np.ndarray) -> np.ndarray:
    """(batch, seq_len, features) -> (batch, 4 * features): last step, step before, mean of last 5, window mean."""
    return np.concatenate(
        [windows[:, -1], windows[:, -2], windows[:, -5:].mean(axis=1), windows.mean(axis=1)], axis=1
    ).astype(np.float32)


def summaries_at(x: np.ndarray, ends: np.ndarray, seq_len: int) -> np.ndarray:
    """Summary features of the windows ending at `ends`, gathered chunk by chunk."""
    offsets = np.arange(1 - seq_len, 1)
    chunks = [summary_features(x[ends[i : i + _CHUNK, None] + offsets]) for i in range(0, len(ends), _CHUNK)]
    return np.concatenate(chunks)


@dataclass(frozen=True)
class LogisticDirectionModel:
    coef: np.ndarray  # (4 * features,)
    intercept: float

    def logits(self, windows: np.ndarray) -> np.ndarray:
        return summary_features(windows) @ self.coef + self.intercept

    def logits_at(self, x: np.ndarray, ends: np.ndarray, seq_len: int) -> np.ndarray:
        """Logits of the windows ending at `ends`, chunk by chunk: never all their summaries at once (at two
        years the training part's would be ~0.4 GB, and ~0.7 GB more as float64 for the product)."""
        chunks = [
            summaries_at(x, ends[i : i + _CHUNK], seq_len) @ self.coef + self.intercept
            for i in range(0, len(ends), _CHUNK)
        ]
        return np.concatenate(chunks) if chunks else np.zeros(0)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef, "intercept": np.array([self.intercept])}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> LogisticDirectionModel:
        return cls(np.asarray(arrays["coef"], dtype=np.float64), float(arrays["intercept"][0]))

    @property
    def parameter_count(self) -> int:
        return len(self.coef) + 1


def fit_logistic(
    x: np.ndarray, ends: np.ndarray, labels: np.ndarray, seq_len: int, c: float, max_samples: int, seed: int
) -> LogisticDirectionModel:
    """Fit on at most `max_samples` training windows drawn at random (seeded)."""
    if len(ends) > max_samples:
        pick = np.sort(np.random.default_rng(seed).choice(len(ends), max_samples, replace=False))
        ends, labels = ends[pick], labels[pick]
    model = LogisticRegression(C=c, max_iter=500)
    model.fit(summaries_at(x, ends, seq_len), labels.astype(np.int64))
    return LogisticDirectionModel(model.coef_[0].astype(np.float64), float(model.intercept_[0]))


def fit_logistic_model(
    x: np.ndarray,
    splits: Splits,
    config: TrainConfig,
    progress: ProgressCallback | None = None,
    initial: dict[str, Any] | None = None,
    replayed: int = 0,
) -> Fitted:
    """Fit on the training part in one pass (no epochs: `progress` is not called); one learning-curve entry.
    Always cold: `initial` must be None (`train.warm_start` never offers a parent for this type)."""
    if initial is not None:
        raise ValueError("the logistic model trains cold: it has no warm start")
    started = time.perf_counter()
    train = splits.train
    model = fit_logistic(
        x,
        train.ends,
        train.labels,
        config.seq_len,
        config.logistic_c,
        config.logistic_max_samples,
        config.seed,
    )
    seconds = time.perf_counter() - started
    val = calibration_windows(splits.val, config)
    val_logits, test_logits = (model.logits_at(x, part.ends, config.seq_len) for part in (val, splits.test))
    fitted_samples = min(len(train.ends), config.logistic_max_samples)
    curve = [
        {
            "epoch": 1,
            "loss": metrics.bce_from_logits(model.logits_at(x, train.ends, config.seq_len), train.labels),
            "val_loss": metrics.bce_from_logits(val_logits, val.labels),
            "val_accuracy": float(np.mean((val_logits > 0) == (val.labels > 0.5))),
        }
    ]
    architecture = {
        "summary": f"LogisticRegression(C={config.logistic_c}) on window summaries {list(SUMMARIES)}",
        "parameter_count": model.parameter_count,
    }
    outcome = FitOutcome(curve, 1, 1, seconds, fitted_samples / max(seconds, 1e-9), fitted_samples)
    return Fitted(model.arrays(), False, architecture, val_logits, test_logits, outcome)


def load_logistic_model(
    weights: dict[str, Any], manifest: dict[str, Any], config: TrainConfig, features: int, manifest_path: Path
) -> LogisticDirectionModel:
    """The stored coefficients, checked against the manifest's parameter count and the feature count."""
    path = manifest_path.parent / manifest["weights_file"]
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
