import json
import shutil
from pathlib import Path

import pytest

from trading_assets.features.registry import MODEL_FEATURES, schema_hash
from trading_assets.ml.artifacts import ModelArtifactError, sign_manifest
from trading_assets.ml.policy import CostPolicy, PromotionPolicy
from trading_assets.promotion.ensemble import EnsembleScorer, NoPromotedMembers, build_ensemble
from trading_assets.promotion.registry import (
    PromotionRefused,
    current,
    current_version,
    history,
    promote,
    roll_forward,
    rollback,
    service_stack,
)

from .conftest import COSTS, POLICY, copy_artifact


def do_promote(artifact: Path, models_dir: Path):
    return promote(artifact, models_dir, list(MODEL_FEATURES), schema_hash(), "test", POLICY, COSTS)


def do_rollback(models_dir: Path):
    return rollback(models_dir, "logistic", "BTC-USD", "test", list(MODEL_FEATURES), schema_hash())


def do_forward(models_dir: Path):
    return roll_forward(models_dir, "logistic", "BTC-USD", "test", list(MODEL_FEATURES), schema_hash())


@pytest.fixture
def three_versions(trained_models, tmp_path: Path) -> list[Path]:
    """v1, v2, v3: copies of the good model under three version names, promoted in that order."""
    source = trained_models["good"].artifact_dir
    versions = [copy_artifact(source, tmp_path / "trained" / f"2024010{i}T000000000000Z") for i in (1, 2, 3)]
    for version in versions:
        do_promote(version, tmp_path / "models")
    return versions


def test_promote_copies_verifies_and_records(trained_models, tmp_path: Path) -> None:
    artifact = trained_models["good"].artifact_dir
    promoted = do_promote(artifact, tmp_path)
    assert promoted.version == artifact.name
    assert promoted.directory == tmp_path / "promoted" / "logistic" / "BTC-USD" / "versions" / artifact.name
    assert current(tmp_path, "logistic", "BTC-USD").version == artifact.name
    [entry] = history(tmp_path)
    assert (
        entry["action"] == "promote"
        and entry["promoted_by"] == "test"
        and entry["metrics"]["accuracy"] > 0.68
    )


def test_a_model_that_fails_a_gate_is_never_promoted(trained_models, tmp_path: Path) -> None:
    with pytest.raises(PromotionRefused, match=r"accuracy_gate FAILED: measured 0\.[45]"):
        do_promote(trained_models["noise"].artifact_dir, tmp_path)
    assert current(tmp_path, "logistic", "BTC-USD") is None
    assert history(tmp_path) == []
    assert not any((tmp_path / "promoted" / "logistic" / "BTC-USD" / "versions").iterdir())


@pytest.mark.parametrize(
    ("policy", "costs", "named"),
    [
        (PromotionPolicy(folds=2, min_accuracy=0.7), COSTS, r"min_accuracy=0\.68 \(policy in force: 0\.7\)"),
        (PromotionPolicy(folds=3), COSTS, r"folds=2 \(policy in force: 3\)"),
        (PromotionPolicy(folds=2, confidence=0.99), COSTS, r"confidence=0\.95"),
        (POLICY, CostPolicy(fee_bps=60.0), r"fee_bps=0\.0 \(policy in force: 60\.0\)"),
        (POLICY, CostPolicy(fee_bps=0.0, half_spread_bps=5.0), r"half_spread_bps=1\.0"),
    ],
)
def test_a_model_judged_looser_than_the_policy_in_force_is_not_promoted(
    trained_models, tmp_path: Path, policy, costs, named
) -> None:
    """Promotion re-reads the policy the model was judged under (its manifest) and refuses, in one line
    naming the field, anything looser than the deployment's policy now in force."""
    artifact = trained_models["good"].artifact_dir
    with pytest.raises(PromotionRefused, match=named) as refused:
        promote(artifact, tmp_path, list(MODEL_FEATURES), schema_hash(), "test", policy, costs)
    assert "\n" not in str(refused.value)
    assert current(tmp_path, "logistic", "BTC-USD") is None


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
    assert current(tmp_path, "logistic", "BTC-USD").version == second.name
    assert do_rollback(tmp_path).version == first.name
    assert [e["action"] for e in history(tmp_path)] == ["promote", "promote", "rollback"]
    only_one = tmp_path / "only-one"
    do_promote(first, only_one)
    with pytest.raises(PromotionRefused, match="only promoted version"):
        do_rollback(only_one)


