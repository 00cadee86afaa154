import json

import numpy as np
import pytest
import torch

from trading_assets.ml import ModelArtifactError, TrainConfig, load_model
from trading_assets.ml.artifacts import (
    ManifestSignatureError,
    manifest_digest,
    sha256_of,
    sign_manifest,
    write_artifact,
)
from trading_assets.ml.config import FIELDS_ADDED_LATER
from trading_assets.ml.models import LSTMDirectionModel

from .conftest import COLUMNS, SCHEMA, train_on


def _train(model_type, market, config, tmp_path):
    return train_on(market, model_type, config, tmp_path)


@pytest.fixture(scope="module")
def lstm_artifact(market, tmp_path_factory):
    config = TrainConfig(seq_len=10, max_epochs=3, samples_per_epoch=512, batch_size=64, hidden=8)
    return _train("lstm", market, config, tmp_path_factory.mktemp("models"))


@pytest.mark.parametrize("model_type", ["transformer", "logistic"])
def test_each_model_type_trains_and_round_trips(model_type, market, tmp_path):
    config = TrainConfig(seq_len=10, max_epochs=6, samples_per_epoch=1024, batch_size=32, d_model=16)
    result = _train(model_type, market, config, tmp_path)
    assert result.artifact_dir.parent == tmp_path / model_type / "BTC-USD"
    loaded = load_model(result.artifact_dir, COLUMNS, SCHEMA)
    rows = market.x[-40:]
    probs = loaded.predict_proba(rows)
    assert probs.shape == (31,) and np.all((probs >= 0) & (probs <= 1))
    np.testing.assert_allclose(loaded.predict_proba(rows[None, -10:]), probs[-1:], rtol=1e-6)
    assert result.metrics["calibrated"]["accuracy"] > 0.6  # feature 0 drives the next move


def test_lstm_artifact_manifest(lstm_artifact):
    result = lstm_artifact
    manifest = json.loads((result.artifact_dir / "manifest.json").read_text())
    assert manifest["weights_sha256"] == sha256_of(result.artifact_dir / "weights.pt")
    assert manifest["feature_names"] == COLUMNS and manifest["schema_hash"] == SCHEMA
    assert manifest["parameter_count"] == result.parameter_count
    assert set(manifest["scaler"]) == set(COLUMNS) and manifest["calibration"]["temperature"] > 0
    train, val, test = (manifest["data_ranges"][k] for k in ("train", "val", "test"))
    assert train["first_minute"] == "2024-01-01T00:01Z" and train["last_row"] < val["first_row"]
    assert val["last_row"] < test["first_row"] and test["last_minute"] == "2024-01-03T18:39Z"
    assert {
        "accuracy",
        "ece",
        "brier",
        "log_loss",
        "roc_auc",
        "base_rate",
        "confusion_matrix",
        "samples",
    } <= set(manifest["metrics"]["calibrated"])
    assert {"return", "hit_rate", "turnover", "sharpe", "buy_and_hold_return"} <= set(
        manifest["metrics"]["backtest"]
    )
    assert len(result.learning_curve) == result.epochs_run == 3 and 1 <= result.best_epoch <= 3
    assert sum(row["count"] for row in result.reliability_table) == result.metrics["calibrated"]["samples"]
    assert not [p for p in result.artifact_dir.parent.iterdir() if p.name.startswith(".")]


def test_loaded_lstm_predicts_like_the_trained_network(lstm_artifact, market):
    loaded = load_model(lstm_artifact.artifact_dir, COLUMNS, SCHEMA)
    windows = market.x[-25:-5][None]
    scaled = torch.from_numpy((windows[:, -10:] - loaded.scaler.mean) / loaded.scaler.std)
    with torch.no_grad():
        expected = torch.sigmoid(loaded.model.module(scaled) / loaded.temperature).numpy()
    np.testing.assert_allclose(loaded.predict_proba(windows[:, -10:]), expected, rtol=1e-5)


def test_old_pipeline_model_is_refused_by_a_31_feature_store(lstm_artifact):
    store_features = [f"feature_{i}" for i in range(31)]
    with pytest.raises(ModelArtifactError) as error:
        load_model(lstm_artifact.artifact_dir, store_features, "schema-31")
    assert str(error.value) == f"{lstm_artifact.artifact_dir / 'manifest.json'}: " + (
        "model expects 5 features [open, high, low, close, volume] (schema schema-5) but the feature store "
        "provides 31 (schema schema-31)"
    )


