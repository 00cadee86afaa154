"""`train` with the registry's schema trains on the model features only: a matrix of other columns is refused, naming them."""

import numpy as np
import pytest

from trading_assets.features.store import FeatureMatrix
from trading_assets.ml.config import TrainConfig
from trading_assets.ml.train import TrainSpec, train


def test_a_matrix_of_other_columns_is_refused_before_training(tmp_path) -> None:
    rows = 10
    matrix = FeatureMatrix(
        x=np.zeros((rows, 1), dtype=np.float32),
        minutes=np.arange(rows).astype("datetime64[m]"),
        close=np.ones(rows),
        usable=np.ones(rows, dtype=bool),
        observed=np.ones(rows, dtype=bool),
        names=("rsi_14",),
    )
    with pytest.raises(ValueError, match=r"BTC-USD: the feature matrix holds \['rsi_14'\]"):
        train(matrix, TrainSpec("lstm", "BTC-USD", tmp_path / "models", TrainConfig()))
    assert not (tmp_path / "models").exists()


def test_a_refusing_before_write_leaves_no_artifact(market, tiny_config, tmp_path) -> None:
    from .conftest import train_on

    def refuse() -> None:
        raise RuntimeError("run 1a2b3c4d is FAILURE")

    with pytest.raises(RuntimeError, match="FAILURE"):
        train_on(market, "logistic", tiny_config, tmp_path, before_write=refuse)
    assert not list(tmp_path.rglob("*"))
