"""The registry verifies the manifest itself: `manifest_sha256`, taken at training over the manifest (the
weights' sha256 included), is checked at promotion and at every load. An edited symbol or seq_len is
refused in one line naming the file, and no slot changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trading_assets.cli import main
from trading_assets.features.registry import MODEL_FEATURES, schema_hash
from trading_assets.ml.artifacts import ManifestSignatureError, ModelArtifactError, sha256_of, sign_manifest
from trading_assets.promotion.registry import (
    ArtifactRefused,
    PromotionRefused,
    current_version,
    load_current,
    promote,
    rollback,
    service_stack,
)

from .conftest import COSTS, POLICY, copy_artifact

V1, V2, V3 = (f"2024010{i}T000000000000Z" for i in (1, 2, 3))
EDITED = "manifest edited after training (manifest_sha256 mismatch); retrain or re-sign"


def do_promote(artifact: Path, models_dir: Path):
    return promote(artifact, models_dir, list(MODEL_FEATURES), schema_hash(), "test", POLICY, COSTS)


def edit_manifest(directory: Path, **changes: object) -> Path:
    """Change manifest fields as a hand would: without re-signing."""
    path = directory / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}, indent=2))
    return path


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with the bytes of each file (None for a directory)."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in root.rglob("*")}


@pytest.fixture
def two_slots(trained_models, tmp_path: Path) -> Path:
    """A models folder in the training layout, BTC-USD and ETH-USD each with a promoted logistic model and
    ETH-USD with a further trained version V3 in models/logistic/ETH-USD/ (not promoted)."""
    models_dir = tmp_path / "models"
    good = trained_models["good"].artifact_dir
    do_promote(copy_artifact(good, models_dir / "logistic" / "BTC-USD" / V1), models_dir)
    do_promote(copy_artifact(good, models_dir / "logistic" / "ETH-USD" / V2, symbol="ETH-USD"), models_dir)
    copy_artifact(good, models_dir / "logistic" / "ETH-USD" / V3, symbol="ETH-USD")
    return models_dir


def test_an_untouched_artifact_promotes_and_loads(two_slots: Path) -> None:
    promoted = do_promote(two_slots / "logistic" / "ETH-USD" / V3, two_slots)
    assert (promoted.symbol, promoted.version) == ("ETH-USD", V3)
    version, model = load_current(two_slots, "logistic", "ETH-USD", list(MODEL_FEATURES), schema_hash())
    assert version == V3 and model.manifest["symbol"] == "ETH-USD"


def test_an_edited_symbol_is_refused_in_one_line_and_no_slot_changes(two_slots: Path) -> None:
    """The reviewers' case: ETH's manifest edited to say BTC-USD was promoted into BTC's slot."""
    artifact = two_slots / "logistic" / "ETH-USD" / V3
    manifest = edit_manifest(artifact, symbol="BTC-USD")
    before = snapshot(two_slots / "promoted")
    with pytest.raises(ArtifactRefused) as refused:
        do_promote(artifact, two_slots)
    assert str(refused.value) == f"{manifest}: {EDITED}"
    # one line, and both a PromotionRefused (the Dagster asset) and a ModelArtifactError (the command line)
    assert isinstance(refused.value, PromotionRefused) and isinstance(refused.value, ModelArtifactError)
    assert snapshot(two_slots / "promoted") == before
    assert current_version(two_slots, "logistic", "BTC-USD") == V1
    assert current_version(two_slots, "logistic", "ETH-USD") == V2


def test_a_re_signed_manifest_of_another_symbol_than_its_folder_is_not_promoted(two_slots: Path) -> None:
    artifact = two_slots / "logistic" / "ETH-USD" / V3
    manifest = edit_manifest(artifact, symbol="BTC-USD")
    sign_manifest(artifact)
    before = snapshot(two_slots / "promoted")
    with pytest.raises(ArtifactRefused) as refused:
        do_promote(artifact, two_slots)
    assert str(refused.value) == (
        f"{manifest}: a logistic model of BTC-USD, but it lies in the folder of logistic ETH-USD "
        f"({artifact.parent}): not promoted into either slot"
    )
    assert snapshot(two_slots / "promoted") == before


def test_the_command_line_refuses_an_edited_symbol_in_one_line(
    two_slots: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TA_MODELS_DIR", str(two_slots))
    monkeypatch.setenv("TA_FOLDS", "2")  # the policy the models were judged under
    manifest = edit_manifest(two_slots / "logistic" / "ETH-USD" / V3, symbol="BTC-USD")
    before = snapshot(two_slots / "promoted")
    code = main(["promote", "logistic", "--symbol", "ETH-USD", "--version", V3])
    output = capsys.readouterr()
    assert code == 1 and output.out == ""
    assert output.err.splitlines() == [f"{manifest}: {EDITED}"]
    assert snapshot(two_slots / "promoted") == before


def test_an_edited_seq_len_within_bounds_is_refused_at_promotion_and_at_load(two_slots: Path) -> None:
    artifact = two_slots / "logistic" / "ETH-USD" / V3
    manifest = edit_manifest(
        artifact, seq_len=json.loads((artifact / "manifest.json").read_text())["seq_len"] + 1
    )
    with pytest.raises(ArtifactRefused, match="manifest_sha256 mismatch"):
        do_promote(artifact, two_slots)
    promoted = two_slots / "promoted" / "logistic" / "ETH-USD" / "versions" / V2
    promoted_manifest = edit_manifest(promoted, seq_len=1440)  # edited inside the registry, after promotion
    with pytest.raises(ManifestSignatureError) as refused:
        load_current(two_slots, "logistic", "ETH-USD", list(MODEL_FEATURES), schema_hash())
    assert str(refused.value) == f"{promoted_manifest}: {EDITED}"
    assert manifest != promoted_manifest


def test_replaced_weights_with_their_checksum_edited_in_are_not_promoted(two_slots: Path) -> None:
    artifact = two_slots / "logistic" / "ETH-USD" / V3
    weights = artifact / "weights.npz"
    with np.load(weights, allow_pickle=False) as arrays:
        coef, intercept = arrays["coef"] * 2, arrays["intercept"]
    np.savez(weights, coef=coef, intercept=intercept)
    with pytest.raises(ArtifactRefused, match="has sha256 .* damaged or replaced"):
        do_promote(artifact, two_slots)
    edit_manifest(artifact, weights_sha256=sha256_of(weights))
    with pytest.raises(ArtifactRefused, match="manifest_sha256 mismatch"):
        do_promote(artifact, two_slots)
    assert service_stack(two_slots, "logistic", "ETH-USD").versions == (V2,)


def test_a_rollback_to_a_version_whose_manifest_was_edited_is_refused(two_slots: Path) -> None:
    do_promote(two_slots / "logistic" / "ETH-USD" / V3, two_slots)
    edit_manifest(two_slots / "promoted" / "logistic" / "ETH-USD" / "versions" / V2, seq_len=30)
    with pytest.raises(PromotionRefused, match=f"not rolled back to {V2}, {V3} stays in service: .*mismatch"):
        rollback(two_slots, "logistic", "ETH-USD", "test", list(MODEL_FEATURES), schema_hash())
    assert current_version(two_slots, "logistic", "ETH-USD") == V3
