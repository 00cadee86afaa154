"""Small real models trained on synthetic features, for the registry and ensemble tests."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from trading_assets.features.pipeline import compute_features
from trading_assets.features.store import feature_matrix
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.market.venues import STATED_FEE_BPS
from trading_assets.ml.artifacts import sha256_of, sign_manifest
from trading_assets.ml.config import TrainConfig
from trading_assets.ml.policy import CostPolicy, PromotionPolicy
from trading_assets.ml.train import TrainResult, TrainSpec
from trading_assets.ml.train import train as train_matrix

START = datetime(2024, 1, 2, tzinfo=UTC)
#: 14 days, as the demo: at the 5-minute horizon the economics bound needs 480 periods in the test part
DAYS = 14


def synthetic_matrix(predictability: float, symbol: str = "BTC-USD"):
    candles = SyntheticSource(predictability=predictability).fetch(
        symbol, START - timedelta(days=1), START + timedelta(days=DAYS)
    )
    frame = compute_features(candles, START, START + timedelta(days=DAYS), history_start=date(2023, 11, 10))
    return feature_matrix(frame)


#: What the small tests judge under: the default policy on 2 folds, the synthetic venue's stated fee.
POLICY, COSTS = PromotionPolicy(folds=2), CostPolicy(fee_bps=STATED_FEE_BPS["synthetic"])


def train(model_type: str, predictability: float, models_dir: Path, **config: object) -> TrainResult:
    spec = TrainSpec(
        model_type,
        "BTC-USD",
        models_dir,
        TrainConfig(max_epochs=2, samples_per_epoch=4096, **config),
        POLICY,
        COSTS,
    )
    return train_matrix(synthetic_matrix(predictability), spec)


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory) -> dict[str, TrainResult]:
    """A passing and a failing model of the cheap type, trained once per session."""
    models_dir = tmp_path_factory.mktemp("trained")
    return {
        "good": train("logistic", 0.4, models_dir),
        "noise": train("logistic", 0.0, models_dir),
    }


def copy_artifact(
    source: Path, target: Path, intercept_shift: float = 0.0, **manifest_changes: object
) -> Path:
    """A copy of a logistic artifact at `target` (its name is the version), see `rewrite_artifact`."""
    shutil.copytree(source, target)
    return rewrite_artifact(target, intercept_shift, **manifest_changes)


def rewrite_artifact(
    directory: Path,
    intercept_shift: float = 0.0,
    weights: dict[str, np.ndarray] | None = None,
    **manifest_changes: object,
) -> Path:
    """Rewrite a logistic artifact in place: intercept shifted or weights replaced, manifest fields changed;
    the manifest's weights sha256 follows the new weights and the manifest is re-signed (`sign_manifest`), so
    only the change itself can be refused."""
    path = directory / "weights.npz"
    if weights is None:
        with np.load(path, allow_pickle=False) as arrays:
            weights = {"coef": arrays["coef"], "intercept": arrays["intercept"] + intercept_shift}
    np.savez(path, **weights)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest.update(manifest_changes, weights_sha256=sha256_of(path))
    (directory / "manifest.json").write_text(json.dumps(manifest))
    sign_manifest(directory)
    return directory
