"""The model registry through Dagster: the `model_registry` job and `trading-assets promote` change what
serves, record it on `promoted_<type>_model`, and the runtime's next tick scores with exactly that version."""

from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest

from trading_assets.cli import main
from trading_assets.definitions import build_definitions
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.promotion.ensemble import build_ensemble
from trading_assets.promotion.registry import current
from trading_assets.runtime.dryrun import DryRunRuntime, run_iterations
from trading_assets.settings import load_settings
from trading_assets_tests.promotion.conftest import copy_artifact, train

SYMBOL = "BTC-USD"
VERSIONS = ("20240101T000000000000Z", "20240102T000000000000Z", "20240103T000000000000Z")
HISTORY_START = date(2023, 11, 10)
NOW = datetime(2024, 1, 16, 12, 0, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One passing logistic model, trained once."""
    return train("logistic", 0.4, tmp_path_factory.mktemp("trained")).artifact_dir


@pytest.fixture
def deployment(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three trained versions of the logistic BTC-USD model in a fresh models directory and DAGSTER_HOME."""
    models_dir, home = tmp_path / "models", tmp_path / "dagster_home"
    home.mkdir()
    for name, value in {
        "TA_MODELS_DIR": str(models_dir),
        "TA_DATA_DIR": str(tmp_path / "data"),
        "TA_SYMBOLS": SYMBOL,
        "TA_FOLDS": "2",  # the policy the model was judged under
        "DAGSTER_HOME": str(home),
    }.items():
        monkeypatch.setenv(name, value)
    for shift, version in zip((-0.5, 0.0, 0.5), VERSIONS, strict=True):
        copy_artifact(trained, models_dir / "logistic" / SYMBOL / version, shift)
    return models_dir


def run_registry_job(instance: dg.DagsterInstance, **change: str) -> dg.ExecuteInProcessResult:
    job = build_definitions(load_settings()).resolve_job_def("model_registry")
    config = {"model_type": "logistic", "symbol": SYMBOL, "reason": "test", **change}
    return job.execute_in_process(
        run_config={"ops": {"change_model_service": {"config": config}}},
        instance=instance,
        raise_on_error=False,
    )


def recorded_as_served(instance: dg.DagsterInstance) -> dict[str, object]:
    """The latest materialization of promoted_logistic_model for the symbol, as the UI shows it."""
    [record] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("promoted_logistic_model"), asset_partitions=[SYMBOL]),
        limit=1,
    ).records
    return {key: value.value for key, value in record.asset_materialization.metadata.items()}


def runtime_scores_with(models_dir: Path, tmp_path: Path) -> str:
    """The logistic member version the dry-run runtime scores with on its next tick."""
    build_ensemble(models_dir, SYMBOL)
    runtime = DryRunRuntime(
        SyntheticSource(predictability=0.4), tmp_path / "signals.duckdb", models_dir, [SYMBOL], HISTORY_START
    )
    [signal] = run_iterations(runtime, 1, 0, report=lambda line: None, clock=lambda: NOW)
    return signal.members.removeprefix("logistic:")


def test_rollback_through_the_job_and_the_cli_is_what_the_ui_shows_and_the_runtime_serves(
    deployment: Path, tmp_path: Path, capsys
) -> None:
    with dg.DagsterInstance.get() as instance:
        for version in VERSIONS:
            assert run_registry_job(instance, action="promote", version=version).success
        assert recorded_as_served(instance)["version"] == VERSIONS[2]

        assert run_registry_job(instance, action="rollback").success
        shown = recorded_as_served(instance)
        assert (shown["version"], shown["previous_version"], shown["action"]) == (
            VERSIONS[1],
            VERSIONS[2],
            "rollback",
        )
        assert shown["reason"] == "test" and "dagster run" in shown["by"]
        assert (
            runtime_scores_with(deployment, tmp_path)
            == shown["version"]
            == current(deployment, "logistic", SYMBOL).version
        )

        assert main(["promote", "logistic", "--symbol", SYMBOL, "--rollback", "--reason", "bad fills"]) == 0
        assert "in service" in capsys.readouterr().out
        shown = recorded_as_served(instance)
        assert (shown["version"], shown["reason"]) == (VERSIONS[0], "bad fills") and "(cli)" in shown["by"]
        assert runtime_scores_with(deployment, tmp_path) == VERSIONS[0]

        assert main(["promote", "logistic", "--symbol", SYMBOL, "--pin", VERSIONS[2]]) == 0
        assert recorded_as_served(instance)["version"] == VERSIONS[2]
        assert runtime_scores_with(deployment, tmp_path) == VERSIONS[2]


def test_the_version_list_names_champion_previous_and_challenger(deployment: Path) -> None:
    with dg.DagsterInstance.get() as instance:
        for version in VERSIONS[:2]:
            assert run_registry_job(instance, action="promote", version=version).success
        table = recorded_as_served(instance)["versions"]
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()[2:]}
    assert rows == {VERSIONS[2]: "challenger", VERSIONS[1]: "champion", VERSIONS[0]: "previous"}
    header = table.splitlines()[0]
    for column in ("folds", "gates", "fee bps", "lr / batch / seq_len / epochs", "data", "code"):
        assert f" {column} " in header, column


def test_the_comparison_chart_overlays_the_champion_and_the_others(deployment: Path) -> None:
    from trading_assets.promotion.service import comparison_curves

    with dg.DagsterInstance.get() as instance:
        for version in VERSIONS[:2]:
            assert run_registry_job(instance, action="promote", version=version).success
        chart = recorded_as_served(instance)["comparison_chart"]
    assert chart.startswith("![versions side by side](data:image/png;base64,")
    curves = comparison_curves(deployment, "logistic", SYMBOL)
    assert [curve.label.split(" ")[1] for curve in curves] == ["(champion)", "(challenger)", "(previous)"]
    assert all(curve.times and len(curve.times) == len(curve.equity) for curve in curves)


def test_a_refused_change_fails_the_run_in_one_line_and_changes_nothing(deployment: Path, capsys) -> None:
    with dg.DagsterInstance.get() as instance:
        assert run_registry_job(instance, action="promote", version=VERSIONS[0]).success
        refused = run_registry_job(instance, action="pin", version=VERSIONS[2])
        assert not refused.success
        assert current(deployment, "logistic", SYMBOL).version == VERSIONS[0]
    capsys.readouterr()  # the in-process runs above log their events; the command prints one line
    assert main(["promote", "logistic", "--symbol", SYMBOL, "--rollback"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "nothing to roll back to" in line
