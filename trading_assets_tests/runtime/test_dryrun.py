import json
import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from trading_assets.features.build import build_feature_day
from trading_assets.features.pipeline import compute_features
from trading_assets.features.registry import FEATURE_NAMES, MODEL_FEATURES, schema_hash
from trading_assets.features.store import read_feature_matrix, read_features
from trading_assets.market.ingest import ingest_day
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.ml.artifacts import sha256_of, sign_manifest
from trading_assets.ml.config import TrainConfig
from trading_assets.ml.inference import load_model
from trading_assets.ml.train import TrainSpec, train
from trading_assets.promotion.ensemble import build_ensemble, ensemble_path
from trading_assets.promotion.registry import current, promote, roll_forward, rollback
from trading_assets.runtime.dryrun import DryRunRuntime, LiveTradingRefused, check_mode, run_iterations
from trading_assets.store.duckdb_store import query
from trading_assets_tests.promotion.conftest import COSTS, POLICY, copy_artifact, rewrite_artifact

HISTORY_START = date(2023, 11, 10)
#: Fifteen days of features: the gates' walk-forward evidence at the 5-minute horizon needs 480 test periods.
DAYS = [date(2024, 1, 1) + timedelta(days=offset) for offset in range(16)]
NOW = datetime(2024, 1, 16, 12, 0, 30, tzinfo=UTC)
SOURCE = SyntheticSource(predictability=0.4)


def do_promote(artifact: Path, models_dir: Path) -> None:
    promote(artifact, models_dir, list(MODEL_FEATURES), schema_hash(), "t", POLICY, COSTS)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> tuple[Path, Path, dict[str, Path]]:
    """Candles and features in DuckDB, an LSTM and a scikit-learn model promoted, and their ensemble."""
    root = tmp_path_factory.mktemp("deployed")
    db_path, models_dir = root / "store.duckdb", root / "models"
    for day in DAYS:
        ingest_day(SOURCE, db_path, "BTC-USD", day, max_invalid_share=0.0)
    for day in DAYS[1:]:
        build_feature_day(db_path, "BTC-USD", day, HISTORY_START)
    matrix = read_feature_matrix(db_path, "BTC-USD", DAYS[1], DAYS[-1])
    logistic = train(
        matrix, TrainSpec("logistic", "BTC-USD", models_dir, TrainConfig(max_epochs=1), POLICY, COSTS)
    )
    # These tests are about scoring and serving, not about gates: a 1-epoch LSTM (cheap) carries the passing
    # logistic model's recorded evidence, so the registry, which re-judges that record, serves it.
    config = TrainConfig(max_epochs=1, samples_per_epoch=512)
    lstm = train(matrix, TrainSpec("lstm", "BTC-USD", models_dir, config, POLICY, COSTS))
    manifest_path = lstm.artifact_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.update(metrics=logistic.manifest["metrics"], gates=logistic.manifest["gates"])
    manifest_path.write_text(json.dumps(manifest))
    sign_manifest(manifest_path)
    artifacts = {"lstm": lstm.artifact_dir, "logistic": logistic.artifact_dir}
    for artifact in artifacts.values():
        do_promote(artifact, models_dir)
    build_ensemble(models_dir, "BTC-USD")
    return db_path, models_dir, artifacts


def test_live_mode_is_refused() -> None:
    with pytest.raises(LiveTradingRefused, match="never places orders"):
        check_mode("live")
    check_mode("dryrun")


