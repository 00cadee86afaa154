"""Evidence a promotion can rest on: lower confidence bounds that stay honest when samples are not independent,
the family of naive rules a model must beat, and the multiplicity adjustment (numpy and scipy only).

Why the bound is a batch-means bound. The per-sample quantities a gate averages are serially dependent: the
labels of neighbouring samples overlap (a 60-minute label shares 59 minutes with the next), a model's calls and
its correctness come in runs, and per-period strategy returns inherit the persistence of positions and of
volatility. A bound that treats the samples as independent is far too narrow: at horizon 60 a nominal 95 %
bound holds only about 63 % of the time, and a model without skill passes a third of the time. So
`mean_lower_bound` uses non-overlapping batch means (Schmeiser 1982; Flegal & Jones 2010): the series is cut
into consecutive batches of (near-)equal length, each batch's mean counts as one observation, and the bound is
the one-sided Student-t bound on those means with batches - 1 degrees of freedom. A batch is at least
`BLOCKS_PER_BATCH` (10) times the dependence the caller knows of (`block`: the label horizon in samples, 1 for
non-overlapping periods), at least `MIN_BATCH` (60) samples, and at least 1/`MAX_BATCHES` (1/20) of the
series, so there are 8 to 20 batches, each spanning many horizons. With the number of batches held fixed, the
t bound stays valid for any weakly dependent stationary series as the sample grows (fixed-b asymptotics),
with no kernel or bandwidth to choose, and it is plain arithmetic: deterministic, no seed, about a millisecond
on 500,000 samples. A moving or stationary block bootstrap would need the same block-length choice plus a seed
and hundreds of resamples, and its percentile bound does not remove the small-sample skew described next.
Fewer than `MIN_BATCHES` (8) batches is no evidence: the bound is minus infinity and a gate resting on it fails
(at horizon 60 that means fewer than 4,800 samples). On simulated models without skill (docs/assets-and-gates.md table, from
`trading_assets_tests/ml/test_evidence.py`) the false-pass rate is 4.5 to 6.4 % per 1,000-run cell where
5 % is nominal (the economics decision, against the strictest constant: under 1 %), against 6 to 37 % with the
bound for independent samples. The residual of about 0.7 point above 5 % in the most persistent cases (12,000
runs) comes from the skew of the t statistic on a week of samples when the rival is the label lagged by the
horizon; it shrinks as the sample grows.

Multiplicity. Each candidate model is judged in its own step, so the family that a run can promote from (the
model types judged for one symbol) is controlled by splitting the error rate equally: every candidate is
judged at `adjusted_confidence(confidence, candidates)`, Bonferroni's correction and the first step of
Holm's procedure, which is what a step that cannot see its siblings' p-values can apply. The naive rivals
need no correction: a candidate passes only if it beats every rival (an intersection-union test, Berger
1982), and the level of an intersection-union test is the largest level of its parts.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from scipy.stats import t as student_t

CONFIDENCE = 0.95
#: A batch spans at least this many times the dependence length the caller names (`block`).
BLOCKS_PER_BATCH = 10
#: ... and at least this many samples, for dependence no caller knows of (runs of calls, volatility).
MIN_BATCH = 60
#: ... and at least 1/MAX_BATCHES of the series: long series get longer batches, not more of them.
MAX_BATCHES = 20
#: Fewer batches than this is no evidence (the bound is -inf).
MIN_BATCHES = 8

#: Lags (minutes) of the last-move rules; the model's horizon is added when it is not among them.
NAIVE_LAGS = (1, 2, 5, 10, 15, 30, 60)


def batch_layout(samples: int, block: int) -> tuple[int, int]:
    """(batches, minimum batch length) `mean_lower_bound` uses for `samples` values with dependence length
    `block`; batches < `MIN_BATCHES` means no evidence. All samples are used: the batches are consecutive
    and as equal as the count allows (lengths differ by at most one sample)."""
    if block < 1:
        raise ValueError(f"block must be at least 1 sample, got {block}")
    length = max(BLOCKS_PER_BATCH * int(block), MIN_BATCH, math.ceil(samples / MAX_BATCHES))
    return samples // length, length


def mean_lower_bound(values: np.ndarray, block: int, confidence: float = CONFIDENCE) -> float:
    """One-sided lower confidence bound (at `confidence`) for the mean of a serially dependent series.

    `block` is the dependence length the caller knows of, in samples: the label horizon for per-sample
    quantities whose labels overlap, 1 for consecutive non-overlapping periods. Batch means with a Student-t
    bound (module docstring); -inf when the series is too short for `MIN_BATCHES` batches. A constant series
    is bounded by its value."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if not np.all(np.isfinite(values)):
        raise ValueError("mean_lower_bound needs finite values (a NaN or inf came in)")
    batches, length = batch_layout(len(values), block)
    if batches < MIN_BATCHES:
        return float("-inf")
    starts = np.linspace(0, len(values), batches + 1).round().astype(np.int64)
    means = np.add.reduceat(values, starts[:-1]) / np.diff(starts)
    centre = float(values.mean())
    spread = float(means.std(ddof=1))
    if spread <= 1e-12 * max(1.0, abs(centre)):  # a constant series: the rounding of the means is no spread
        return centre
    return centre - _t_quantile(confidence, batches - 1) * spread / math.sqrt(batches)


