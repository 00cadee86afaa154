"""The evidence the gates rest on: dependence-aware lower bounds, the naive family, and the simulation table
(the issue's "must show"): how often a model without skill, or a signal without information, would pass.

`pytest -s trading_assets_tests/ml/test_evidence.py` prints the table as Markdown (the README's copy);
TA_SIMULATION_TABLE=<path> also writes it there.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import pytest
from scipy.signal import lfilter
from scipy.stats import norm

from trading_assets.ml.backtest import TradingCosts, signal_backtest
from trading_assets.ml.evidence import (
    CONFIDENCE,
    MIN_BATCHES,
    NAIVE_LAGS,
    adjusted_confidence,
    batch_layout,
    mean_lower_bound,
    naive_family,
    skill_evidence,
    strongest_rule,
)

# --- unit tests ----------------------------------------------------------------------------------------------


def test_constant_series_is_bounded_by_its_value():
    assert mean_lower_bound(np.full(5000, 0.3), block=15) == pytest.approx(0.3, abs=1e-12)
    assert mean_lower_bound(np.zeros(600), block=1) == 0.0


def test_iid_normal_coverage_is_nominal():
    """On independent normal samples the bound lies below the true mean about 95 % of the time."""
    rng = np.random.default_rng(7)
    runs = 2000
    values = 0.1 + rng.standard_normal((runs, 1200))
    below = np.mean([mean_lower_bound(row, block=1) <= 0.1 for row in values])
    assert abs(below - CONFIDENCE) <= 2 * math.sqrt(CONFIDENCE * (1 - CONFIDENCE) / runs)


def test_too_few_batches_is_no_evidence():
    # batches of at least 60 samples (block 1): 8 batches need 480
    assert batch_layout(479, 1) == (7, 60)
    assert mean_lower_bound(np.ones(479), block=1) == -math.inf
    assert mean_lower_bound(np.ones(480), block=1) == pytest.approx(1.0)
    # horizon 60: batches of at least 10 x 60 samples, so 8 batches need 4,800
    assert batch_layout(4799, 60) == (7, 600)
    assert mean_lower_bound(np.ones(4799), block=60) == -math.inf
    assert batch_layout(4800, 60) == (8, 600)
    # long series: never more than 20 batches
    assert batch_layout(500_000, 1)[0] == 20
    assert MIN_BATCHES == 8


def test_bound_rejects_bad_input():
    with pytest.raises(ValueError, match="finite"):
        mean_lower_bound(np.array([0.0, np.nan] * 400), block=1)
    with pytest.raises(ValueError, match="block"):
        mean_lower_bound(np.zeros(1000), block=0)


def test_adjusted_confidence_splits_the_error_rate():
    assert adjusted_confidence(0.95, 1) == pytest.approx(0.95)
    assert adjusted_confidence(0.95, 4) == pytest.approx(0.9875)
    with pytest.raises(ValueError):
        adjusted_confidence(0.95, 0)


def test_naive_family_calls_by_hand():
    close = np.array([10.0, 11.0, 10.0, 12.0, 12.0, 11.0, 13.0, 13.0, 12.0, 14.0] * 7)  # 70 rows
    ends = np.array([1, 2, 4, 5, 6, 65])
    calls = naive_family(close, ends, horizon=3, majority_up=True)
    lags = sorted({*NAIVE_LAGS, 3})
    assert list(calls) == [
        "majority_class",
        "constant_long",
        "constant_short",
        *[name for lag in lags for name in (f"last_{lag}m_move", f"reverse_last_{lag}m_move")],
    ]
    assert calls["majority_class"].tolist() == [True] * 6
    assert naive_family(close, ends, 3, majority_up=False)["majority_class"].tolist() == [False] * 6
    assert calls["constant_long"].tolist() == [True] * 6 and calls["constant_short"].tolist() == [False] * 6
    T, F = True, False
    # last minute: 10->11 up, 11->10 down, 12->12 flat (not up), 12->11 down, 11->13 up, 12->11 (rows 64, 65)
    assert calls["last_1m_move"].tolist() == [T, F, F, F, T, F]
    assert calls["reverse_last_1m_move"].tolist() == [F, T, T, T, F, T]  # a flat minute reverses to up
    # last 2 minutes: rows 1 and 2 have fewer rows before them and compare with row 0 (10)
    assert calls["last_2m_move"].tolist() == [T, F, T, F, T, F]
    # last 3 minutes (the horizon, added to the lags): 11>10, 10=10, 12>11, 11>10, 13>12, 11>10
    assert calls["last_3m_move"].tolist() == [T, F, T, T, T, T]
    assert calls["reverse_last_3m_move"].tolist() == [F, T, F, F, F, F]
    # last 60 minutes: rows before 60 against row 0 (10); row 65 against row 5 (11 = 11)
    assert calls["last_60m_move"].tolist() == [T, F, T, T, T, F]
    assert calls["last_2m_move"].dtype == bool


def test_strongest_rule_is_chosen_on_earlier_samples():
    # earlier: the last minute's move continues; later: it reverses. The rule is chosen on the earlier part.
    rng = np.random.default_rng(3)
    close = 100 + np.cumsum(np.sign(rng.standard_normal(400)))
    ends = np.arange(1, 399)
    rose = close[ends] > close[ends - 1]
    earlier = ends < 200
    labels = np.where(earlier, rose, ~rose).astype(float)
    calls = naive_family(close, ends, horizon=1, majority_up=True)
    on_earlier = strongest_rule({name: up[earlier] for name, up in calls.items()}, labels[earlier])
    assert on_earlier == "last_1m_move"
    # hindsight on the evaluation samples would pick the reverse rule: never the rival a model is judged against
    on_later = strongest_rule({name: up[~earlier] for name, up in calls.items()}, labels[~earlier])
    assert on_later == "reverse_last_1m_move"
    # ties go to the first name in sorted order
    tied = {"b": np.array([True, False]), "a": np.array([True, False]), "c": np.array([False, False])}
    assert strongest_rule(tied, np.array([1.0, 0.0])) == "a"


def test_skill_evidence_fields():
    rng = np.random.default_rng(0)
    labels = rng.random(6000) > 0.5
    model = np.where(rng.random(6000) < 0.6, labels, ~labels)
    rival = np.ones(6000, bool)
    out = skill_evidence(model, labels.astype(float), rival, block=5)
    assert out["samples"] == 6000
    assert out["model_accuracy"] == pytest.approx(np.mean(model == labels))
    assert out["rival_accuracy"] == pytest.approx(np.mean(labels))
    assert out["margin"] == pytest.approx(out["model_accuracy"] - out["rival_accuracy"])
    assert 0 < out["margin_lower_bound"] < out["margin"]
    assert out["batches"] == 20 and out["confidence"] == CONFIDENCE


# --- the simulation table -------------------------------------------------------------------------------------

HORIZONS = (1, 5, 15, 60)
RUNS = 1000
SKILL_SAMPLES = 7 * 1440  # a week of one-minute samples
ECONOMICS_DAYS = 30
EDGES = {"edge 3 pts": 0.03, "edge 5 pts": 0.05}  # the true edges of the power rows, over a rival at 50 %
#: 16 false-pass rows: each is allowed 5 % plus its simulation error at a Bonferroni split over the rows (about
#: 3 standard errors; at 2 standard errors one of 16 rows would cross by chance in about a third of tables).
FALSE_PASS_ROWS = 16
TOLERANCE = 0.05 + norm.ppf(1 - 0.05 / FALSE_PASS_ROWS) * math.sqrt(0.05 * 0.95 / RUNS)
CHUNK = 250
Z = norm.ppf(CONFIDENCE)


@dataclass
class Row:
    experiment: str
    horizon: int
    samples: int
    old_rate: float | None  # today's bound (independent samples, normal); None where it has no counterpart
    rate: float  # the new decision
    kind: str  # "false pass" or "power"


#: A Gaussian AR(1) with this coefficient, cut at its median, is a 0/1 series with lag-1 autocorrelation 0.6
#: ((2/pi) arcsin(phi) = 0.6).
STICKY_PHI = math.sin(0.3 * math.pi)


def _ar1(rng: np.random.Generator, runs: int, n: int, phi: float) -> np.ndarray:
    """Per run a stationary Gaussian AR(1) series with unit variance (float32)."""
    start = phi * rng.standard_normal((runs, 1), dtype=np.float32)
    noise = rng.standard_normal((runs, n), dtype=np.float32)
    series, _ = lfilter(np.float32([math.sqrt(1 - phi**2)]), np.float32([1.0, -phi]), noise, axis=1, zi=start)
    return series


def _switching(rng: np.random.Generator, runs: int, n: int, mean_run: float) -> np.ndarray:
    """Per run a random up/down call that switches with probability 1/mean_run per sample."""
    switches = rng.random((runs, n), dtype=np.float32) < 1.0 / mean_run
    return (np.cumsum(switches, axis=1) % 2).astype(bool) ^ (rng.random((runs, 1)) < 0.5)


def _labels_and_rival(
    rng: np.random.Generator, runs: int, n: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Labels 'up over the next `horizon` minutes' of a random walk (neighbours overlap by horizon - 1
    minutes) and the rival last_{horizon}m_move, a rule with no skill on a random walk."""
    steps = rng.standard_normal((runs, n + 2 * horizon), dtype=np.float32)
    close = np.concatenate([np.zeros((runs, 1), np.float32), np.cumsum(steps, axis=1)], axis=1)
    ends = horizon + np.arange(n)
    return close[:, ends + horizon] > close[:, ends], close[:, ends] > close[:, ends - horizon]


