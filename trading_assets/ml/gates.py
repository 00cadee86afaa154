"""Promotion gates: what a model must show on its test part before it may serve. All of them block.

Each gate reads the test report of `train_model` (calibrated probabilities: what would be served) and records
the measured value, its threshold, the sample count and a confidence interval (`ml.metrics.CONFIDENCE`):

    accuracy_gate     calibrated test accuracy >= min_accuracy
    calibration_gate  expected calibration error (15 bins, L1) <= max_calibration_error
    skill_gate        accuracy beats the best naive forecaster (majority class; same direction as the last
                      move) with the one-sided lower confidence bound of the paired margin > min_skill_margin,
                      so a constant or a sign-of-the-last-move model never passes
    economics_gate    the after-fee backtest of the runtime's signal at the model's horizon beats flat and
                      buy-and-hold: return - max(0, buy-and-hold return) > min_excess_return

The thresholds and results are written into the artifact's manifest when it is trained; promotion re-reads
them from there (`recorded_gates`), so there is one source of what a model was judged against.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class GateThresholds:
    min_accuracy: float = 0.68
    max_calibration_error: float = 0.05
    #: the lower confidence bound of (accuracy - best naive accuracy) must exceed this
    min_skill_margin: float = 0.0
    #: after-fee return minus max(0, buy-and-hold return) must exceed this (0: beat both)
    min_excess_return: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


#: Thresholds every model passes, for harnesses that measure something other than model quality (the runtime
#: benchmark, scoring tests): never the default of any asset or command.
ACCEPT_ANY_MODEL = GateThresholds(
    min_accuracy=0.0, max_calibration_error=1.0, min_skill_margin=-1.0, min_excess_return=-10.0
)

#: name -> what the gate asks, in the order they are reported. The one list of gates: checks, summaries and
#: promotion loop over it.
GATES: dict[str, str] = {
    "accuracy_gate": "Calibrated test accuracy >= min_accuracy.",
    "calibration_gate": "Test expected calibration error <= max_calibration_error.",
    "skill_gate": "Accuracy beats the best naive rule (majority class, last move) at 95 % confidence.",
    "economics_gate": "After-fee backtest at the model's horizon beats flat and buy-and-hold.",
}


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    measured: float
    threshold: float
    samples: int
    interval: tuple[float, float]
    detail: str = ""

    def describe(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        low, high = self.interval
        return (
            f"{self.name} {verdict}: measured {self.measured:.4f} ({low:.4f}..{high:.4f}), threshold "
            f"{self.threshold:.4f}, {self.samples} samples" + (f"; {self.detail}" if self.detail else "")
        )


def evaluate_gates(report: dict[str, Any], thresholds: GateThresholds) -> list[GateResult]:
    """Every gate in `GATES` judged on a test report {"calibrated", "skill", "backtest"}."""
    calibrated, skill, backtest = report["calibrated"], report["skill"], report["backtest"]
    samples = int(calibrated["samples"])
    accuracy, ece = float(calibrated["accuracy"]), float(calibrated["ece"])
    excess = backtest["return"] - max(0.0, backtest["buy_and_hold_return"])
    return [
        GateResult(
            "accuracy_gate", accuracy >= thresholds.min_accuracy, accuracy, thresholds.min_accuracy,
            samples, tuple(calibrated["accuracy_interval"]),
        ),
        GateResult(
            "calibration_gate", ece <= thresholds.max_calibration_error, ece,
            thresholds.max_calibration_error, samples, tuple(calibrated["ece_interval"]),
        ),
        GateResult(
            "skill_gate", skill["margin_lower_bound"] > thresholds.min_skill_margin, skill["margin"],
            thresholds.min_skill_margin, samples, _around(skill["margin"], skill["margin_lower_bound"]),
            detail=f"vs {skill['best_naive']} at {skill['naive'][skill['best_naive']]['accuracy']:.4f}",
        ),
        GateResult(
            "economics_gate", excess > thresholds.min_excess_return, excess, thresholds.min_excess_return,
            int(backtest["periods"]), _shifted(backtest["return_interval"], excess - backtest["return"]),
            detail=f"return {backtest['return']:+.4f} after {backtest['fee_bps']} bps fees, buy-and-hold "
            f"{backtest['buy_and_hold_return']:+.4f}, {backtest['trades']} trades",
        ),
    ]  # fmt: skip


def _around(centre: float, lower: float) -> tuple[float, float]:
    """The two-sided interval whose lower end is the one-sided bound `lower` (90 % for a 95 % bound)."""
    return (lower, 2 * centre - lower)


def _shifted(interval: list[float], offset: float) -> tuple[float, float]:
    return (interval[0] + offset, interval[1] + offset)


def gate_record(results: list[GateResult], thresholds: GateThresholds) -> dict[str, Any]:
    """What the manifest keeps: the thresholds and each gate's result."""
    return {"thresholds": thresholds.to_dict(), "results": [asdict(result) for result in results]}


def recorded_gates(manifest: dict[str, Any]) -> list[GateResult]:
    """The gates of an artifact, judged again from its own report against its recorded thresholds."""
    if "gates" not in manifest:
        raise ValueError("the manifest records no gate results: the model was never judged")
    return evaluate_gates(manifest["metrics"], GateThresholds(**manifest["gates"]["thresholds"]))


def blocking_failures(results: list[GateResult]) -> list[GateResult]:
    return [result for result in results if not result.passed]