@functools.lru_cache(maxsize=256)
def _t_quantile(confidence: float, degrees_of_freedom: int) -> float:
    return float(student_t.ppf(confidence, degrees_of_freedom))


def adjusted_confidence(confidence: float, comparisons: int) -> float:
    """The confidence each of `comparisons` tests runs at so the family errs with at most 1 - `confidence`:
    1 - (1 - confidence) / comparisons (Bonferroni; Holm's first step). Rivals combined by an
    intersection-union test (beat each of them) are one comparison, not several."""
    if comparisons < 1:
        raise ValueError(f"comparisons must be at least 1, got {comparisons}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    return 1.0 - (1.0 - confidence) / comparisons


def naive_family(
    close: np.ndarray, ends: np.ndarray, horizon: int, majority_up: bool
) -> dict[str, np.ndarray]:
    """Boolean up-calls of the one-line rules a model must beat, for the samples ending at row `ends`.

    majority_class: `majority_up` for every sample; the caller decides it on data before the evaluation (the
        training labels), never on the labels being judged.
    constant_long / constant_short: always up / never up.
    last_{k}m_move: up when close[end] > close[end - k] (the move of the last k minutes continues);
    reverse_last_{k}m_move: the opposite call (up unless the close rose), for k in `NAIVE_LAGS` and the
        horizon. A sample with fewer than k rows before it compares with row 0.
    """
    close = np.asarray(close, dtype=np.float64)
    ends = np.asarray(ends, dtype=np.int64)
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 minute, got {horizon}")
    count = len(ends)
    calls: dict[str, np.ndarray] = {
        "majority_class": np.full(count, bool(majority_up)),
        "constant_long": np.ones(count, dtype=bool),
        "constant_short": np.zeros(count, dtype=bool),
    }
    for lag in sorted({*NAIVE_LAGS, int(horizon)}):
        rose = close[ends] > close[np.maximum(ends - lag, 0)]
        calls[f"last_{lag}m_move"] = rose
        calls[f"reverse_last_{lag}m_move"] = ~rose
    return calls


def rule_accuracies(calls: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
    """Share of samples each rule calls right (label > 0.5 is up)."""
    up = np.asarray(labels) > 0.5
    if len(up) == 0:
        raise ValueError("no samples to judge the naive rules on")
    return {name: float(np.mean(np.asarray(rule, dtype=bool) == up)) for name, rule in calls.items()}


def strongest_rule(calls: dict[str, np.ndarray], labels: np.ndarray) -> str:
    """The rule with the highest accuracy on these (earlier) samples; a tie goes to the first name in sorted
    order, so the choice is reproducible."""
    accuracies = rule_accuracies(calls, labels)
    return min(accuracies, key=lambda name: (-accuracies[name], name))


def skill_evidence(
    model_up: np.ndarray,
    labels: np.ndarray,
    rival_up: np.ndarray,
    block: int,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """Paired accuracy margin of a model over one rival with its dependence-aware lower bound.

    margin = mean(model correct - rival correct) over the samples; margin_lower_bound = `mean_lower_bound` of
    those differences with `block` (the horizon: labels of neighbouring samples overlap by horizon - 1
    minutes), -inf when the samples are too few for evidence."""
    up = np.asarray(labels) > 0.5
    model_correct = np.asarray(model_up, dtype=bool) == up
    rival_correct = np.asarray(rival_up, dtype=bool) == up
    if not len(up) == len(model_correct) == len(rival_correct):
        raise ValueError("model calls, rival calls and labels must have the same length")
    if len(up) == 0:
        raise ValueError("no samples to judge the model on")
    difference = model_correct.astype(np.float64) - rival_correct
    batches, length = batch_layout(len(up), block)
    return {
        "samples": len(up),
        "model_accuracy": float(model_correct.mean()),
        "rival_accuracy": float(rival_correct.mean()),
        "margin": float(difference.mean()),
        "margin_lower_bound": mean_lower_bound(difference, block, confidence),
        "confidence": confidence,
        "block": int(block),
        "batches": batches,
        "batch_length": length,
    }