def _skill_rows(horizon: int, seed: int) -> list[Row]:
    """Three models judged against the rival last_{horizon}m_move on the same labels (a week of minutes):
    drifting: a random call that holds for 10 minutes on average, independent of the market (no skill);
    sticky: right or wrong in runs, 50 % right, correctness with lag-1 autocorrelation 0.6 (no skill);
    edge 3 pts / edge 5 pts: the same runs, 53 % / 55 % right against the rival's 50 % (power)."""
    rng = np.random.default_rng(seed)
    names = ("drifting", "sticky", *EDGES)
    old, new = dict.fromkeys(names, 0), dict.fromkeys(names, 0)
    for _ in range(RUNS // CHUNK):
        labels, rival = _labels_and_rival(rng, CHUNK, SKILL_SAMPLES, horizon)
        latent = _ar1(rng, CHUNK, SKILL_SAMPLES, STICKY_PHI)
        models = {
            "drifting": _switching(rng, CHUNK, SKILL_SAMPLES, 10.0),
            "sticky": labels ^ (latent < 0.0),
            **{name: labels ^ (latent < norm.ppf(0.5 - edge)) for name, edge in EDGES.items()},
        }
        for name, model in models.items():
            difference = (model == labels).astype(np.float64) - (rival == labels)
            # today's bound: independent samples, normal approximation
            today = difference.mean(axis=1) - Z * difference.std(axis=1, ddof=1) / math.sqrt(SKILL_SAMPLES)
            old[name] += int(np.sum(today > 0))
            new[name] += sum(
                skill_evidence(m, lab, r, horizon)["margin_lower_bound"] > 0
                for m, lab, r in zip(model, labels, rival, strict=True)
            )
    return [
        Row(
            f"skill: {name}",
            horizon,
            SKILL_SAMPLES,
            old[name] / RUNS,
            new[name] / RUNS,
            "power" if name in EDGES else "false pass",
        )
        for name in names
    ]


def _economics_rows(horizon: int, seed: int) -> list[Row]:
    """A random, slowly drifting signal (AR(1) probability around 0.5, 0.98 per period) traded long/flat for
    30 days on returns with no drift and clustered volatility (hourly regimes), at zero cost: the boundary,
    any cost or drift only makes passing rarer. Rows: the decision (beats the strictest constant) and the
    bound against flat alone, which is what tests the bound. Today's rule: free shorting, compounded return
    above max(0, buy-and-hold) on the point estimate."""
    rng = np.random.default_rng(seed)
    periods = ECONOMICS_DAYS * 1440 // horizon
    hours = -(-periods * horizon // 60)
    costs = TradingCosts(fee_bps=0.0, slippage_bps=0.0, half_spread_bps=0.0)
    decision = alone = old = 0
    for _ in range(RUNS // CHUNK):
        hourly_vol = np.exp(0.5 * _ar1(rng, CHUNK, hours, 0.95))
        vol = hourly_vol[:, np.arange(periods) * horizon // 60]  # the regime of the hour a period starts in
        returns = 1e-3 * math.sqrt(horizon) * vol * rng.standard_normal((CHUNK, periods), dtype=np.float32)
        probs = 0.5 + 0.1 * _ar1(rng, CHUNK, periods, 0.98)
        for p, r in zip(probs, returns, strict=True):
            out = signal_backtest(p, r, costs, horizon)
            decision += out["excess_lower_bound"] > 0
            alone += out["constants"]["flat"]["excess_lower_bound"] > 0
        free_short = np.where(probs > 0.55, 1.0, np.where(probs < 0.45, -1.0, np.nan))
        for p, r in zip(free_short, returns.astype(np.float64), strict=True):
            old += np.prod(1 + _hold(p) * r) - 1 > max(0.0, np.prod(1 + r) - 1)
    return [
        Row("economics: vs strictest constant", horizon, periods, old / RUNS, decision / RUNS, "false pass"),
        Row("economics: vs flat alone", horizon, periods, None, alone / RUNS, "false pass"),
    ]


def _hold(calls: np.ndarray) -> np.ndarray:
    last = np.maximum.accumulate(np.where(np.isnan(calls), -1, np.arange(len(calls))))
    return np.where(last >= 0, calls[np.maximum(last, 0)], 0.0)


def _markdown(rows: list[Row]) -> str:
    lines = [
        f"| experiment ({RUNS:,} runs each) | horizon (min) | samples | today's rule | new decision | measures |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        old = "n/a" if row.old_rate is None else f"{row.old_rate:.1%}"
        lines.append(
            f"| {row.experiment} | {row.horizon} | {row.samples:,} | {old} | {row.rate:.1%} | {row.kind} |"
        )
    return "\n".join(
        [
            *lines,
            "",
            "Skill rows: a week of one-minute samples (labels of neighbouring samples overlap by horizon - 1",
            "minutes), judged against the rival last_{horizon}m_move on a random walk (no skill). drifting: a",
            "random call held 10 minutes on average; sticky: 50 % right with correctness in runs (lag-1",
            "autocorrelation 0.6); edge 3 / 5 pts: the same runs, 53 % / 55 % right. Today's rule: the normal",
            "bound for independent samples; new: the batch-means bound, margin lower bound > 0.",
            "Economics rows: 30 days of non-overlapping periods, a random slowly drifting signal (no information)",
            "traded long/flat at zero cost on driftless returns with clustered volatility. Today's rule: free",
            "shorting, return above max(0, buy-and-hold) on the point estimate; new: the lower bound of the",
            "excess over the strictest constant > 0 (and, to test the bound itself, over flat alone).",
            f"A false-pass rate is within its simulation error up to {TOLERANCE:.1%} (5 % plus a Bonferroni",
            f"split of 5 % over the {FALSE_PASS_ROWS} false-pass rows).",
        ]
    )


@pytest.fixture(scope="module")
def table() -> list[Row]:
    rows: list[Row] = []
    for index, horizon in enumerate(HORIZONS):
        rows.extend(_skill_rows(horizon, seed=100 + index))
    for index, horizon in enumerate(HORIZONS):
        rows.extend(_economics_rows(horizon, seed=200 + index))
    markdown = _markdown(rows)
    print(f"\n{markdown}")
    if os.environ.get("TA_SIMULATION_TABLE"):
        with open(os.environ["TA_SIMULATION_TABLE"], "w") as handle:
            handle.write(markdown + "\n")
    return rows


def test_no_skill_and_no_information_pass_at_most_five_percent(table):
    for row in table:
        if row.kind == "false pass":
            assert row.rate <= TOLERANCE, f"{row.experiment} at horizon {row.horizon}: {row.rate:.1%}"


#: Power of the stated edges (53 % and 55 % right against a rival's 50 %, correctness in runs with lag-1
#: autocorrelation 0.6) over a week of one-minute samples, as measured with these seeds; asserted with a margin
#: of 5 points (about 3 standard errors of a power estimated from 1,000 runs).
EDGE_POWER = {
    "edge 3 pts": {1: 0.645, 5: 0.622, 15: 0.498, 60: 0.311},
    "edge 5 pts": {1: 0.967, 5: 0.936, 15: 0.852, 60: 0.565},
}


def test_a_true_edge_passes_with_the_stated_power(table):
    assert sum(row.kind == "false pass" for row in table) == FALSE_PASS_ROWS
    for row in table:
        if row.kind == "power":
            stated = EDGE_POWER[row.experiment.removeprefix("skill: ")][row.horizon]
            assert row.rate >= stated - 0.05, f"{row.experiment}, horizon {row.horizon}: power {row.rate:.1%}"