def test_train_serve_parity(deployed) -> None:
    db_path, models_dir, _ = deployed
    runtime = DryRunRuntime(SOURCE, db_path, models_dir, ["BTC-USD"], HISTORY_START)
    signal = runtime.score("BTC-USD", NOW)
    assert signal.minute == datetime(2024, 1, 16, 11, 59, tzinfo=UTC)
    # runtime features for the scored minutes equal what the feature store holds
    candles = SOURCE.fetch("BTC-USD", NOW - timedelta(days=2), NOW.replace(second=0))
    served = compute_features(
        candles, signal.minute - timedelta(minutes=59), signal.minute + timedelta(minutes=1), HISTORY_START
    )
    stored = read_features(
        db_path, "BTC-USD", signal.minute - timedelta(minutes=59), signal.minute + timedelta(minutes=1)
    )
    assert served.height == stored.height == 60
    np.testing.assert_allclose(
        served.select(FEATURE_NAMES).to_numpy(),
        stored.select(FEATURE_NAMES).to_numpy(),
        rtol=1e-12,
        atol=1e-12,
    )
    # runtime probabilities equal offline scoring of the stored rows
    rows = read_feature_matrix(
        db_path, "BTC-USD", signal.minute - timedelta(minutes=59), signal.minute + timedelta(minutes=1)
    ).x
    for model_type in ("lstm", "logistic"):
        promoted = current(models_dir, model_type, "BTC-USD")
        offline = load_model(promoted.directory, list(MODEL_FEATURES), schema_hash()).predict_proba(rows)[-1]
        assert signal.probabilities[model_type] == pytest.approx(float(offline), abs=1e-6)
        assert f"{model_type}:{promoted.version}" in signal.members
    weights = {m.model_type: m.weight for m in runtime.scorers["BTC-USD"].members()}
    assert weights == pytest.approx({"lstm": 0.35 / 0.6, "logistic": 0.25 / 0.6})
    assert signal.probabilities["ensemble"] == pytest.approx(
        sum(weights[t] * signal.probabilities[t] for t in weights)
    )


class FlakySource:
    """Fails on the second call, like an exchange that times out once."""

    name = "flaky"

    def __init__(self) -> None:
        self.calls = 0

    def fetch(self, symbol, start, end):
        self.calls += 1
        if self.calls == 2:
            raise TimeoutError("exchange did not answer")
        return SOURCE.fetch(symbol, start, end)


def test_the_loop_reports_source_errors_and_goes_on_recording_signals(deployed) -> None:
    db_path, models_dir, _ = deployed
    runtime = DryRunRuntime(FlakySource(), db_path, models_dir, ["BTC-USD"], HISTORY_START)
    lines: list[str] = []
    moments = iter([NOW, NOW + timedelta(minutes=1), NOW + timedelta(minutes=2)])
    signals = run_iterations(
        runtime, iterations=3, sleep_seconds=0, report=lines.append, clock=lambda: next(moments)
    )
    assert len(signals) == 2
    assert any(
        "iteration 2: BTC-USD skipped: TimeoutError: exchange did not answer" in line for line in lines
    )
    assert "(no orders placed)" in lines[0] and "BTC-USD" in lines[0]
    recorded = query(
        db_path, "SELECT symbol, minute, member, probability, signal FROM signals ORDER BY minute"
    )
    ensemble = recorded.filter(pl.col("member") == "ensemble")
    assert ensemble.height >= 2
    assert set(recorded["signal"].to_list()) <= {"long", "flat", "short"}
    assert set(recorded["member"].to_list()) == {"lstm", "logistic", "ensemble"}  # transformer not promoted
    assert ensemble.filter(pl.col("minute") == datetime(2024, 1, 16, 12, 1, tzinfo=UTC)).height == 1


def offline_p_up(artifact: Path, db_path: Path, minute: datetime) -> float:
    rows = read_feature_matrix(
        db_path, "BTC-USD", minute - timedelta(minutes=59), minute + timedelta(minutes=1)
    )
    return float(load_model(artifact, list(MODEL_FEATURES), schema_hash()).predict_proba(rows.x)[-1])


def test_rollback_changes_what_the_runtime_scores(deployed, tmp_path: Path) -> None:
    """v1, v2, v3 promoted; rollback serves v2, rollback again v1, forward v2: the runtime's probabilities
    and recorded versions follow, with the ensemble built once and never rebuilt."""
    db_path, _, artifacts = deployed
    models_dir, signals_db = tmp_path / "models", tmp_path / "signals.duckdb"
    v1, v2, v3 = (
        copy_artifact(artifacts["logistic"], tmp_path / "trained" / f"2024010{i}T000000000000Z", shift)
        for i, shift in ((1, -1.0), (2, 0.0), (3, 1.0))
    )
    for version in (v1, v2, v3):
        do_promote(version, models_dir)
    build_ensemble(models_dir, "BTC-USD")
    runtime = DryRunRuntime(SOURCE, signals_db, models_dir, ["BTC-USD"], HISTORY_START)
    args = (models_dir, "logistic", "BTC-USD", "t", list(MODEL_FEATURES), schema_hash())

    def tick() -> tuple[str, float]:
        [signal] = run_iterations(runtime, 1, 0, report=lambda line: None, clock=lambda: NOW)
        return signal.members, signal.probabilities["logistic"]

    served = [tick()]
    rollback(*args)
    served.append(tick())
    rollback(*args)
    served.append(tick())
    roll_forward(*args)
    served.append(tick())

    minute = datetime(2024, 1, 16, 11, 59, tzinfo=UTC)
    expected = [(f"logistic:{v.name}", offline_p_up(v, db_path, minute)) for v in (v3, v2, v1, v2)]
    assert [members for members, _ in served] == [members for members, _ in expected]
    np.testing.assert_allclose([p for _, p in served], [p for _, p in expected], atol=1e-6)
    assert expected[0][1] > expected[1][1] > expected[2][1]  # three different models, told apart
    recorded = query(
        signals_db, "SELECT members FROM signals WHERE member = ? ORDER BY members, probability", ["logistic"]
    )
    assert sorted(recorded["members"].to_list()) == sorted(members for members, _ in expected)


