from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from trading_assets.features.build import build_feature_day
from trading_assets.features.pipeline import compute_features
from trading_assets.features.registry import FEATURE_NAMES, FEATURE_SET_VERSION, MODEL_FEATURES, schema_hash
from trading_assets.features.store import read_feature_matrix, read_features
from trading_assets.market.ingest import ingest_day
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.ml.config import TrainConfig
from trading_assets.ml.gates import ACCEPT_ANY_MODEL
from trading_assets.ml.inference import load_model
from trading_assets.ml.train import train_model
from trading_assets.promotion.ensemble import build_ensemble
from trading_assets.promotion.registry import promote
from trading_assets.runtime.dryrun import DryRunRuntime, LiveTradingRefused, check_mode, run_iterations
from trading_assets.store.duckdb_store import query

HISTORY_START = date(2023, 11, 10)
DAYS = [date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)]
NOW = datetime(2024, 3, 3, 12, 0, 30, tzinfo=UTC)
SOURCE = SyntheticSource(predictability=0.7)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> tuple[Path, Path]:
    """Candles and features in DuckDB, an LSTM and a scikit-learn model promoted, and their ensemble."""
    root = tmp_path_factory.mktemp("deployed")
    db_path, models_dir = root / "store.duckdb", root / "models"
    for day in DAYS:
        ingest_day(SOURCE, db_path, "BTC-USD", day, max_invalid_share=0.0)
    for day in DAYS[1:]:
        build_feature_day(db_path, "BTC-USD", day, HISTORY_START)
    matrix = read_feature_matrix(db_path, "BTC-USD", DAYS[1], DAYS[2])
    for model_type in ("lstm", "sklearn"):
        result = train_model(
            model_type, "BTC-USD", matrix.x, matrix.close, matrix.usable, matrix.minutes, list(MODEL_FEATURES),
            FEATURE_SET_VERSION, schema_hash(), TrainConfig(max_epochs=1, samples_per_epoch=512), models_dir,
            thresholds=ACCEPT_ANY_MODEL,
        )  # fmt: skip
        promote(result.artifact_dir, models_dir, list(MODEL_FEATURES), schema_hash(), "t")
    build_ensemble(models_dir, "BTC-USD")
    return db_path, models_dir


def test_live_mode_is_refused() -> None:
    with pytest.raises(LiveTradingRefused, match="never places orders"):
        check_mode("live")
    check_mode("dryrun")


def test_train_serve_parity(deployed) -> None:
    db_path, models_dir = deployed
    runtime = DryRunRuntime(SOURCE, db_path, models_dir, ["BTC-USD"], HISTORY_START)
    signal = runtime.score("BTC-USD", NOW)
    assert signal.minute == datetime(2024, 3, 3, 11, 59, tzinfo=UTC)
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
    for model_type in ("lstm", "sklearn"):
        member = next(m for m in runtime.scorers["BTC-USD"].spec.members if m.model_type == model_type)
        offline = load_model(Path(member.directory), list(MODEL_FEATURES), schema_hash()).predict_proba(rows)[
            -1
        ]
        assert signal.probabilities[model_type] == pytest.approx(float(offline), abs=1e-6)
    weights = runtime.scorers["BTC-USD"].spec.weights
    assert weights == pytest.approx({"lstm": 0.35 / 0.6, "sklearn": 0.25 / 0.6})
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
    db_path, models_dir = deployed
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
        db_path, "SELECT symbol, minute, signal, p_ensemble, p_transformer FROM signals ORDER BY minute"
    )
    assert recorded.height >= 2
    assert set(recorded["signal"].to_list()) <= {"long", "flat", "short"}
    assert recorded["p_transformer"].is_null().all()
    assert recorded.filter(pl.col("minute") == datetime(2024, 3, 3, 12, 1, tzinfo=UTC)).height == 1
