"""Promotion gates over a model's test metrics (calibrated probabilities: what would be served)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GateThresholds:
    min_accuracy: float = 0.68
    max_calibration_error: float = 0.05
    #: accuracy must beat the majority-class base rate by this much (a warning, not a gate)
    min_margin_over_base_rate: float = 0.01


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    blocking: bool
    measured: float
    threshold: float
    samples: int

    def describe(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return f"{self.name} {verdict}: measured {self.measured:.4f}, threshold {self.threshold:.4f}, {self.samples} samples"


def evaluate_gates(test_metrics: dict[str, Any], thresholds: GateThresholds) -> list[GateResult]:
    """accuracy_gate and calibration_gate (blocking) and beats_base_rate (warning) on calibrated test metrics."""
    samples = int(test_metrics["samples"])
    accuracy, ece, base_rate = (float(test_metrics[k]) for k in ("accuracy", "ece", "base_rate"))
    return [
        GateResult(
            "accuracy_gate",
            accuracy >= thresholds.min_accuracy,
            True,
            accuracy,
            thresholds.min_accuracy,
            samples,
        ),
        GateResult(
            "calibration_gate",
            ece <= thresholds.max_calibration_error,
            True,
            ece,
            thresholds.max_calibration_error,
            samples,
        ),
        GateResult(
            "beats_base_rate",
            accuracy >= base_rate + thresholds.min_margin_over_base_rate,
            False,
            accuracy,
            base_rate + thresholds.min_margin_over_base_rate,
            samples,
        ),
    ]


def blocking_failures(results: list[GateResult]) -> list[GateResult]:
    return [result for result in results if result.blocking and not result.passed]
