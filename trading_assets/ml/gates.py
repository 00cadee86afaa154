"""Promotion gates: what a model must show before it may serve. All of them block.

Each gate reads the evidence report (`ml.evaluation.evidence_report`: the pooled, calibrated out-of-sample
predictions of K walk-forward folds) and records the measured value, the bound it decided on, the threshold
of the policy (`ml.policy.PromotionPolicy`) and the strongest rival:

    accuracy_gate     pooled accuracy >= min_accuracy
    calibration_gate  pooled expected calibration error (15 bins, L1) <= max_calibration_error
    skill_gate        the lower confidence bound of (accuracy - rival accuracy) > min_skill_margin for every
                      rival: the strongest naive rule (chosen before the evaluation) and the model in service;
                      a candidate that does not beat the champion stays a challenger
    economics_gate    the lower confidence bound of the net return after the venue's costs minus the best
                      constant position (flat, long, short where allowed) > min_excess_return

The policy, the costs and the results are written into the artifact's manifest when it is trained; promotion
re-judges the recorded report against the recorded policy (`recorded_gates`) and refuses a policy looser than
the one in force (`policy.check_judged_not_looser`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from trading_assets.ml.policy import CostPolicy, PromotionPolicy

#: name -> what the gate asks, in the order they are reported. The one list of gates: checks, summaries and
#: promotion loop over it.
GATES: dict[str, str] = {
    "accuracy_gate": "Pooled out-of-sample accuracy of the walk-forward folds >= min_accuracy.",
    "calibration_gate": "Pooled expected calibration error of the walk-forward folds <= max_calibration_error.",
    "skill_gate": "Beats the strongest naive rule and the model in service by a dependence-aware "
    "lower confidence bound > min_skill_margin.",
    "economics_gate": "Net return after the venue's costs minus the best constant position: its "
    "dependence-aware lower bound > min_excess_return.",
}


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    measured: float
    bound: float  # what was decided on: the measured value itself, or its one-sided lower confidence bound
    threshold: float
    samples: int
    rival: str = ""
    detail: str = ""

    def describe(self) -> str:
        """One line: verdict, measured value, bound, threshold, rival and detail."""
        verdict = "passed" if self.passed else "FAILED"
        compare = "<=" if self.name == "calibration_gate" else (">=" if self.name == "accuracy_gate" else ">")
        bound = "" if self.bound == self.measured else f", lower bound {self.bound:+.4f}"
        rival = f" vs {self.rival}" if self.rival else ""
        return (
            f"{self.name} {verdict}: measured {self.measured:.4f}{bound} (needs {compare} {self.threshold:.4f})"
            f"{rival}, {self.samples} samples" + (f"; {self.detail}" if self.detail else "")
        )


def evaluate_gates(report: dict[str, Any], policy: PromotionPolicy) -> list[GateResult]:
    """Every gate in `GATES` judged on an evidence report."""
    calibrated, skill, backtest = report["calibrated"], report["skill"], report["backtest"]
    samples, folds = int(calibrated["samples"]), int(report["evaluation"]["folds"])
    accuracy, ece = float(calibrated["accuracy"]), float(calibrated["ece"])
    fold_accuracies = ", ".join(f"{fold['accuracy']:.3f}" for fold in report["folds"])
    rival = skill["rivals"][skill["strongest_rival"]]
    return [
        GateResult(
            "accuracy_gate",
            accuracy >= policy.min_accuracy,
            accuracy,
            accuracy,
            policy.min_accuracy,
            samples,
            detail=f"{folds} folds: {fold_accuracies}",
        ),
        GateResult(
            "calibration_gate",
            ece <= policy.max_calibration_error,
            ece,
            ece,
            policy.max_calibration_error,
            samples,
        ),
        GateResult(
            "skill_gate",
            skill["margin_lower_bound"] > policy.min_skill_margin,
            skill["margin"],
            skill["margin_lower_bound"],
            policy.min_skill_margin,
            samples,
            rival=f"{skill['strongest_rival']} (accuracy {rival['rival_accuracy']:.4f})",
            detail=f"{skill['confidence']:.2%} one-sided"
            + (f"; {skill['champion_note']}" if skill.get("champion_note") else ""),
        ),
        GateResult(
            "economics_gate",
            backtest["excess_lower_bound"] > policy.min_excess_return,
            backtest["excess_return"],
            backtest["excess_lower_bound"],
            policy.min_excess_return,
            int(backtest["periods"]),
            rival=f"constant {backtest['best_constant']}",
            detail=_economics_detail(backtest),
        ),
    ]


def _economics_detail(backtest: dict[str, Any]) -> str:
    costs = backtest["costs"]
    break_even = backtest.get("break_even_fee_bps")
    return (
        f"net return {backtest['return']:+.4f} after {costs['fee_bps']:g} bps fee + "
        f"{costs['slippage_bps']:g} slippage + {costs['half_spread_bps']:g} half spread per side, "
        f"{backtest['trades']} trades; break-even fee "
        + ("none" if break_even is None else f"{break_even:.1f} bps")
    )


def gate_record(results: list[GateResult], policy: PromotionPolicy, costs: CostPolicy) -> dict[str, Any]:
    """What the manifest keeps: the policy and costs the model was judged under, and each gate's result."""
    return {
        "policy": policy.model_dump(),
        "costs": costs.model_dump(),
        "results": [asdict(result) for result in results],
    }


def recorded_gates(manifest: dict[str, Any]) -> list[GateResult]:
    """The gates of an artifact, judged again from its own report against its recorded policy."""
    if "policy" not in manifest.get("gates", {}):
        raise ValueError(
            "the manifest records no promotion policy: the model was never judged on walk-forward evidence "
            "(trained by an older version); retrain it"
        )
    return evaluate_gates(manifest["metrics"], PromotionPolicy(**manifest["gates"]["policy"]))


def blocking_failures(results: list[GateResult]) -> list[GateResult]:
    return [result for result in results if not result.passed]


def lost_to_champion(results: list[GateResult]) -> bool:
    """Whether the candidate passed everything but the skill gate, whose strongest rival was the champion: it
    is kept as a challenger."""
    failed = blocking_failures(results)
    return len(failed) == 1 and failed[0].name == "skill_gate" and failed[0].rival.startswith("champion")