class Payload:
    """Unpickling this calls os.mkdir(marker): proof that a loader executed the file's contents."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.mkdir, (str(self.marker),))


def _manifest(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text())


def _write_manifest(directory: Path, signed: bool = True, **changes) -> Path:
    """The manifest with `changes`, re-signed (so only the change itself is refused) unless not `signed`."""
    (directory / "manifest.json").write_text(json.dumps({**_manifest(directory), **changes}))
    if signed:
        sign_manifest(directory)
    return directory / "manifest.json"


def _truncated_weights(models_dir: Path, version: Path) -> tuple[Path, str]:
    (version / "weights.npz").write_bytes((version / "weights.npz").read_bytes()[:100])
    return version / "weights.npz", "has sha256"


def _truncated_manifest(models_dir: Path, version: Path) -> tuple[Path, str]:
    (version / "manifest.json").write_text((version / "manifest.json").read_text()[:300])
    return version / "manifest.json", "cannot read"


def _wrong_schema(models_dir: Path, version: Path) -> tuple[Path, str]:
    manifest = _manifest(version)
    del manifest["calibration"]
    (version / "manifest.json").write_text(json.dumps(manifest))
    sign_manifest(version)
    return version / "manifest.json", "manifest has no field 'calibration'"


def _other_feature_schema(models_dir: Path, version: Path) -> tuple[Path, str]:
    return _write_manifest(
        version, schema_hash="an-older-schema"
    ), "(schema an-older-schema) but the feature store"


def _nan_weights(models_dir: Path, version: Path) -> tuple[Path, str]:
    with np.load(version / "weights.npz") as arrays:
        coef, intercept = arrays["coef"].copy(), arrays["intercept"]
    coef[3] = np.nan
    rewrite_artifact(version, weights={"coef": coef, "intercept": intercept})
    return version / "weights.npz", "weight 'coef' holds 1 non-finite value(s)"


def _temperature_zero(models_dir: Path, version: Path) -> tuple[Path, str]:
    calibration = {"method": "temperature", "temperature": 0.0}
    return _write_manifest(
        version, calibration=calibration
    ), "calibration temperature 0.0 must be a finite number > 0"


def _foreign_symbol(models_dir: Path, version: Path) -> tuple[Path, str]:
    return _write_manifest(
        version, symbol="BTC-USD"
    ), "a logistic model of BTC-USD, not the logistic model of ETH-USD"


def _edited_symbol(models_dir: Path, version: Path) -> tuple[Path, str]:
    return _write_manifest(version, signed=False, symbol="BTC-USD"), "manifest edited after training"


def _edited_seq_len(models_dir: Path, version: Path) -> tuple[Path, str]:
    seq_len = _manifest(version)["seq_len"] + 1  # within 2..10080: only the signature tells
    return _write_manifest(version, signed=False, seq_len=seq_len), "(manifest_sha256 mismatch)"


def _unsigned_manifest(models_dir: Path, version: Path) -> tuple[Path, str]:
    manifest = _manifest(version)
    del manifest["manifest_sha256"]
    (version / "manifest.json").write_text(json.dumps(manifest))
    return version / "manifest.json", "manifest not signed at training"


def _path_escaping(models_dir: Path, version: Path) -> tuple[Path, str]:
    outside = models_dir / "x.npz"
    shutil.copyfile(version / "weights.npz", outside)
    manifest = _write_manifest(
        version, weights_file="../../../../../x.npz", weights_sha256=sha256_of(outside)
    )
    return manifest, "escaping the artifact directory"


def _symlink_escaping(models_dir: Path, version: Path) -> tuple[Path, str]:
    outside = models_dir / "x.npz"
    (version / "weights.npz").rename(outside)
    (version / "weights.npz").symlink_to(outside)
    return version / "weights.npz", "outside the artifact directory"


def _unpromoted_version(models_dir: Path, version: Path) -> tuple[Path, str]:
    state = version.parent.parent / "CURRENT.json"
    state.write_text(json.dumps({"stack": ["20240101T000000000000Z", "never-promoted"], "position": 1}))
    return state, "serves version never-promoted, which is not in the promoted registry"


def _unpromoted_member(models_dir: Path, version: Path) -> tuple[Path, str]:
    """An ensemble file (as written before members were resolved) naming an unpromoted artifact's path."""
    path = ensemble_path(models_dir, "ETH-USD")
    spec = json.loads(path.read_text())
    spec["members"].append({"model_type": "lstm", "weight": 0.5, "version": "x", "directory": str(version)})
    path.write_text(json.dumps(spec))
    return (
        models_dir / "promoted" / "lstm" / "ETH-USD" / "CURRENT.json",
        "no lstm model of ETH-USD is promoted",
    )


