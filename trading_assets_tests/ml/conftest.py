from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from trading_assets.features.store import FeatureMatrix
from trading_assets.ml import TrainConfig
from trading_assets.ml.policy import CostPolicy, PromotionPolicy
from trading_assets.ml.train import TrainResult, TrainSpec, train

COLUMNS = ["open", "high", "low", "close", "volume"]
SCHEMA = "schema-5"


@dataclass(frozen=True)
class Market:
    x: np.ndarray
    close: np.ndarray
    usable: np.ndarray
    minutes: np.ndarray


@pytest.fixture(scope="session")
def market() -> Market:
    """4,000 minutes whose next move follows feature 0; a gap of unusable windows early on (enough test
    samples for the gates' batch-means bounds: at least 8 batches of 60)."""
    rng = np.random.default_rng(0)
    rows = 4000
    x = rng.standard_normal((rows, len(COLUMNS))).astype(np.float32)
    moves = 0.002 * np.tanh(2 * x[:, 0]) + 0.0004 * rng.standard_normal(rows)
    close = 100 * np.exp(np.cumsum(np.concatenate([[0.0], moves[:-1]])))
    usable = np.ones(rows, bool)
    usable[:10] = False
    usable[700:720] = False
    minutes = np.datetime64("2024-01-01T00:00") + np.arange(rows).astype("timedelta64[m]")
    return Market(x, close, usable, minutes)


@pytest.fixture
def tiny_config() -> TrainConfig:
    return TrainConfig(
        seq_len=10, max_epochs=3, patience=5, samples_per_epoch=512, batch_size=64, hidden=8, d_model=16
    )


#: The policy of the small tests: the default one, judged on 2 walk-forward folds (the least allowed).
TEST_POLICY = PromotionPolicy(folds=2)
TEST_COSTS = CostPolicy(fee_bps=10.0)


def train_on(
    market: Market,
    model_type: str,
    config: TrainConfig,
    models_dir: Path,
    rows: int | None = None,
    parent: Path | None = None,
    symbol: str = "BTC/USD",
    policy: PromotionPolicy = TEST_POLICY,
    before_write: Callable[[], None] | None = None,
) -> TrainResult:
    """`train` on the first `rows` rows of the toy market (its columns are `COLUMNS`, schema "schema-5"); its
    label is the next minute's move, so the horizon is 1."""
    config = replace(config, horizon=1)
    stop = rows or len(market.x)
    matrix = FeatureMatrix(
        market.x[:stop],
        market.minutes[:stop],
        market.close[:stop],
        market.usable[:stop],
        np.ones(stop, bool),
        tuple(COLUMNS),
    )
    spec = TrainSpec(
        model_type,
        symbol,
        models_dir,
        config,
        policy,
        TEST_COSTS,
        parent=parent,
        feature_set_version="fs-1",
        schema_hash=SCHEMA,
    )
    return train(matrix, spec, before_write=before_write)