def test_same_names_with_another_schema_hash_are_refused(lstm_artifact):
    with pytest.raises(ModelArtifactError, match="schema schema-5.*schema other"):
        load_model(lstm_artifact.artifact_dir, COLUMNS, "other")


def _copy(artifact, tmp_path):
    import shutil

    return shutil.copytree(artifact.artifact_dir, tmp_path / "copy")


def test_truncated_weights_are_refused(lstm_artifact, tmp_path):
    directory = _copy(lstm_artifact, tmp_path)
    weights = directory / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelArtifactError, match="sha256"):
        load_model(directory, COLUMNS, SCHEMA)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["weights_sha256"] = sha256_of(weights)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    sign_manifest(directory)
    with pytest.raises(ModelArtifactError, match="cannot read weights"):
        load_model(directory, COLUMNS, SCHEMA)


def test_weights_that_are_not_what_the_manifest_says_are_refused(lstm_artifact, tmp_path):
    directory = _copy(lstm_artifact, tmp_path)
    weights = directory / "weights.pt"
    torch.save(LSTMDirectionModel(len(COLUMNS), hidden=8, bidirectional=False).state_dict(), weights)
    with pytest.raises(ModelArtifactError, match="sha256"):
        load_model(directory, COLUMNS, SCHEMA)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["weights_sha256"] = sha256_of(weights)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    sign_manifest(directory)
    with pytest.raises(ModelArtifactError, match="do not fit the manifest's architecture"):
        load_model(directory, COLUMNS, SCHEMA)


def test_a_failed_write_leaves_no_artifact(market, tiny_config, tmp_path, monkeypatch):
    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        _train("lstm", market, tiny_config, tmp_path)
    assert list((tmp_path / "lstm" / "BTC-USD").iterdir()) == []


@pytest.mark.filterwarnings("ignore:divide by zero")  # the faked temperature, before the refusal
def test_training_refuses_to_write_a_model_with_temperature_zero(market, tiny_config, tmp_path, monkeypatch):
    monkeypatch.setattr("trading_assets.ml.metrics.fit_temperature", lambda logits, labels: 0.0)
    with pytest.raises(ModelArtifactError, match="calibration temperature 0.0 must be a finite number > 0"):
        _train("logistic", market, tiny_config, tmp_path)
    assert not (tmp_path / "logistic").exists()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_that_are_not_finite_are_never_written(bad, tmp_path):
    weights = {"fc.weight": torch.tensor([[0.5, bad]]), "fc.bias": torch.zeros(1)}
    manifest = {"calibration": {"method": "temperature", "temperature": 1.0}}
    with pytest.raises(ModelArtifactError, match=r"weights.pt: weight 'fc.weight' holds 1 non-finite value"):
        write_artifact(tmp_path / "v1", weights, manifest, torch_format=True)
    assert list(tmp_path.iterdir()) == []


def _train_rows(model_type, market, config, models_dir, rows, parent=None):
    return train_on(market, model_type, config, models_dir, rows, parent)


def test_warm_retrain_starts_from_the_parent_and_records_it(market, tiny_config, tmp_path):
    config = TrainConfig(**{**tiny_config.to_dict(), "warm_samples_per_epoch": 512, "warm_epochs": 2})
    parent = _train_rows("lstm", market, config, tmp_path, 1300)
    warm_config = TrainConfig(**{**config.to_dict(), "warm_start": True})
    warm = _train_rows("lstm", market, warm_config, tmp_path, 1600, parent.artifact_dir)
    cold = _train_rows("lstm", market, config, tmp_path, 1600)
    assert warm.manifest["training_mode"] == "warm" and cold.manifest["training_mode"] == "cold"
    assert (
        warm.manifest["parent_version"] == parent.artifact_dir.name
        and cold.manifest["parent_version"] is None
    )
    assert warm.manifest["scaler"] == parent.manifest["scaler"]  # the parent's weights go with its scaler
    assert warm.manifest["training_config"]["max_epochs"] == 2 and warm.epochs_run == 2
    assert [e["epoch"] for e in warm.learning_curve] == [0, 1, 2]  # epoch 0: the parent's weights
    assert warm.learning_curve[1]["val_loss"] < cold.learning_curve[0]["val_loss"]
    assert (
        load_model(warm.artifact_dir, COLUMNS, SCHEMA).manifest["parent_version"] == parent.artifact_dir.name
    )


