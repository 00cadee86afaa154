"""The ensemble's model comparison says why a model type is left out: its failed blocking gates, read from the
newest trained artifact's manifest (not from the event log)."""

from pathlib import Path

import pytest

from trading_assets.promotion.service import exclusion_reason
from trading_assets_tests.promotion.conftest import copy_artifact


@pytest.fixture
def models_dir(trained_pair, tmp_path: Path) -> Path:
    """In the training layout: BTC-USD's logistic model passing, then a newer one failing; ETH-USD's passing."""
    good, noise = trained_pair
    models_dir = tmp_path / "models"
    copy_artifact(good, models_dir / "logistic" / "BTC-USD" / "20240101T000000000000Z")
    copy_artifact(noise, models_dir / "logistic" / "BTC-USD" / "20240102T000000000000Z")
    copy_artifact(good, models_dir / "logistic" / "ETH-USD" / "20240101T000000000000Z", symbol="ETH-USD")
    return models_dir


@pytest.fixture(scope="module")
def trained_pair(tmp_path_factory) -> tuple[Path, Path]:
    from trading_assets_tests.promotion.conftest import train

    directory = tmp_path_factory.mktemp("trained")
    return train("logistic", 0.4, directory).artifact_dir, train("logistic", 0.0, directory).artifact_dir


def test_the_reason_names_the_failed_gate_with_measured_and_threshold(models_dir: Path) -> None:
    reason = exclusion_reason(models_dir, "logistic", "BTC-USD")  # the newest trained decides
    assert reason.startswith("excluded: accuracy_gate FAILED: measured 0.")
    assert "(needs >= 0.6800)" in reason
    assert exclusion_reason(models_dir, "logistic", "ETH-USD") == "not promoted"
    assert exclusion_reason(models_dir, "transformer", "BTC-USD") == "not trained"
    assert exclusion_reason(models_dir, "lstm", "SOL-USD") == "not trained"
