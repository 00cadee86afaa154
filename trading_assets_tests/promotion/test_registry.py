import json
import shutil
from pathlib import Path

import pytest

from trading_assets.features.registry import MODEL_FEATURES, schema_hash
from trading_assets.ml.artifacts import ModelArtifactError
from trading_assets.promotion.ensemble import NoPromotedMembers, build_ensemble
from trading_assets.promotion.registry import PromotionRefused, current, history, promote, rollback


def do_promote(artifact: Path, models_dir: Path):
    return promote(artifact, models_dir, list(MODEL_FEATURES), schema_hash(), promoted_by="test")


def test_promote_copies_verifies_and_records(trained_models, tmp_path: Path) -> None:
    artifact = trained_models["good"].artifact_dir
    promoted = do_promote(artifact, tmp_path)
    assert promoted.version == artifact.name
    assert promoted.directory == tmp_path / "promoted" / "sklearn" / "BTC-USD" / "versions" / artifact.name
    assert current(tmp_path, "sklearn", "BTC-USD").version == artifact.name
    [entry] = history(tmp_path)
    assert (
        entry["action"] == "promote"
        and entry["promoted_by"] == "test"
        and entry["metrics"]["accuracy"] > 0.68
    )


def test_a_model_that_fails_a_gate_is_never_promoted(trained_models, tmp_path: Path) -> None:
    with pytest.raises(PromotionRefused, match=r"accuracy_gate FAILED: measured 0\.[45]"):
        do_promote(trained_models["noise"].artifact_dir, tmp_path)
    assert current(tmp_path, "sklearn", "BTC-USD") is None
    assert history(tmp_path) == []
    assert not any((tmp_path / "promoted" / "sklearn" / "BTC-USD" / "versions").iterdir())


def test_a_replaced_weights_file_is_refused(trained_models, tmp_path: Path) -> None:
    artifact = tmp_path / "tampered"
    shutil.copytree(trained_models["good"].artifact_dir, artifact)
    weights = next(p for p in artifact.iterdir() if p.name.startswith("weights"))
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(ModelArtifactError, match="sha256"):
        do_promote(artifact, tmp_path / "models")


def test_rollback_restores_the_previous_version(trained_models, tmp_path: Path) -> None:
    first = trained_models["good"].artifact_dir
    second = tmp_path / "v2" / "20990101T000000000000Z"
    shutil.copytree(first, second)
    do_promote(first, tmp_path)
    do_promote(second, tmp_path)
    assert current(tmp_path, "sklearn", "BTC-USD").version == second.name
    assert rollback(tmp_path, "sklearn", "BTC-USD", promoted_by="test").version == first.name
    assert [e["action"] for e in history(tmp_path)] == ["promote", "promote", "rollback"]
    only_one = tmp_path / "only-one"
    do_promote(first, only_one)
    with pytest.raises(PromotionRefused, match="only promoted version"):
        rollback(only_one, "sklearn", "BTC-USD", promoted_by="test")


def test_ensemble_renormalises_over_promoted_members(trained_models, tmp_path: Path) -> None:
    with pytest.raises(NoPromotedMembers, match="no promoted model for BTC-USD"):
        build_ensemble(tmp_path, "BTC-USD", {"lstm": 0.35, "sklearn": 0.25})
    do_promote(trained_models["good"].artifact_dir, tmp_path)
    spec = build_ensemble(tmp_path, "BTC-USD", {"lstm": 0.35, "sklearn": 0.25})
    assert spec.weights == {"sklearn": 1.0}
    assert spec.schema_hash == schema_hash()
    written = json.loads((tmp_path / "promoted" / "ensemble" / "BTC-USD.json").read_text())
    assert written["members"][0]["version"] == trained_models["good"].artifact_dir.name
