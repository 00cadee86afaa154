"""The command line's exit codes and effects: evaluate [--promote], promote [--version|--rollback|--forward],
runtime --mode; every expected refusal is one line on stderr with exit code 2; every option shows help and
its default."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest

from trading_assets.cli import _parser, main
from trading_assets.ml.train import TrainResult
from trading_assets.promotion.registry import current, history
from trading_assets_tests.promotion.conftest import train


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, TrainResult]:
    """Two passing models and a failing one (scikit-learn, BTC-USD), trained once for this module."""
    models_dir = tmp_path_factory.mktemp("models")
    return {
        "good": train("logistic", 0.4, models_dir),
        "good_again": train("logistic", 0.4, models_dir, seed=1),
        "noise": train("logistic", 0.0, models_dir),
    }


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TA_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("TA_FOLDS", "2")  # the policy the module's models were judged under (demo scale)
    (tmp_path / "dagster_home").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))  # `promote` runs a Dagster job there
    return tmp_path / "models"


def evaluate(artifact: Path, *extra: str, symbol: str = "BTC-USD") -> int:
    return main(
        ["evaluate", "--model", str(artifact), "--symbol", symbol, "--model-type", "logistic", *extra]
    )


def test_evaluate_promotes_a_passing_model(models, models_dir: Path, capsys) -> None:
    assert evaluate(models["good"].artifact_dir, "--promote") == 0
    output = capsys.readouterr().out
    assert '"accuracy"' in output and "promoted logistic BTC-USD" in output
    assert current(models_dir, "logistic", "BTC-USD").version == models["good"].artifact_dir.name


def test_a_failing_gate_exits_1_and_promotes_nothing(models, models_dir: Path, capsys) -> None:
    assert evaluate(models["noise"].artifact_dir, "--promote") == 1
    assert "!! accuracy_gate" in capsys.readouterr().out
    assert current(models_dir, "logistic", "BTC-USD") is None
    # Thresholds from the command line: an unreachable accuracy fails a good model too.
    assert evaluate(models["good"].artifact_dir, "--min-accuracy", "0.99", "--promote") == 1
    assert current(models_dir, "logistic", "BTC-USD") is None


def test_a_model_of_another_symbol_is_refused(models, models_dir: Path, capsys) -> None:
    assert evaluate(models["good"].artifact_dir, symbol="ETH-USD") == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "is a logistic model of BTC-USD, not logistic ETH-USD" in line


def test_rollback_restores_the_previous_version(models, models_dir: Path, capsys) -> None:
    rollback = ["promote", "logistic", "--symbol", "BTC-USD", "--rollback"]
    assert main(rollback) == 1  # nothing promoted yet: nothing to roll back to
    assert evaluate(models["good"].artifact_dir, "--promote") == 0
    assert main(rollback) == 1  # only one version: still nothing earlier
    assert evaluate(models["good_again"].artifact_dir, "--promote") == 0
    assert current(models_dir, "logistic", "BTC-USD").version == models["good_again"].artifact_dir.name
    assert main(rollback) == 0
    assert current(models_dir, "logistic", "BTC-USD").version == models["good"].artifact_dir.name
    assert [entry["action"] for entry in history(models_dir)][-1] == "rollback"
    assert main(["promote", "logistic", "--symbol", "BTC-USD", "--forward"]) == 0
    assert current(models_dir, "logistic", "BTC-USD").version == models["good_again"].artifact_dir.name
    assert main(["promote", "logistic", "--symbol", "BTC-USD", "--forward"]) == 1
    assert "nothing to roll forward to" in capsys.readouterr().err


def test_promote_a_trained_version_rechecking_its_gates(models, models_dir: Path, capsys) -> None:
    trained = models_dir / "logistic" / "BTC-USD"
    for name in ("good", "good_again", "noise"):
        shutil.copytree(models[name].artifact_dir, trained / models[name].artifact_dir.name)
    promote = ["promote", "logistic", "--symbol", "BTC-USD"]
    assert main([*promote, "--version", models["noise"].artifact_dir.name]) == 1
    assert "accuracy_gate FAILED" in capsys.readouterr().err
    assert current(models_dir, "logistic", "BTC-USD") is None
    assert main([*promote, "--version", models["good"].artifact_dir.name]) == 0
    assert current(models_dir, "logistic", "BTC-USD").version == models["good"].artifact_dir.name
    # without --version: the latest trained, here the noise model (trained last), refused by its gate
    assert max(path.name for path in trained.iterdir()) == models["noise"].artifact_dir.name
    assert main(promote) == 1
    assert models["noise"].artifact_dir.name in capsys.readouterr().err
    assert main([*promote, "--version", "20000101T000000000000Z"]) == 1
    assert "no trained logistic model of BTC-USD at" in capsys.readouterr().err


def test_live_mode_is_refused(models_dir: Path, capsys) -> None:
    assert main(["runtime", "--mode", "live", "--iterations", "1"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == "--mode live refused: this runtime only runs in dryrun mode and never places orders"


def refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a refused command prints on stderr; its exit code must be 2 and stdout empty."""
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse refuses before any handler runs
        code = exit_.code
    output = capsys.readouterr()
    assert code == 2 and output.out == ""
    [line] = output.err.splitlines()
    return line


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["runtime", "--iterations", "-1"],
            "trading-assets runtime: argument --iterations: '-1' is not a positive integer",
        ),
        (
            ["runtime", "--sleep-seconds", "-0.5"],
            "trading-assets runtime: argument --sleep-seconds: '-0.5' is not a number of seconds >= 0",
        ),
        (
            ["runtime", "--long-above", "1.5"],
            "trading-assets runtime: argument --long-above: '1.5' is not a probability in [0, 1]",
        ),
        (
            ["runtime", "--long-above", "0.4", "--short-below", "0.6"],
            "trading-assets runtime: --short-below 0.6 is above --long-above 0.4",
        ),
        (
            ["runtime", "--symbols", "BTC-USD", "DOGE-USD"],
            "trading-assets runtime: unknown symbol 'DOGE-USD': configured are BTC-USD, ETH-USD, SOL-USD (TA_SYMBOLS)",
        ),
        (["demo", "--days", "0"], "trading-assets demo: argument --days: '0' is not a positive integer"),
        (
            ["train", "--symbol", "XRP-USD", "--model-type", "lstm"],
            "trading-assets train: unknown symbol 'XRP-USD': configured are BTC-USD, ETH-USD, SOL-USD (TA_SYMBOLS)",
        ),
        (
            ["train", "--symbol", "BTC-USD", "--model-type", "xgboost"],
            "trading-assets train: argument --model-type: invalid choice: 'xgboost'",
        ),
        (
            ["train", "--symbol", "BTC-USD", "--model-type", "lstm", "--epochs", "many"],
            "trading-assets train: argument --epochs: 'many' is not a positive integer",
        ),
        (
            ["evaluate", "--model", "/nonexistent/artifact", "--symbol", "BTC-USD", "--model-type", "lstm"],
            "trading-assets evaluate: --model /nonexistent/artifact: no such artifact directory",
        ),
        (
            [
                "evaluate",
                "--model",
                ".",
                "--symbol",
                "BTC-USD",
                "--model-type",
                "lstm",
                "--min-accuracy",
                "5",
            ],
            "trading-assets evaluate: command line: min_accuracy=5.0: Input should be less than or equal to 1",
        ),
        (
            [
                "evaluate",
                "--model",
                ".",
                "--symbol",
                "BTC-USD",
                "--model-type",
                "lstm",
                "--max-calibration-error",
                "0",
            ],
            "trading-assets evaluate: command line: max_calibration_error=0.0: Input should be greater than 0",
        ),
        (
            [
                "evaluate",
                "--model",
                ".",
                "--symbol",
                "BTC-USD",
                "--model-type",
                "lstm",
                "--min-accuracy",
                "0.6",
            ],
            "trading-assets evaluate: command line min_accuracy=0.6 is looser than the policy in force "
            "(min_accuracy=0.68)",
        ),
        (["train"], "trading-assets train: the following arguments are required: --symbol, --model-type"),
    ],
)
def test_expected_refusals_are_one_line_naming_what_was_wrong(
    argv: list[str], expected: str, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TA_SYMBOLS", raising=False)
    line = refusal(argv, capsys)
    assert line.startswith(expected), line  # (argparse words the list of choices by Python version)


def test_an_artifact_directory_without_a_manifest_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    argv = ["evaluate", "--model", str(tmp_path), "--symbol", "BTC-USD", "--model-type", "logistic"]
    line = refusal(argv, capsys)
    assert line.startswith(f"trading-assets evaluate: cannot read {tmp_path}/manifest.json")


def test_a_bad_setting_is_refused_in_one_line_naming_the_variable(capsys, monkeypatch) -> None:
    monkeypatch.setenv("TA_MIN_ACCURACY", "5")
    assert refusal(["train", "--symbol", "BTC-USD", "--model-type", "lstm"], capsys) == (
        "trading-assets train: environment variable TA_MIN_ACCURACY='5': Input should be less than or equal to 1"
    )


def test_a_missing_store_is_refused_in_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TA_DATA_DIR", str(tmp_path))
    line = refusal(["train", "--symbol", "BTC-USD", "--model-type", "logistic"], capsys)
    assert line.startswith("trading-assets train: DuckDB store") and "does not exist yet" in line


@pytest.mark.parametrize("command", ["demo", "train", "evaluate", "runtime"])
def test_every_option_has_help_and_its_default(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    parser = next(
        action for action in _parser()._actions if isinstance(action, argparse._SubParsersAction)
    ).choices[command]
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{command} {action.option_strings}: no help text"
        if action.default is not None and not isinstance(action.default, bool):
            assert f"(default: {action.default})" in " ".join(text.split()), (command, action.dest)