def _ensemble_of_another_symbol(models_dir: Path, version: Path) -> tuple[Path, str]:
    path = ensemble_path(models_dir, "ETH-USD")
    path.write_text(json.dumps({**json.loads(path.read_text()), "symbol": "BTC-USD"}))
    return path, "an ensemble of BTC-USD, not of ETH-USD"


def _pickle_payload(models_dir: Path, version: Path) -> tuple[Path, str]:
    weights = version / "weights.pt"
    torch.save({"coef": Payload(models_dir / "executed")}, weights)
    _write_manifest(version, weights_file="weights.pt", weights_sha256=sha256_of(weights))
    return weights, "holds objects other than tensors"


CORRUPTIONS: dict[str, Callable[[Path, Path], tuple[Path, str]]] = {
    "truncated weights": _truncated_weights,
    "truncated manifest": _truncated_manifest,
    "wrong manifest schema": _wrong_schema,
    "other feature schema": _other_feature_schema,
    "NaN weights": _nan_weights,
    "temperature 0": _temperature_zero,
    "foreign symbol": _foreign_symbol,
    "edited symbol": _edited_symbol,
    "edited seq_len": _edited_seq_len,
    "unsigned manifest": _unsigned_manifest,
    "path escaping": _path_escaping,
    "symlink escaping": _symlink_escaping,
    "unpromoted version": _unpromoted_version,
    "unpromoted member": _unpromoted_member,
    "ensemble of another symbol": _ensemble_of_another_symbol,
    "pickle payload": _pickle_payload,
}


@pytest.fixture(scope="module")
def two_symbols(deployed, tmp_path_factory) -> Path:
    """A logistic model promoted for BTC-USD and one for ETH-USD, each in a one-member ensemble."""
    models_dir = tmp_path_factory.mktemp("two-symbols") / "models"
    logistic = deployed[2]["logistic"]
    do_promote(logistic, models_dir)
    do_promote(
        copy_artifact(logistic, models_dir.parent / "eth" / "20240101T000000000000Z", symbol="ETH-USD"),
        models_dir,
    )
    for symbol in ("BTC-USD", "ETH-USD"):
        build_ensemble(models_dir, symbol)
    return models_dir


@pytest.mark.parametrize("corruption", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_a_refused_member_skips_its_symbol_in_one_line_naming_the_file(
    corruption, two_symbols, deployed, tmp_path: Path
) -> None:
    models_dir = tmp_path / "models"
    shutil.copytree(two_symbols, models_dir)
    version = models_dir / "promoted" / "logistic" / "ETH-USD" / "versions" / "20240101T000000000000Z"
    named_file, reason = corruption(models_dir, version)
    runtime = DryRunRuntime(
        SOURCE, tmp_path / "signals.duckdb", models_dir, ["BTC-USD", "ETH-USD"], HISTORY_START
    )
    lines: list[str] = []
    signals = run_iterations(runtime, 1, 0, report=lines.append, clock=lambda: NOW)
    [refusal] = [line for line in lines if "ETH-USD skipped" in line]
    assert "\n" not in refusal and str(named_file) in refusal and reason in refusal, refusal
    assert [signal.symbol for signal in signals] == ["BTC-USD"]  # the other symbol goes on scoring
    assert np.isfinite(signals[0].probabilities["ensemble"])
    assert not (models_dir / "executed").exists()  # nothing in an artifact was executed
