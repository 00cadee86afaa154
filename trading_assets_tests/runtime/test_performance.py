from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from trading_assets.market.ingest import ingest_day
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.ml.metrics import expected_calibration_error
from trading_assets.runtime.dryrun import Signal, record_signals
from trading_assets.runtime.performance import live_performance, signal_outcomes
from trading_assets.store.duckdb_store import query, run_write

DAY = date(2024, 3, 1)
START = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    db_path = tmp_path / "store.duckdb"
    ingest_day(SyntheticSource(predictability=0.7), db_path, "BTC-USD", DAY, max_invalid_share=0.0)
    return db_path


def closes(db_path: Path) -> np.ndarray:
    return query(db_path, "SELECT close FROM candles WHERE symbol = ? ORDER BY minute", ["BTC-USD"])[
        "close"
    ].to_numpy()


def signal(minute: datetime, p_lstm: float, p_ensemble: float) -> Signal:
    probabilities = {"lstm": p_lstm, "ensemble": p_ensemble}
    return Signal("BTC-USD", minute, probabilities, "flat", 1.0, "lstm:v1")


def test_outcomes_join_signals_with_later_candles(store: Path) -> None:
    close = closes(store)
    up = close[1:] > close[:-1]
    minutes = [START + timedelta(minutes=m) for m in range(100, 400)]
    # The LSTM knows the future (p 0.9 on the right side); the ensemble always says "up" at 0.6.
    signals = [signal(t, 0.9 if up[m] else 0.1, 0.6) for m, t in zip(range(100, 400), minutes, strict=True)]
    record_signals(store, signals, START + timedelta(hours=8))
    # The same minutes recorded again earlier with the opposite view: the latest record of a minute wins.
    record_signals(store, [signal(t, 0.5, 0.4) for t in minutes], START + timedelta(hours=7))
    # The day's last minute has no later candle yet: no outcome.
    record_signals(store, [signal(START + timedelta(minutes=1439), 0.9, 0.6)], START + timedelta(hours=9))

    outcomes, summary = live_performance(store, "BTC-USD", START + timedelta(days=1), window_hours=24)
    assert outcomes.height == 300
    np.testing.assert_array_equal(outcomes["up"].to_numpy(), up[100:400].astype(float))
    by_member = {s.scored: s for s in summary}
    assert by_member["lstm"].accuracy == 1.0 and by_member["lstm"].outcomes == 300
    assert by_member["lstm"].calibration_error == pytest.approx(0.1)
    share_up = float(np.mean(up[100:400]))
    assert by_member["ensemble"].accuracy == pytest.approx(share_up)
    assert by_member["ensemble"].calibration_error == pytest.approx(
        expected_calibration_error(np.full(300, 0.6), up[100:400].astype(float))
    )
    assert by_member["transformer"].outcomes == 0 and by_member["transformer"].accuracy is None


def test_window_and_horizon(store: Path) -> None:
    close = closes(store)
    minutes = [START + timedelta(minutes=m) for m in (10, 600, 1200)]
    record_signals(store, [signal(t, 0.7, 0.7) for t in minutes], START + timedelta(hours=23))
    recent = signal_outcomes(store, "BTC-USD", START + timedelta(minutes=500), horizon=5)
    assert recent["minute"].to_list() == minutes[1:]
    assert recent["up"].to_list() == [float(close[m + 5] > close[m]) for m in (600, 1200)]


def test_no_signals_yet_is_an_empty_window(store: Path) -> None:
    outcomes, summary = live_performance(store, "BTC-USD", START + timedelta(days=1))
    assert outcomes.height == 0 and all(s.outcomes == 0 for s in summary)


#: The signals table as versions before one row per member wrote it (a column per model type).
WIDE_SIGNALS_DDL = """
CREATE TABLE signals (
    symbol VARCHAR NOT NULL, minute TIMESTAMPTZ NOT NULL, recorded_at TIMESTAMPTZ NOT NULL,
    mode VARCHAR NOT NULL, p_lstm DOUBLE, p_transformer DOUBLE, p_sklearn DOUBLE, p_ensemble DOUBLE NOT NULL,
    signal VARCHAR NOT NULL, latency_ms DOUBLE NOT NULL, members VARCHAR NOT NULL, schema_hash VARCHAR NOT NULL
)
"""


def test_a_wide_signals_table_is_read_then_migrated_in_place(store: Path) -> None:
    """A file of an earlier version: read as it is, then turned into one row per member by the next write;
    its `p_sklearn` column becomes member `logistic`; the figures are the same before and after."""
    up = closes(store)[1:] > closes(store)[:-1]
    old = [
        (START + timedelta(minutes=m), 0.9 if up[m] else 0.1, 0.2 if up[m] else 0.8, 0.6)
        for m in range(100, 200)
    ]

    def write_wide(connection) -> None:
        connection.execute(WIDE_SIGNALS_DDL)
        connection.executemany(
            "INSERT INTO signals VALUES ('BTC-USD', ?, ?, 'dryrun', NULL, NULL, ?, ?, 'flat', 1.0, 'x', 'h')",
            [(t, START + timedelta(hours=8), p_logistic, p_ensemble) for t, _, p_logistic, p_ensemble in old],
        )

    run_write(store, write_wide)
    window = (store, "BTC-USD", START + timedelta(days=1))
    before = {s.scored: s for s in live_performance(*window)[1]}
    assert before["logistic"].outcomes == 100 and before["logistic"].accuracy == 0.0
    assert before["ensemble"].outcomes == 100 and before["lstm"].outcomes == 0

    record_signals(store, [signal(START + timedelta(minutes=300), 0.9, 0.6)], START + timedelta(hours=9))
    columns = query(store, "SELECT column_name FROM information_schema.columns WHERE table_name = 'signals'")
    assert (
        "member" in columns["column_name"].to_list() and "p_sklearn" not in columns["column_name"].to_list()
    )
    members = query(store, "SELECT member, count(*) AS n FROM signals GROUP BY member ORDER BY member")
    assert dict(zip(members["member"], members["n"], strict=True)) == {
        "ensemble": 101,
        "logistic": 100,
        "lstm": 1,
    }
    after = {s.scored: s for s in live_performance(*window)[1]}
    assert after["logistic"] == before["logistic"] and after["ensemble"].outcomes == 101
    record_signals(store, [signal(START + timedelta(minutes=301), 0.9, 0.6)], START + timedelta(hours=9))
    assert query(store, "SELECT count(*) AS n FROM signals")["n"][0] == 204  # migrated once, then appended
