"""The command line's exit codes and effects: evaluate [--promote], promote [--version|--rollback|--forward],
runtime --mode."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from trading_assets.cli import main
from trading_assets.ml.train import TrainResult
from trading_assets.promotion.registry import current, history
from trading_assets_tests.promotion.conftest import train


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, TrainResult]:
    """Two passing models and a failing one (scikit-learn, BTC-USD), trained once for this module."""
    models_dir = tmp_path_factory.mktemp("models")
    return {
        "good": train("sklearn", 0.7, models_dir),
        "good_again": train("sklearn", 0.7, models_dir, seed=1),
        "noise": train("sklearn", 0.0, models_dir),
    }


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TA_MODELS_DIR", str(tmp_path / "models"))
    return tmp_path / "models"


def evaluate(artifact: Path, *extra: str, symbol: str = "BTC-USD") -> int:
    return main(["evaluate", "--model", str(artifact), "--symbol", symbol, "--model-type", "sklearn", *extra])


def test_evaluate_promotes_a_passing_model(models, models_dir: Path, capsys) -> None:
    assert evaluate(models["good"].artifact_dir, "--promote") == 0
    output = capsys.readouterr().out
    assert '"accuracy"' in output and "promoted sklearn BTC-USD" in output
    assert current(models_dir, "sklearn", "BTC-USD").version == models["good"].artifact_dir.name


def test_a_failing_gate_exits_1_and_promotes_nothing(models, models_dir: Path, capsys) -> None:
    assert evaluate(models["noise"].artifact_dir, "--promote") == 1
    assert "!! accuracy_gate" in capsys.readouterr().out
    assert current(models_dir, "sklearn", "BTC-USD") is None
    # Thresholds from the command line: an unreachable accuracy fails a good model too.
    assert evaluate(models["good"].artifact_dir, "--min-accuracy", "0.99", "--promote") == 1
    assert current(models_dir, "sklearn", "BTC-USD") is None


def test_a_model_of_another_symbol_is_refused(models, models_dir: Path, capsys) -> None:
    assert evaluate(models["good"].artifact_dir, symbol="ETH-USD") == 2
    assert "is a sklearn model of BTC-USD" in capsys.readouterr().out


def test_rollback_restores_the_previous_version(models, models_dir: Path, capsys) -> None:
    rollback = ["promote", "sklearn", "--symbol", "BTC-USD", "--rollback"]
    assert main(rollback) == 1  # nothing promoted yet: nothing to roll back to
    assert evaluate(models["good"].artifact_dir, "--promote") == 0
    assert main(rollback) == 1  # only one version: still nothing earlier
    assert evaluate(models["good_again"].artifact_dir, "--promote") == 0
    assert current(models_dir, "sklearn", "BTC-USD").version == models["good_again"].artifact_dir.name
    assert main(rollback) == 0
    assert current(models_dir, "sklearn", "BTC-USD").version == models["good"].artifact_dir.name
    assert [entry["action"] for entry in history(models_dir)][-1] == "rollback"
    assert main(["promote", "sklearn", "--symbol", "BTC-USD", "--forward"]) == 0
    assert current(models_dir, "sklearn", "BTC-USD").version == models["good_again"].artifact_dir.name
    assert main(["promote", "sklearn", "--symbol", "BTC-USD", "--forward"]) == 1
    assert "nothing to roll forward to" in capsys.readouterr().err


def test_promote_a_trained_version_rechecking_its_gates(models, models_dir: Path, capsys) -> None:
    trained = models_dir / "sklearn" / "BTC-USD"
    for name in ("good", "good_again", "noise"):
        shutil.copytree(models[name].artifact_dir, trained / models[name].artifact_dir.name)
    promote = ["promote", "sklearn", "--symbol", "BTC-USD"]
    assert main([*promote, "--version", models["noise"].artifact_dir.name]) == 1
    assert "accuracy_gate FAILED" in capsys.readouterr().err
    assert current(models_dir, "sklearn", "BTC-USD") is None
    assert main([*promote, "--version", models["good"].artifact_dir.name]) == 0
    assert current(models_dir, "sklearn", "BTC-USD").version == models["good"].artifact_dir.name
    # without --version: the latest trained, here the noise model (trained last), refused by its gate
    assert max(path.name for path in trained.iterdir()) == models["noise"].artifact_dir.name
    assert main(promote) == 1
    assert models["noise"].artifact_dir.name in capsys.readouterr().err
    assert main([*promote, "--version", "20000101T000000000000Z"]) == 1
    assert "no trained sklearn model of BTC-USD at" in capsys.readouterr().err


def test_live_mode_is_refused(models_dir: Path, capsys) -> None:
    assert main(["runtime", "--mode", "live", "--iterations", "1"]) == 2
    assert "never places orders" in capsys.readouterr().err
