"""The gates decide on markets built to sit clearly on one side of them, never on a borderline one."""

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from trading_assets.features.pipeline import compute_features
from trading_assets.features.registry import FEATURE_SET_VERSION, MODEL_FEATURES, schema_hash
from trading_assets.features.store import feature_matrix
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.ml.artifacts import read_manifest
from trading_assets.ml.config import TrainConfig
from trading_assets.ml.data import Samples
from trading_assets.ml.gates import GateThresholds, blocking_failures, evaluate_gates, recorded_gates
from trading_assets.ml.train import report_on_test_part, train_model
from trading_assets_tests.conftest import SHARED_DATA

from .conftest import COLUMNS

REAL_BTC = SHARED_DATA / "binance_2026-03_paparocketeer-freqtrade-bot" / "BTC_USDT-1m.feather"
CONFIG = TrainConfig()


def demo_market_closes(days: int = 3) -> np.ndarray:
    start = datetime(2026, 11, 12, tzinfo=UTC)
    return (
        SyntheticSource(predictability=0.7)
        .fetch("BTC-USD", start, start + timedelta(days=days))["close"]
        .to_numpy()
    )


def flat_tick_real_closes() -> np.ndarray:
    """Real BTC closes on a $50 tick: most minutes do not move, so "not up" is the majority class."""
    if not REAL_BTC.exists():
        pytest.skip(f"real candles not found at {REAL_BTC} (../shared is absent)")
    close = pl.read_ipc(REAL_BTC)["close"].to_numpy()[:5000]
    return np.round(close / 50.0) * 50.0


def judged(close: np.ndarray, p_up: np.ndarray, ends: np.ndarray, horizon: int = 1, **config: float) -> dict:
    """Gate results of predictions `p_up` for the samples ending at `ends` (temperature 1)."""
    labels = (close[ends + horizon] > close[ends]).astype(np.float32)
    logits = np.log(np.clip(p_up, 1e-6, 1 - 1e-6) / np.clip(1 - p_up, 1e-6, 1))
    report = report_on_test_part(
        logits, 1.0, Samples(ends, labels), close, TrainConfig(horizon=horizon, **config)
    )
    return {gate.name: gate for gate in evaluate_gates(report, GateThresholds())}


def last_move_calls(close: np.ndarray, ends: np.ndarray) -> np.ndarray:
    return np.where(close[ends] > close[ends - 1], 0.8, 0.2)


@pytest.mark.parametrize("market", [demo_market_closes, flat_tick_real_closes])
@pytest.mark.parametrize("rule", ["always up", "never up", "last move"])
def test_one_line_rules_never_pass_the_skill_gate(market, rule: str) -> None:
    close = market()
    ends = np.arange(1, len(close) - 1)
    p_up = {
        "always up": np.full(len(ends), 0.8),
        "never up": np.full(len(ends), 0.2),
        "last move": last_move_calls(close, ends),
    }[rule]
    gates = judged(close, p_up, ends)
    assert not gates["skill_gate"].passed, gates["skill_gate"].describe()
    low, _ = gates["skill_gate"].interval
    assert low <= 0.0


def test_on_the_flat_tick_market_the_majority_class_alone_reaches_the_accuracy_gate() -> None:
    """What the old gates promoted: a model that always says "not up" clears accuracy; skill stops it."""
    close = flat_tick_real_closes()
    ends = np.arange(1, len(close) - 1)
    gates = judged(close, np.full(len(ends), 0.2), ends)
    assert gates["accuracy_gate"].measured > 0.6
    assert not gates["skill_gate"].passed


def test_a_model_that_knows_the_next_move_passes_skill() -> None:
    close = demo_market_closes()
    ends = np.arange(1, len(close) - 1)
    p_up = np.where(close[ends + 1] > close[ends], 0.9, 0.1)
    gates = judged(close, p_up, ends)
    assert gates["skill_gate"].passed and gates["accuracy_gate"].passed


def trending_closes(minutes: int = 3000, drift: float = 2e-4) -> tuple[np.ndarray, np.ndarray]:
    """Alternating 250-minute up and down trends with noise; returns closes and each minute's trend sign."""
    rng = np.random.default_rng(0)
    trend = np.where((np.arange(minutes) // 250) % 2 == 0, 1.0, -1.0)
    returns = drift * trend + 2e-4 * rng.standard_normal(minutes)
    return 100 * np.exp(np.cumsum(returns)), trend


def test_economics_gate_passes_a_signal_that_pays_after_fees_and_only_then() -> None:
    close, trend = trending_closes()
    ends = np.arange(1, len(close) - 1)
    follows_trend = np.where(trend[ends + 1] > 0, 0.8, 0.2)  # knows the regime: a handful of trades
    assert judged(close, follows_trend, ends)["economics_gate"].passed
    # the same signal when each trade costs more than a trend earns
    assert not judged(close, follows_trend, ends, fee_bps=600.0)["economics_gate"].passed
    # a signal that flips every minute pays the fee each time and loses, though it is often right
    flipping = np.where(np.arange(len(ends)) % 2 == 0, 0.8, 0.2)
    assert not judged(close, flipping, ends)["economics_gate"].passed


def test_economics_gate_asks_more_than_buy_and_hold() -> None:
    close, _ = trending_closes(drift=0.0)
    close = close * np.exp(np.arange(len(close)) * 1e-3)  # a market that only rises
    ends = np.arange(1, len(close) - 1)
    gates = judged(close, np.full(len(ends), 0.8), ends)  # long all the time: buy-and-hold itself
    assert gates["economics_gate"].measured <= 0 and not gates["economics_gate"].passed


def test_backtest_follows_the_horizon() -> None:
    close, trend = trending_closes()
    ends = np.arange(1, len(close) - 5)
    gates = judged(close, np.where(trend[ends] > 0, 0.8, 0.2), ends, horizon=5)
    report_periods = gates["economics_gate"].samples
    assert report_periods == pytest.approx(len(ends) / 5, abs=1)


@pytest.fixture(scope="module")
def trained_logistic(market, tmp_path_factory):
    config = TrainConfig(seq_len=10, max_epochs=1, samples_per_epoch=512)
    result = train_model(
        "logistic", "BTC-USD", market.x, market.close, market.usable, market.minutes, COLUMNS, "fs-1",
        "schema-5", config, tmp_path_factory.mktemp("models"),
    )  # fmt: skip
    return result, read_manifest(result.artifact_dir)


def test_gates_are_recorded_in_the_manifest_and_re_read_from_it(trained_logistic) -> None:
    result, manifest = trained_logistic
    assert manifest["gates"]["thresholds"] == GateThresholds().to_dict()
    assert recorded_gates(manifest) == result.gates
    stricter = {
        **manifest,
        "gates": {**manifest["gates"], "thresholds": {**GateThresholds().to_dict(), "min_accuracy": 0.99}},
    }
    assert not next(g for g in recorded_gates(stricter) if g.name == "accuracy_gate").passed
    with pytest.raises(ValueError, match="never judged"):
        recorded_gates({key: value for key, value in manifest.items() if key != "gates"})


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
    matrix = feature_matrix(frame)
    result = train_model(
        "logistic", "BTC-USD", matrix.x, matrix.close, matrix.usable, matrix.minutes, list(MODEL_FEATURES),
        FEATURE_SET_VERSION, schema_hash(), TrainConfig(), tmp_path, observed=matrix.observed,
    )  # fmt: skip
    gates = {gate.name: gate for gate in result.gates}
    assert gates["accuracy_gate"].measured < 0.6 and not gates["accuracy_gate"].passed
    assert blocking_failures(result.gates)