def test_rollback_walks_the_stack_and_rolls_forward(three_versions, tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    v1, v2, v3 = (path.name for path in three_versions)
    assert current_version(models_dir, "logistic", "BTC-USD") == v3
    assert do_rollback(models_dir).version == v2
    assert do_rollback(models_dir).version == v1  # twice = two versions back
    with pytest.raises(PromotionRefused, match=f"{v1} is the oldest of .*nothing to roll back to"):
        do_rollback(models_dir)
    assert do_forward(models_dir).version == v2
    assert do_forward(models_dir).version == v3
    with pytest.raises(PromotionRefused, match="newest"):
        do_forward(models_dir)
    assert [(e["action"], e["version"]) for e in history(models_dir)][3:] == [
        ("rollback", v2),
        ("rollback", v1),
        ("roll_forward", v2),
        ("roll_forward", v3),
    ]


def test_a_promotion_after_a_rollback_drops_the_versions_above(three_versions, tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    v1, v2, v3 = (path.name for path in three_versions)
    do_rollback(models_dir)
    v4 = copy_artifact(three_versions[0], tmp_path / "trained" / "20240104T000000000000Z")
    do_promote(v4, models_dir)
    do_promote(v4, models_dir)  # promoting the version in service again changes nothing
    assert service_stack(models_dir, "logistic", "BTC-USD").versions == (v1, v2, v4.name)
    assert do_rollback(models_dir).version == v2  # what was served before v4, not v3


def test_rollback_verifies_the_target_before_switching(three_versions, tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    v2 = models_dir / "promoted" / "logistic" / "BTC-USD" / "versions" / three_versions[1].name
    (v2 / "weights.npz").write_bytes((v2 / "weights.npz").read_bytes()[:100])
    with pytest.raises(
        PromotionRefused, match=f"not rolled back to {v2.name}.*{v2 / 'weights.npz'} has sha256"
    ):
        do_rollback(models_dir)
    assert current_version(models_dir, "logistic", "BTC-USD") == three_versions[2].name
    assert [e["action"] for e in history(models_dir)] == ["promote"] * 3


def test_a_torn_history_line_breaks_no_rollback(three_versions, tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    log = models_dir / "promoted" / "history.jsonl"
    log.write_text(log.read_text() + '{"action": "promote", "vers')  # a crash in the middle of an append
    assert do_rollback(models_dir).version == three_versions[1].name
    with pytest.warns(UserWarning, match=r"history.jsonl:4: skipped a line"):
        entries = history(models_dir)
    assert [e["action"] for e in entries] == ["promote"] * 3 + ["rollback"]
    assert do_rollback(models_dir).version == three_versions[0].name


def test_a_registry_with_a_plain_current_file_reads_as_one_version(tmp_path: Path) -> None:
    slot = tmp_path / "promoted" / "logistic" / "BTC-USD"
    slot.mkdir(parents=True)
    (slot / "CURRENT").write_text("20240101T000000000000Z\n")
    assert service_stack(tmp_path, "logistic", "BTC-USD").versions == ("20240101T000000000000Z",)


def test_ensemble_renormalises_over_promoted_members(trained_models, tmp_path: Path) -> None:
    with pytest.raises(NoPromotedMembers, match="no promoted model for BTC-USD"):
        build_ensemble(tmp_path, "BTC-USD", {"lstm": 0.35, "logistic": 0.25})
    do_promote(trained_models["good"].artifact_dir, tmp_path)
    spec = build_ensemble(tmp_path, "BTC-USD", {"lstm": 0.35, "logistic": 0.25})
    assert spec.weights == {"logistic": 1.0}
    assert spec.schema_hash == schema_hash()
    written = json.loads((tmp_path / "promoted" / "ensemble" / "BTC-USD.json").read_text())
    assert written["members"] == [
        {
            "model_type": "logistic",
            "weight": 1.0,
            "version_at_build": trained_models["good"].artifact_dir.name,
        }
    ]  # types and weights, no path: members are resolved through the registry when scored


def test_a_registry_written_under_the_former_type_name_keeps_serving(trained_models, tmp_path: Path) -> None:
    """Slot, manifests and ensemble file of a version that called the logistic type `sklearn`: the slot serves,
    the ensemble resolves it, a new promotion goes on its service stack and a rollback goes back."""
    first = trained_models["good"].artifact_dir
    do_promote(first, tmp_path)
    build_ensemble(tmp_path, "BTC-USD", {"sklearn": 0.25})
    promoted = tmp_path / "promoted"
    (promoted / "logistic").rename(promoted / "sklearn")
    for manifest in (promoted / "sklearn").rglob("manifest.json"):
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "model_type": "sklearn"}))
        sign_manifest(manifest)  # as that version signed it
    ensemble_file = promoted / "ensemble" / "BTC-USD.json"
    spec = json.loads(ensemble_file.read_text())
    spec["members"][0]["model_type"] = "sklearn"
    ensemble_file.write_text(json.dumps(spec))

    assert current(tmp_path, "logistic", "BTC-USD").version == first.name
    scorer = EnsembleScorer(tmp_path, "BTC-USD", list(MODEL_FEATURES), schema_hash())
    [member] = scorer.members()
    assert (member.model_type, member.version) == ("logistic", first.name)
    second = copy_artifact(first, tmp_path / "trained" / "20300101T000000000000Z")
    do_promote(second, tmp_path)
    assert (promoted / "sklearn" / "BTC-USD" / "versions" / second.name).is_dir()
    assert not (promoted / "logistic").exists()
    assert service_stack(tmp_path, "logistic", "BTC-USD").versions == (first.name, second.name)
    assert do_rollback(tmp_path).version == first.name
