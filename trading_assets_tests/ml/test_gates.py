"""The gates decide on markets built to sit clearly on one side of them, never on a borderline one."""

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from trading_assets.features.pipeline import compute_features
from trading_assets.features.store import feature_matrix
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.ml.artifacts import read_manifest
from trading_assets.ml.config import TrainConfig
from trading_assets.ml.data import Samples
from trading_assets.ml.evaluation import evidence_report
from trading_assets.ml.evidence import naive_family
from trading_assets.ml.gates import (
    blocking_failures,
    evaluate_gates,
    lost_to_champion,
    recorded_gates,
)
from trading_assets.ml.policy import CostPolicy, PromotionPolicy
from trading_assets.ml.train import TrainSpec, train
from trading_assets.ml.walk_forward import FoldPredictions, fold_parts
from trading_assets_tests.conftest import SHARED_DATA

from .conftest import TEST_COSTS, TEST_POLICY, train_on

REAL_BTC = SHARED_DATA / "binance_2026-03_paparocketeer-freqtrade-bot" / "BTC_USDT-1m.feather"


def demo_market_closes(days: int = 6) -> np.ndarray:
    start = datetime(2026, 11, 12, tzinfo=UTC)
    return (
        SyntheticSource(predictability=0.4)
        .fetch("BTC-USD", start, start + timedelta(days=days))["close"]
        .to_numpy()
    )


def judged(
    close: np.ndarray,
    p_up: np.ndarray,
    horizon: int = 1,
    costs: CostPolicy = TEST_COSTS,
    policy: PromotionPolicy = TEST_POLICY,
) -> dict:
    """Gate results of predictions `p_up` for the last 60 % of the samples of `close` (2 folds); the naive
    rule is chosen on the 40 % before them."""
    ends = np.arange(60, len(close) - horizon)
    labels = (close[ends + horizon] > close[ends]).astype(np.float32)
    split = int(len(ends) * 0.4)
    earlier = Samples(ends[:split], labels[:split])
    evaluated = Samples(ends[split:], labels[split:])
    logits = np.log(np.clip(p_up, 1e-6, 1 - 1e-6) / np.clip(1 - p_up, 1e-6, 1))[split:]
    folds, start = [], 0
    for index, part in enumerate(fold_parts(evaluated, policy.folds), start=1):
        stop = start + len(part.ends)
        folds.append(FoldPredictions(index, part, logits[start:stop], logits[start:stop], 1.0, "test", 0))
        start = stop
    report = evidence_report(folds, close, (earlier, earlier), horizon, policy, costs, comparisons=3)
    return {gate.name: gate for gate in evaluate_gates(report, policy)}


def calls_as_probabilities(up: np.ndarray) -> np.ndarray:
    return np.where(up, 0.8, 0.2)


RULES = list(naive_family(np.ones(100), np.arange(70, 90), TrainConfig.horizon, True))


#: The demo's models predict the direction over the default horizon (5 minutes).
HORIZON = TrainConfig.horizon


@pytest.mark.parametrize("rule", RULES)
def test_every_naive_rule_wrapped_as_a_model_is_refused_by_the_skill_gate_on_the_demo_market(rule) -> None:
    close = demo_market_closes()
    ends = np.arange(60, len(close) - HORIZON)
    p_up = calls_as_probabilities(naive_family(close, ends, HORIZON, True)[rule])
    gates = judged(close, p_up, horizon=HORIZON)
    assert not gates["skill_gate"].passed, gates["skill_gate"].describe()
    assert gates["skill_gate"].bound <= 0.0


def test_a_model_that_knows_the_next_move_passes_skill_and_accuracy() -> None:
    close = demo_market_closes()
    ends = np.arange(60, len(close) - HORIZON)
    gates = judged(close, calls_as_probabilities(close[ends + HORIZON] > close[ends]), horizon=HORIZON)
    assert gates["skill_gate"].passed and gates["accuracy_gate"].passed
    assert gates["skill_gate"].rival.startswith("rule ")


