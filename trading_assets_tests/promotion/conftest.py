"""Small real models trained on synthetic features, for the registry and ensemble tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from trading_assets.features.pipeline import compute_features
from trading_assets.features.registry import FEATURE_SET_VERSION, MODEL_FEATURES, schema_hash
from trading_assets.features.store import feature_matrix
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.ml.config import TrainConfig
from trading_assets.ml.train import TrainResult, train_model

START = datetime(2024, 1, 2, tzinfo=UTC)
DAYS = 6


def synthetic_matrix(predictability: float, symbol: str = "BTC-USD"):
    candles = SyntheticSource(predictability=predictability).fetch(
        symbol, START - timedelta(days=1), START + timedelta(days=DAYS)
    )
    frame = compute_features(candles, START, START + timedelta(days=DAYS), history_start=date(2023, 11, 10))
    return feature_matrix(frame)


def train(model_type: str, predictability: float, models_dir: Path, **config: object) -> TrainResult:
    matrix = synthetic_matrix(predictability)
    return train_model(
        model_type,
        "BTC-USD",
        matrix.x,
        matrix.close,
        matrix.usable,
        matrix.minutes,
        list(MODEL_FEATURES),
        FEATURE_SET_VERSION,
        schema_hash(),
        TrainConfig(max_epochs=2, samples_per_epoch=4096, **config),
        models_dir,
    )


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory) -> dict[str, TrainResult]:
    """A passing and a failing model of the cheap type, trained once per session."""
    models_dir = tmp_path_factory.mktemp("trained")
    return {
        "good": train("sklearn", 0.7, models_dir),
        "noise": train("sklearn", 0.0, models_dir),
    }
