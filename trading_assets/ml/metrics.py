"""Classification metrics with confidence intervals and temperature scaling (numpy only). Intervals are
two-sided at `CONFIDENCE`; bootstraps use a fixed seed, so a report is reproducible. The naive rules and the
gates' bounds are in `evidence.py`, the after-cost signal backtest in `backtest.py`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.stats import norm, rankdata

CONFIDENCE = 0.95
_BOOTSTRAP_ROUNDS = 200
_EPS = 1e-7


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(logits, dtype=np.float64)))


def bce_from_logits(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy computed stably from logits."""
    z = np.asarray(logits, dtype=np.float64)
    return float(np.mean(np.maximum(z, 0) - z * labels + np.log1p(np.exp(-np.abs(z)))))


def _bin_index(probs: np.ndarray, n_bins: int) -> np.ndarray:
    return np.minimum((probs * n_bins).astype(np.int64), n_bins - 1)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """L1 calibration error: equal-width bins on the positive-class probability, weighted by bin count."""
    probs = np.asarray(probs, dtype=np.float64)
    bins = _bin_index(probs, n_bins)
    gap = np.bincount(bins, weights=probs - labels, minlength=n_bins)
    return float(np.abs(gap).sum() / max(len(probs), 1))


def reliability_table(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> list[dict[str, float]]:
    """Non-empty bins: range, mean predicted probability, observed frequency of the positive class, count."""
    bins = _bin_index(np.asarray(probs, dtype=np.float64), n_bins)
    table = []
    for b in np.unique(bins):
        members = bins == b
        table.append(
            {
                "lower": b / n_bins,
                "upper": (b + 1) / n_bins,
                "mean_predicted": float(np.mean(probs[members])),
                "observed_frequency": float(np.mean(labels[members])),
                "count": int(members.sum()),
            }
        )
    return table


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the chance a positive scores above a negative (ties count half), from the
    scores' ranks (Mann-Whitney U). Here, not scikit-learn's, so a torch training does not import it."""
    ranks = rankdata(scores)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(logits: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict[str, Any]:
    probs = sigmoid(logits)
    labels = np.asarray(labels, dtype=np.float64)
    predicted = probs > 0.5
    positive = labels > 0.5
    clipped = np.clip(probs, _EPS, 1 - _EPS)
    both_classes = 0 < positive.sum() < len(positive)
    correct = predicted == positive
    return {
        "samples": len(labels),
        "accuracy": float(np.mean(correct)),
        "accuracy_interval": wilson_interval(int(correct.sum()), len(labels)),
        "ece_interval": _bootstrap_interval(
            lambda rows: expected_calibration_error(probs[rows], labels[rows], n_bins), len(labels)
        ),
        "base_rate": float(max(positive.mean(), 1 - positive.mean())),
        "ece": expected_calibration_error(probs, labels, n_bins),
        "brier": float(np.mean((probs - labels) ** 2)),
        "log_loss": float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))),
        "roc_auc": roc_auc(positive, probs) if both_classes else float("nan"),
        "confusion_matrix": [
            [int(np.sum(~positive & ~predicted)), int(np.sum(~positive & predicted))],
            [int(np.sum(positive & ~predicted)), int(np.sum(positive & predicted))],
        ],
    }


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T minimising the validation BCE of logits / T (searched over log T in [-4, 4])."""
    result = minimize_scalar(
        lambda log_t: bce_from_logits(logits / np.exp(log_t), labels), bounds=(-4.0, 4.0), method="bounded"
    )
    return float(np.exp(result.x))


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> list[float]:
    """Wilson score interval of a binomial proportion."""
    if n == 0:
        return [0.0, 1.0]
    z = norm.ppf(0.5 + confidence / 2)
    share = successes / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(centre - half), float(centre + half)]


def _bootstrap_interval(statistic, n: int, confidence: float = CONFIDENCE) -> list[float]:
    """Percentile interval of `statistic(rows)` over resamples of n rows with replacement (fixed seed)."""
    if n == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(0)
    values = [statistic(rng.integers(0, n, n)) for _ in range(_BOOTSTRAP_ROUNDS)]
    tail = (1 - confidence) / 2 * 100
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]
