"""Test metrics with confidence intervals, naive forecasters, temperature scaling and the after-fee signal
backtest (numpy only). Intervals are two-sided at `CONFIDENCE`; bootstraps use a fixed seed, so a report is
reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.stats import norm, rankdata

MINUTES_PER_YEAR = 525_600
CONFIDENCE = 0.95
_BOOTSTRAP_ROUNDS = 200
_EQUITY_POINTS = 200
_EPS = 1e-7


@dataclass(frozen=True)
class SignalThresholds:
    """The runtime's signal: long once p_up rises above `long_above`, short once it falls below `short_below`,
    and in between the position held stays (hysteresis: a probability wandering around 0.5 does not trade
    every minute). Flat until the first call."""

    long_above: float = 0.55
    short_below: float = 0.45

    def signal(self, p_up: float, held: str = "flat") -> str:
        if p_up > self.long_above:
            return "long"
        if p_up < self.short_below:
            return "short"
        return held

    def positions(self, probs: np.ndarray) -> np.ndarray:
        """+1 long, -1 short, 0 flat (before the first signal) for each probability in turn."""
        probs = np.asarray(probs, dtype=np.float64)
        calls = np.where(probs > self.long_above, 1.0, np.where(probs < self.short_below, -1.0, np.nan))
        last_call = np.maximum.accumulate(np.where(np.isnan(calls), -1, np.arange(len(calls))))
        return np.where(last_call >= 0, calls[np.maximum(last_call, 0)], 0.0)


#: The signal the runtime emits by default and the economics gate judges.
DEFAULT_SIGNAL = SignalThresholds()


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


def naive_forecasts(
    close: np.ndarray, ends: np.ndarray, labels: np.ndarray, horizon: int
) -> dict[str, np.ndarray]:
    """Up/not-up calls of the one-line rules a model must beat, for the samples ending at `ends`.

    majority_class: the test part's more frequent label for every sample (hindsight: the strictest constant);
    last_move: "up" when the close rose over the `horizon` minutes up to the sample, as the label asks next.
    """
    last_move = close[ends] > close[np.maximum(ends - horizon, 0)]
    return {"majority_class": np.full(len(ends), np.mean(labels) > 0.5), "last_move": last_move}


def skill_report(
    predicted_up: np.ndarray, labels: np.ndarray, naive: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Accuracy margin over the best naive forecaster with its paired one-sided lower confidence bound.

    The bound is the normal approximation of the mean of per-sample differences (model correct minus
    naive correct) at `CONFIDENCE`; it is taken against each naive rule and the smallest one is reported.
    """
    positive = labels > 0.5
    model_correct = (predicted_up == positive).astype(np.float64)
    z = norm.ppf(CONFIDENCE)
    per_rule = {}
    for name, calls in naive.items():
        difference = model_correct - (calls == positive)
        spread = difference.std(ddof=1) / np.sqrt(len(difference)) if len(difference) > 1 else np.inf
        per_rule[name] = {
            "accuracy": float(np.mean(calls == positive)),
            "margin": float(difference.mean()),
            "margin_lower_bound": float(difference.mean() - z * spread),
        }
    weakest = min(per_rule, key=lambda name: per_rule[name]["margin_lower_bound"])
    return {
        "samples": len(labels),
        "confidence": CONFIDENCE,
        "naive": per_rule,
        "best_naive": weakest,
        "margin": per_rule[weakest]["margin"],
        "margin_lower_bound": per_rule[weakest]["margin_lower_bound"],
    }


def _annualised_sharpe(returns: np.ndarray, periods_per_year: float) -> float:
    std = returns.std()
    return float(returns.mean() / std * np.sqrt(periods_per_year)) if std > 0 else 0.0


def _max_drawdown(equity: np.ndarray) -> float:
    """Largest fall from a running peak, as a fraction of the peak (0 for a curve that never falls)."""
    if len(equity) == 0:
        return 0.0
    peaks = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    return float(np.max(1 - equity / peaks))


def _thin(curve: np.ndarray) -> list[float]:
    """At most `_EQUITY_POINTS` evenly spaced points of a curve, its last point included."""
    if len(curve) <= _EQUITY_POINTS:
        return [float(v) for v in curve]
    index = np.linspace(0, len(curve) - 1, _EQUITY_POINTS).round().astype(np.int64)
    return [float(v) for v in curve[index]]


def signal_backtest(
    probs: np.ndarray,
    period_returns: np.ndarray,
    fee_bps: float,
    horizon: int = 1,
    thresholds: SignalThresholds = DEFAULT_SIGNAL,
) -> dict[str, Any]:
    """The runtime's signal traded one `horizon` at a time, after fees, against buy-and-hold and flat.

    Sample k takes the signal of `probs[k]` (long, short or flat by `thresholds`) and holds it for the
    `period_returns[k]`, the close-to-close return over the next `horizon` minutes; consecutive samples are
    consecutive, non-overlapping periods. A fee of `fee_bps` is paid per unit of position change (a
    reversal pays twice); buy-and-hold pays one fee to enter.
    """
    fee = fee_bps / 10_000
    position = thresholds.positions(probs)
    changes = np.abs(np.diff(position, prepend=0.0))
    strategy = position * period_returns - fee * changes
    hold = period_returns.astype(np.float64).copy()
    if len(hold):
        hold[0] -= fee
    equity, hold_equity = np.cumprod(1 + strategy), np.cumprod(1 + hold)
    periods_per_year = MINUTES_PER_YEAR / horizon
    moved = (period_returns != 0) & (position != 0)
    return {
        "fee_bps": fee_bps,
        "horizon": horizon,
        "periods": len(period_returns),
        "return": float(equity[-1] - 1) if len(equity) else 0.0,
        "return_interval": _bootstrap_interval(
            lambda rows: float(np.prod(1 + strategy[rows]) - 1), len(strategy)
        ),
        "sharpe": _annualised_sharpe(strategy, periods_per_year),
        "max_drawdown": _max_drawdown(equity),
        "trades": int(np.count_nonzero(changes)),
        "time_in_market": float(np.mean(position != 0)) if len(position) else 0.0,
        "hit_rate": float(np.mean(position[moved] * period_returns[moved] > 0))
        if moved.any()
        else float("nan"),
        "turnover": float(changes.mean()) if len(changes) else 0.0,
        "buy_and_hold_return": float(hold_equity[-1] - 1) if len(hold_equity) else 0.0,
        "buy_and_hold_sharpe": _annualised_sharpe(hold, periods_per_year),
        "buy_and_hold_max_drawdown": _max_drawdown(hold_equity),
        "equity_curve": {"strategy": _thin(equity), "buy_and_hold": _thin(hold_equity)},
    }
