"""The cheap ensemble member: logistic regression on the latest step plus lagged summaries of the window.

Stored as plain numbers (`coef`, `intercept` in an .npz read with allow_pickle=False), never a pickle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

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
        return summaries_at(x, ends, seq_len) @ self.coef + self.intercept

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
