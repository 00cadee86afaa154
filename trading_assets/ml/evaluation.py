"""The evidence report the gates judge: pooled walk-forward predictions against their rivals, after costs.

Rivals (skill): the strongest rule of the naive family (`evidence.naive_family`), chosen on the validation
part, i.e. on data before the evaluation; and the model in service for the symbol (the champion), compared
on the samples it never saw (after its validation part). Bounds are one-sided at the policy's confidence
split over the model types judged for a symbol (`evidence.adjusted_confidence`), dependence-aware
(`evidence.mean_lower_bound`, batches at least the horizon long). Costs (economics): `backtest.signal_backtest`
of the runtime's long/flat signal, per-side fee, slippage and half spread, against the best constant position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from trading_assets.ml import backtest, evidence, metrics
from trading_assets.ml.data import Samples
from trading_assets.ml.policy import CostPolicy, PromotionPolicy
from trading_assets.ml.walk_forward import FoldPredictions


@dataclass(frozen=True)
class ChampionCalls:
    """The model in service scored on the evaluation samples: its up-calls, and which samples it never saw."""

    version: str
    up: np.ndarray
    unseen: np.ndarray  # bool per evaluation sample
    note: str = ""  # why it is not compared (another horizon, no unseen samples, ...)


def trading_costs(costs: CostPolicy) -> backtest.TradingCosts:
    return backtest.TradingCosts(**costs.model_dump())


def evidence_report(
    folds: list[FoldPredictions],
    close: np.ndarray,
    earlier: tuple[Samples, Samples],
    horizon: int,
    policy: PromotionPolicy,
    costs: CostPolicy,
    comparisons: int,
    champion: ChampionCalls | None = None,
    calibration_bins: int = 15,
    minutes: np.ndarray | None = None,
) -> dict[str, Any]:
    """Metrics of the pooled calibrated fold predictions, skill over the rivals, the after-cost backtest and
    each fold's figures. `earlier`: the (train, validation) parts, on which the naive rule is chosen.
    `minutes`: the UTC minute of each row of `close`; given, the backtest's equity curves carry their times."""
    ends = np.concatenate([fold.samples.ends for fold in folds])
    labels = np.concatenate([fold.samples.labels for fold in folds])
    calibrated = np.concatenate([fold.calibrated_logits for fold in folds])
    probs = metrics.sigmoid(calibrated)
    confidence = evidence.adjusted_confidence(policy.confidence, comparisons)
    rule, majority_up = _chosen_rule(close, earlier, horizon)
    rule_up = evidence.naive_family(close, ends, horizon, majority_up)[rule]
    skill = _skill(probs > 0.5, labels, rule, rule_up, champion, horizon, confidence)
    return {
        "evaluation": {
            "folds": len(folds),
            "samples": len(labels),
            "confidence": policy.confidence,
            "adjusted_confidence": confidence,
            "comparisons": comparisons,
        },
        "uncalibrated": metrics.classification_metrics(
            np.concatenate([fold.raw_logits for fold in folds]), labels, calibration_bins
        ),
        "calibrated": metrics.classification_metrics(calibrated, labels, calibration_bins),
        "reliability_table": metrics.reliability_table(probs, labels, calibration_bins),
        "skill": skill,
        "backtest": _backtest(probs, ends, close, horizon, costs, confidence, minutes),
        "folds": [_fold_figures(fold, close, horizon, costs, rule, majority_up) for fold in folds],
    }


def _chosen_rule(close: np.ndarray, earlier: tuple[Samples, Samples], horizon: int) -> tuple[str, bool]:
    """The strongest naive rule on the validation part; the majority class of the training part."""
    train, val = earlier
    majority_up = bool(np.mean(train.labels) > 0.5)
    calls = evidence.naive_family(close, val.ends, horizon, majority_up)
    return evidence.strongest_rule(calls, val.labels), majority_up


def _skill(
    model_up: np.ndarray,
    labels: np.ndarray,
    rule: str,
    rule_up: np.ndarray,
    champion: ChampionCalls | None,
    horizon: int,
    confidence: float,
) -> dict[str, Any]:
    """Margin over each rival with its lower bound; the strongest rival is the one with the lowest bound (a
    candidate must beat each: an intersection-union test)."""
    rivals = {f"rule {rule}": evidence.skill_evidence(model_up, labels, rule_up, horizon, confidence)}
    champion_note = "no model in service"
    if champion is not None:
        champion_note = champion.note
        if not champion_note:
            unseen = champion.unseen
            rivals[f"champion {champion.version}"] = evidence.skill_evidence(
                model_up[unseen], labels[unseen], champion.up[unseen], horizon, confidence
            )
    strongest = min(rivals, key=lambda name: rivals[name]["margin_lower_bound"])
    return {
        "confidence": confidence,
        "rivals": rivals,
        "strongest_rival": strongest,
        "margin": rivals[strongest]["margin"],
        "margin_lower_bound": rivals[strongest]["margin_lower_bound"],
        "champion_note": champion_note,
    }


def _traded(ends: np.ndarray, horizon: int) -> np.ndarray:
    """Every horizon-th sample: consecutive holdings never overlap."""
    return np.arange(0, len(ends), horizon)


def _backtest(
    probs: np.ndarray,
    ends: np.ndarray,
    close: np.ndarray,
    horizon: int,
    costs: CostPolicy,
    confidence: float,
    minutes: np.ndarray | None = None,
) -> dict[str, Any]:
    traded = _traded(ends, horizon)
    period_returns = close[ends[traded] + horizon] / close[ends[traded]] - 1.0
    return backtest.signal_backtest(
        probs[traded],
        period_returns,
        trading_costs(costs),
        horizon,
        confidence=confidence,
        period_starts=None if minutes is None else minutes[ends[traded]],
    )


def _fold_figures(
    fold: FoldPredictions, close: np.ndarray, horizon: int, costs: CostPolicy, rule: str, majority_up: bool
) -> dict[str, Any]:
    """What one fold shows: its model, accuracy and calibration, margin over the rule, net excess."""
    ends, labels = fold.samples.ends, fold.samples.labels
    probs = metrics.sigmoid(fold.calibrated_logits)
    positive = labels > 0.5
    rule_up = evidence.naive_family(close, ends, horizon, majority_up)[rule]
    result = _backtest(probs, ends, close, horizon, costs, evidence.CONFIDENCE)
    return {
        "fold": fold.index,
        "model": fold.refit,
        "trained_samples": fold.trained_samples,
        "samples": len(labels),
        "first_row": int(ends[0]),
        "last_row": int(ends[-1]),
        "accuracy": float(np.mean((probs > 0.5) == positive)),
        "ece": metrics.expected_calibration_error(probs, labels),
        "margin_over_rule": float(np.mean((probs > 0.5) == positive) - np.mean(rule_up == positive)),
        "net_return": result["return"],
        "excess_return": result["excess_return"],
        "temperature": fold.temperature,
        "refit_seconds": round(fold.seconds, 2),
    }