def test_warm_retrain_from_another_architecture_trains_cold(market, tiny_config, tmp_path, caplog):
    parent = _train_rows("lstm", market, tiny_config, tmp_path, 1300)
    other = TrainConfig(**{**tiny_config.to_dict(), "hidden": 12, "warm_start": True})
    with caplog.at_level("INFO", logger="trading_assets.ml.train"):
        result = _train_rows("lstm", market, other, tmp_path, 1600, parent.artifact_dir)
    assert result.manifest["training_mode"] == "cold" and result.manifest["parent_version"] is None
    assert not result.manifest["training_config"]["warm_start"]
    assert f"training cold: parent {parent.artifact_dir.name} has another architecture" in caplog.text


def test_an_artifact_written_before_later_config_fields_loads_as_it_was_trained(market, tmp_path):
    """A transformer of one token per minute, whose manifest has no `patch` (added later), still loads."""
    config = TrainConfig(seq_len=10, max_epochs=1, samples_per_epoch=256, d_model=16, patch=1)
    result = _train("transformer", market, config, tmp_path)
    manifest_path = result.artifact_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    before = {k: v for k, v in manifest["training_config"].items() if k not in FIELDS_ADDED_LATER}
    manifest_path.write_text(json.dumps({**manifest, "training_config": before}))
    sign_manifest(manifest_path)
    loaded = load_model(result.artifact_dir, COLUMNS, SCHEMA)
    assert loaded.model.module.patch == 1
    assert TrainConfig().patch != 1  # today's default would build another network


@pytest.mark.parametrize("model_type", ["lstm", "logistic"])
def test_the_temperature_is_fitted_on_at_most_calibration_max_samples_windows(
    market, tiny_config, tmp_path, monkeypatch, model_type
):
    from trading_assets.ml import train

    fitted_on = []

    def recording(logits, labels):
        assert len(logits) == len(labels)
        fitted_on.append(len(labels))
        return fit_temperature(logits, labels)

    fit_temperature = train.metrics.fit_temperature
    monkeypatch.setattr(train.metrics, "fit_temperature", recording)
    config = TrainConfig(**{**tiny_config.to_dict(), "max_epochs": 1})
    capped = _train(
        model_type, market, TrainConfig(**{**config.to_dict(), "calibration_max_samples": 40}), tmp_path
    )
    whole = _train(
        model_type, market, TrainConfig(**{**config.to_dict(), "calibration_max_samples": None}), tmp_path
    )
    # twice per training: the serving model's temperature, then the second walk-forward fold model's
    val = whole.manifest["data_ranges"]["val"]["samples"]
    assert fitted_on == [40, 40, val, val] and val > 40
    assert capped.manifest["calibration"]["temperature"] != whole.manifest["calibration"]["temperature"]
    assert (
        capped.metrics["calibrated"]["samples"] == whole.metrics["calibrated"]["samples"]
    )  # whole test part


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("model_type", ["lstm", "transformer"])
def test_a_model_trained_on_cuda_writes_the_artifact_a_cpu_training_writes(model_type, market, tmp_path):
    """Same files, manifest fields, weight names, shapes and dtypes as a CPU training; the weights were saved
    from the CPU (they open on a machine without CUDA), and the CPU loader scores as the network did on the GPU."""
    config = TrainConfig(seq_len=10, max_epochs=2, samples_per_epoch=512, batch_size=64, hidden=8, d_model=16)
    on_cpu = _train(model_type, market, TrainConfig(**{**config.to_dict(), "device": "cpu"}), tmp_path / "c")
    on_gpu = _train(model_type, market, TrainConfig(**{**config.to_dict(), "device": "cuda"}), tmp_path / "g")
    assert sorted(p.name for p in on_gpu.artifact_dir.iterdir()) == sorted(
        p.name for p in on_cpu.artifact_dir.iterdir()
    )
    assert on_gpu.manifest.keys() == on_cpu.manifest.keys()
    assert on_gpu.manifest["architecture"] == on_cpu.manifest["architecture"]
    saved = [torch.load(r.artifact_dir / "weights.pt", weights_only=True) for r in (on_cpu, on_gpu)]
    assert {k: (v.shape, v.dtype) for k, v in saved[1].items()} == {
        k: (v.shape, v.dtype) for k, v in saved[0].items()
    }
    assert {v.device.type for v in saved[1].values()} == {"cpu"}
    loaded = load_model(on_gpu.artifact_dir, COLUMNS, SCHEMA)
    windows = market.x[-30:][None, -10:]
    scaled = torch.from_numpy((windows - loaded.scaler.mean) / loaded.scaler.std).float()
    with torch.no_grad():
        on_the_gpu = loaded.model.module.cuda().eval()(scaled.cuda()).cpu()
    loaded.model.module.cpu()
    expected = torch.sigmoid(on_the_gpu / loaded.temperature).numpy()
    np.testing.assert_allclose(loaded.predict_proba(windows), expected, atol=1e-4)


