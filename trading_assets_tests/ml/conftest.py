from dataclasses import dataclass

import numpy as np
import pytest

from trading_assets.ml import TrainConfig

COLUMNS = ["open", "high", "low", "close", "volume"]


@dataclass(frozen=True)
class Market:
    x: np.ndarray
    close: np.ndarray
    usable: np.ndarray
    minutes: np.ndarray


@pytest.fixture(scope="session")
def market() -> Market:
    """1,600 minutes whose next move follows feature 0; a gap of unusable windows in the middle."""
    rng = np.random.default_rng(0)
    rows = 1600
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
