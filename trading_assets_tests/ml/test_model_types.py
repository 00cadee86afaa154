"""The model-type catalogue: names, former names, default weights, and artifacts saved under a former name."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from trading_assets.ml import TrainConfig, load_model
from trading_assets.ml.artifacts import sign_manifest
from trading_assets.ml.model_types import (
    ALIASES,
    CATALOGUE,
    DEFAULT_WEIGHTS,
    MODEL_TYPES,
    UnknownModelType,
    canonical_name,
    canonical_weights,
    stored_path,
)

from .conftest import COLUMNS, train_on

FORMER, TODAY = next(iter(ALIASES.items()))


def test_every_record_is_complete_and_the_default_weights_sum_to_one() -> None:
    assert tuple(CATALOGUE) == MODEL_TYPES and len(MODEL_TYPES) == len(set(MODEL_TYPES))
    for name, record in CATALOGUE.items():
        assert record.name == name and record.description and record.dagster_kind
        assert record.default_weight > 0 and callable(record.fit) and callable(record.load)
    assert sum(DEFAULT_WEIGHTS.values()) == pytest.approx(1.0)
    assert not set(ALIASES) & set(CATALOGUE) and set(ALIASES.values()) <= set(CATALOGUE)


def test_former_names_map_to_today_and_unknown_names_are_refused() -> None:
    assert canonical_name(FORMER) == TODAY
    assert all(canonical_name(name) == name for name in MODEL_TYPES)
    with pytest.raises(UnknownModelType, match="unknown model type 'xgboost'"):
        canonical_name("xgboost")
    assert canonical_weights({FORMER: 0.5}) == {TODAY: 0.5}
    with pytest.raises(UnknownModelType, match="twice"):
        canonical_weights({FORMER: 0.5, TODAY: 0.5})


def test_stored_path_keeps_a_directory_written_under_the_former_name(tmp_path) -> None:
    assert stored_path(tmp_path, TODAY, "BTC-USD") == tmp_path / TODAY / "BTC-USD"
    (tmp_path / FORMER / "BTC-USD").mkdir(parents=True)
    assert stored_path(tmp_path, TODAY, "BTC-USD") == tmp_path / FORMER / "BTC-USD"
    assert stored_path(tmp_path, TODAY, "ETH-USD") == tmp_path / TODAY / "ETH-USD"
    (tmp_path / TODAY / "BTC-USD").mkdir(parents=True)
    assert stored_path(tmp_path, TODAY, "BTC-USD") == tmp_path / TODAY / "BTC-USD"


def test_an_artifact_saved_under_the_former_name_loads_as_today_s_type(market, tmp_path) -> None:
    config = TrainConfig(seq_len=10, max_epochs=1, samples_per_epoch=512)
    result = train_on(market, TODAY, config, tmp_path / "models", symbol="BTC-USD")
    old = shutil.copytree(result.artifact_dir, tmp_path / FORMER / "BTC-USD" / result.artifact_dir.name)
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({**manifest, "model_type": FORMER}))
    sign_manifest(old)  # as that version signed it
    for asked in (TODAY, FORMER, None):
        loaded = load_model(old, COLUMNS, "schema-5", symbol="BTC-USD", model_type=asked)
        assert loaded.manifest["model_type"] == TODAY
    fresh = load_model(result.artifact_dir, COLUMNS, "schema-5")
    np.testing.assert_array_equal(loaded.predict_proba(market.x[:50]), fresh.predict_proba(market.x[:50]))


def test_reading_the_catalogue_imports_no_torch() -> None:
    """The command line lists the model types without paying for torch and scikit-learn."""
    code = "import sys, trading_assets.cli; print(sorted({'torch', 'sklearn'} & set(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


#: A tiny LSTM training in a fresh interpreter; prints the heavy modules it imported.
TORCH_TRAINING = """
import sys, tempfile
from pathlib import Path
import numpy as np
from trading_assets.features.store import FeatureMatrix
from trading_assets.ml import TrainConfig
from trading_assets.ml.train import TrainSpec, train
rng = np.random.default_rng(0)
x = rng.standard_normal((600, 3)).astype(np.float32)
close = 100 * np.exp(np.cumsum(0.001 * rng.standard_normal(600)))
minutes = np.datetime64("2024-01-01T00:00") + np.arange(600).astype("timedelta64[m]")
matrix = FeatureMatrix(x, minutes, close, np.ones(600, bool), np.ones(600, bool), ("a", "b", "c"))
config = TrainConfig(seq_len=10, max_epochs=1, samples_per_epoch=64, hidden=4)
train(matrix, TrainSpec("lstm", "BTC-USD", Path(tempfile.mkdtemp()), config, schema_hash="h"))
print(sorted({"torch", "sklearn"} & set(sys.modules)))
"""


def test_a_torch_training_imports_no_scikit_learn() -> None:
    """scikit-learn adds ~120 MB to a training process's memory: only the logistic model type pays for it."""
    output = subprocess.run(
        [sys.executable, "-c", TORCH_TRAINING], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip().splitlines()[-1] == "['torch']"