@pytest.mark.parametrize("seq_len", [1, 1_000_000])
def test_a_manifest_whose_window_is_implausible_is_refused_in_one_line(lstm_artifact, tmp_path, seq_len):
    directory = _copy(lstm_artifact, tmp_path)
    manifest = json.loads((directory / "manifest.json").read_text())
    (directory / "manifest.json").write_text(json.dumps({**manifest, "seq_len": seq_len}))
    sign_manifest(directory)  # signed, so the bound itself is what refuses it
    with pytest.raises(ModelArtifactError, match=rf"seq_len {seq_len} must lie in 2\.\.10080") as refused:
        load_model(directory, COLUMNS, SCHEMA)
    assert "\n" not in str(refused.value)


def _edit_manifest(directory, **changes):
    path = directory / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}, indent=2))
    return path


def test_the_manifest_is_signed_at_training_and_an_untouched_artifact_loads(lstm_artifact):
    manifest = json.loads((lstm_artifact.artifact_dir / "manifest.json").read_text())
    assert manifest["manifest_sha256"] == manifest_digest(manifest)  # over every other field, weights sha too
    assert load_model(lstm_artifact.artifact_dir, COLUMNS, SCHEMA).seq_len == 10


@pytest.mark.parametrize(
    "changes",
    [{"seq_len": 12}, {"symbol": "ETH-USD"}, {"calibration": {"method": "temperature", "temperature": 2.0}}],
)
def test_a_manifest_edited_after_training_is_refused_in_one_line(lstm_artifact, tmp_path, changes):
    """Edits every other check accepts (a seq_len within 2..10080, another symbol): the signature refuses."""
    directory = _copy(lstm_artifact, tmp_path)
    path = _edit_manifest(directory, **changes)
    with pytest.raises(ManifestSignatureError) as refused:
        load_model(directory, COLUMNS, SCHEMA)
    assert str(refused.value) == (
        f"{path}: manifest edited after training (manifest_sha256 mismatch); retrain or re-sign"
    )
    sign_manifest(directory)  # a deliberate edit, re-signed, loads
    manifest = load_model(directory, COLUMNS, SCHEMA).manifest
    assert {field: manifest[field] for field in changes} == changes


def test_replaced_weights_with_their_checksum_edited_in_are_refused(lstm_artifact, tmp_path):
    directory = _copy(lstm_artifact, tmp_path)
    weights = directory / "weights.pt"
    state = {name: value + 0.01 for name, value in torch.load(weights, weights_only=True).items()}
    torch.save(state, weights)
    with pytest.raises(ModelArtifactError, match="has sha256 .* damaged or replaced"):
        load_model(directory, COLUMNS, SCHEMA)
    _edit_manifest(directory, weights_sha256=sha256_of(weights))
    with pytest.raises(ManifestSignatureError, match=r"manifest_sha256 mismatch"):
        load_model(directory, COLUMNS, SCHEMA)


def test_an_unsigned_manifest_is_refused_in_one_line(lstm_artifact, tmp_path):
    directory = _copy(lstm_artifact, tmp_path)
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["manifest_sha256"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(ManifestSignatureError, match=r"manifest not signed at training") as refused:
        load_model(directory, COLUMNS, SCHEMA)
    assert str(refused.value).startswith(f"{path}: ") and "\n" not in str(refused.value)