def trending_closes(minutes: int = 6000, drift: float = 2e-4) -> tuple[np.ndarray, np.ndarray]:
    """Alternating 250-minute up and down trends with noise; returns closes and each minute's trend sign."""
    rng = np.random.default_rng(0)
    trend = np.where((np.arange(minutes) // 250) % 2 == 0, 1.0, -1.0)
    returns = drift * trend + 2e-4 * rng.standard_normal(minutes)
    return 100 * np.exp(np.cumsum(returns)), trend


def test_economics_gate_passes_a_signal_that_pays_after_the_venue_s_costs_and_only_then() -> None:
    close, trend = trending_closes()
    ends = np.arange(60, len(close) - 1)
    follows_trend = np.where(trend[ends + 1] > 0, 0.8, 0.2)  # knows the regime: a handful of trades
    gates = judged(close, follows_trend)
    assert gates["economics_gate"].passed, gates["economics_gate"].describe()
    assert "break-even fee" in gates["economics_gate"].describe()
    # the same signal when each trade costs more than a trend earns (a venue charging 6 %)
    assert not judged(close, follows_trend, costs=CostPolicy(fee_bps=600.0))["economics_gate"].passed
    # a signal that flips every minute pays the costs each time and loses, though it is often right
    flipping = np.where(np.arange(len(ends)) % 2 == 0, 0.8, 0.2)
    assert not judged(close, flipping)["economics_gate"].passed


def test_economics_gate_asks_more_than_the_best_constant_position() -> None:
    close, _ = trending_closes(drift=0.0)
    close = close * np.exp(np.arange(len(close)) * 1e-3)  # a market that only rises
    ends = np.arange(60, len(close) - 1)
    gates = judged(close, np.full(len(ends), 0.8))  # long all the time: buy-and-hold itself
    assert not gates["economics_gate"].passed
    assert gates["economics_gate"].rival == "constant long"


def test_a_short_bias_in_a_falling_window_does_not_pass_on_a_spot_venue() -> None:
    """Without shorting (the default) a "short" call is flat: in a falling market it earns what flat earns."""
    close, _ = trending_closes(drift=0.0)
    close = close * np.exp(-np.arange(len(close)) * 1e-3)  # a market that only falls
    ends = np.arange(60, len(close) - 1)
    always_short = np.full(len(ends), 0.2)
    assert not judged(close, always_short)["economics_gate"].passed
    # where shorting is allowed, short-and-hold is a constant it must beat too
    shorting = CostPolicy(fee_bps=10.0, allow_short=True)
    assert not judged(close, always_short, costs=shorting)["economics_gate"].passed


def test_backtest_follows_the_horizon() -> None:
    close, trend = trending_closes()
    ends = np.arange(60, len(close) - 5)
    gates = judged(close, np.where(trend[ends] > 0, 0.8, 0.2), horizon=5)
    evaluated = len(ends) - int(len(ends) * 0.4)
    assert gates["economics_gate"].samples == pytest.approx(evaluated / 5, abs=2)


@pytest.fixture(scope="module")
def trained_logistic(market, tmp_path_factory):
    config = TrainConfig(seq_len=10, max_epochs=1, samples_per_epoch=512)
    result = train_on(market, "logistic", config, tmp_path_factory.mktemp("models"))
    return result, read_manifest(result.artifact_dir)


def test_the_policy_costs_and_folds_are_recorded_in_the_manifest_and_re_read_from_it(
    trained_logistic,
) -> None:
    result, manifest = trained_logistic
    assert manifest["gates"]["policy"] == TEST_POLICY.model_dump()
    assert manifest["gates"]["costs"] == TEST_COSTS.model_dump()
    assert len(manifest["metrics"]["folds"]) == TEST_POLICY.folds
    assert [fold["model"] for fold in manifest["metrics"]["folds"]] == ["serving model", "cold refit"]
    assert recorded_gates(manifest) == result.gates
    stricter = {**manifest["gates"]["policy"], "min_accuracy": 0.99}
    regraded = recorded_gates({**manifest, "gates": {**manifest["gates"], "policy": stricter}})
    assert not next(g for g in regraded if g.name == "accuracy_gate").passed
    with pytest.raises(ValueError, match="no promotion policy"):
        recorded_gates({key: value for key, value in manifest.items() if key != "gates"})


def test_each_fold_is_scored_by_a_model_trained_only_before_it(trained_logistic) -> None:
    result, manifest = trained_logistic
    first, second = manifest["metrics"]["folds"]
    test_range = manifest["data_ranges"]["test"]
    assert first["first_minute"] >= test_range["first_minute"] and first["last_row"] < second["first_row"]
    # fold 2's model trained on the training part plus the part of fold 1 that ends before fold 2 (purged)
    assert first["trained_samples"] == manifest["data_ranges"]["train"]["samples"]
    assert first["trained_samples"] < second["trained_samples"] < first["trained_samples"] + first["samples"]


def test_a_candidate_that_does_not_beat_the_model_in_service_stays_a_challenger(market, tmp_path) -> None:
    """A retrain on the same data is as good as the champion, not better: it is not promoted over it (at a
    venue cheap enough that the toy market's minute-by-minute signal pays, so only the champion stops it)."""
    config = TrainConfig(seq_len=10, max_epochs=1, samples_per_epoch=512, horizon=1)
    champion = train_on(market, "logistic", config, tmp_path, rows=3000)
    matrix_rows = len(market.x)
    candidate = train(
        _toy_matrix(market, matrix_rows),
        TrainSpec(
            "logistic",
            "BTC/USD",
            tmp_path,
            config,
            TEST_POLICY,
            CostPolicy(fee_bps=2.0),
            champion=champion.artifact_dir,
            feature_set_version="fs-1",
            schema_hash="schema-5",
        ),
    )
    skill = next(gate for gate in candidate.gates if gate.name == "skill_gate")
    assert skill.rival.startswith(f"champion {champion.artifact_dir.name}"), skill.describe()
    assert not skill.passed and lost_to_champion(candidate.gates)
    assert candidate.manifest["champion_version"] == champion.artifact_dir.name


def _toy_matrix(market, rows: int):
    from trading_assets.features.store import FeatureMatrix

    from .conftest import COLUMNS

    return FeatureMatrix(
        market.x[:rows],
        market.minutes[:rows],
        market.close[:rows],
        market.usable[:rows],
        np.ones(rows, bool),
        tuple(COLUMNS),
    )


def test_on_real_one_minute_candles_no_model_passes_the_gates(tmp_path) -> None:
    """What the README says: on real Binance minutes the logistic model is near a coin and is not promoted."""
    if not REAL_BTC.exists():
        pytest.skip(f"real candles not found at {REAL_BTC} (../shared is absent)")
    candles = (
        pl.read_ipc(REAL_BTC)
        .rename({"date": "minute"})
        .with_columns(pl.col("minute").dt.cast_time_unit("us"))
        .head(12 * 1440)
    )
    start = candles["minute"][0] + timedelta(days=1)
    frame = compute_features(candles, start, candles["minute"][-1], history_start=start.date())
    result = train(feature_matrix(frame), TrainSpec("logistic", "BTC-USD", tmp_path, policy=TEST_POLICY))
    gates = {gate.name: gate for gate in result.gates}
    assert gates["accuracy_gate"].measured < 0.6 and not gates["accuracy_gate"].passed
    assert blocking_failures(result.gates)
