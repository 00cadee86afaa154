"""Test metrics, reliability table, temperature scaling and a long/short signal backtest (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import roc_auc_score

MINUTES_PER_YEAR = 525_600
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


def classification_metrics(logits: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict[str, Any]:
    probs = sigmoid(logits)
    labels = np.asarray(labels, dtype=np.float64)
    predicted = probs > 0.5
    positive = labels > 0.5
    clipped = np.clip(probs, _EPS, 1 - _EPS)
    both_classes = 0 < positive.sum() < len(positive)
    return {
        "samples": len(labels),
        "accuracy": float(np.mean(predicted == positive)),
        "base_rate": float(max(positive.mean(), 1 - positive.mean())),
        "ece": expected_calibration_error(probs, labels, n_bins),
        "brier": float(np.mean((probs - labels) ** 2)),
        "log_loss": float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))),
        "roc_auc": float(roc_auc_score(positive, probs)) if both_classes else float("nan"),
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


def _annualised_sharpe(returns: np.ndarray) -> float:
    std = returns.std()
    return float(returns.mean() / std * np.sqrt(MINUTES_PER_YEAR)) if std > 0 else 0.0


def signal_backtest(probs: np.ndarray, next_returns: np.ndarray, fee_bps: float) -> dict[str, Any]:
    """Long when p > 0.5, else short, held one minute at a time; fee per unit of position change.

    `next_returns[k]` is the close-to-close return of the minute after sample k. Buy-and-hold pays one fee.
    """
    fee = fee_bps / 10_000
    position = np.where(np.asarray(probs) > 0.5, 1.0, -1.0)
    changes = np.abs(np.diff(position, prepend=0.0))
    strategy = position * next_returns - fee * changes
    hold = next_returns.astype(np.float64).copy()
    if len(hold):
        hold[0] -= fee
    moved = next_returns != 0
    return {
        "fee_bps": fee_bps,
        "minutes": len(next_returns),
        "return": float(np.prod(1 + strategy) - 1),
        "hit_rate": float(np.mean(position[moved] * next_returns[moved] > 0))
        if moved.any()
        else float("nan"),
        "turnover": float(changes.mean()) if len(changes) else 0.0,
        "sharpe": _annualised_sharpe(strategy),
        "buy_and_hold_return": float(np.prod(1 + hold) - 1),
        "buy_and_hold_sharpe": _annualised_sharpe(hold),
    }
