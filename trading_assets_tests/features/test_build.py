"""Feature days built together equal the days built alone; a missing day stops the batch unwritten."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from trading_assets.features.build import MissingCandlesError, build_feature_day, build_feature_days
from trading_assets.features.store import read_feature_days, read_features
from trading_assets.market.ingest import ingest_days
from trading_assets.market.synthetic import SyntheticSource

HISTORY_START = date(2024, 3, 1)
DAYS = [HISTORY_START + timedelta(days=offset) for offset in range(5)]


@pytest.fixture
def candle_store(tmp_path: Path) -> Path:
    db_path = tmp_path / "store.duckdb"
    ingest_days(SyntheticSource(predictability=0.5), db_path, "SOL-USD", DAYS, max_invalid_share=0.0)
    return db_path


def test_a_batch_of_days_equals_each_day_built_alone(candle_store: Path) -> None:
    batch = build_feature_days(candle_store, "SOL-USD", DAYS[1:], HISTORY_START)
    stored = read_features(candle_store, "SOL-USD", DAYS[1], DAYS[-1] + timedelta(days=1))
    for report in batch:
        alone = build_feature_day(candle_store, "SOL-USD", report.day, HISTORY_START)
        assert report.frame.equals(alone.frame)
        assert report.candles_read == alone.candles_read == 2 * 1440
    assert stored.height == 4 * 1440 and stored["minute"].n_unique() == stored.height


def test_the_first_history_day_reads_no_lookback(candle_store: Path) -> None:
    [first] = build_feature_days(candle_store, "SOL-USD", [DAYS[0]], HISTORY_START)
    assert first.candles_read == 1440 and first.rows == 1440


def test_a_day_without_candles_fails_the_batch_before_anything_is_written(candle_store: Path) -> None:
    build_feature_days(candle_store, "SOL-USD", DAYS[:2], HISTORY_START)
    before = read_features(candle_store, "SOL-USD", DAYS[0], DAYS[-1])
    beyond = [DAYS[-1] + timedelta(days=offset) for offset in (1, 2)]
    with pytest.raises(MissingCandlesError, match=r"no stored candles for SOL-USD on 2024-03-06, 2024-03-07"):
        build_feature_days(candle_store, "SOL-USD", [*DAYS, *beyond], HISTORY_START)
    assert read_features(candle_store, "SOL-USD", DAYS[0], DAYS[-1]).equals(before)


def test_stored_days_are_read_back_per_day(candle_store: Path) -> None:
    build_feature_days(candle_store, "SOL-USD", DAYS[:3], HISTORY_START)
    by_day = read_feature_days(candle_store, "SOL-USD", [DAYS[0], DAYS[2], DAYS[4]])
    assert [frame.height for frame in by_day.values()] == [1440, 1440, 0]
    assert by_day[DAYS[2]]["minute"].dt.date().unique().to_list() == [DAYS[2]]
    assert set(by_day[DAYS[4]].columns) == set(by_day[DAYS[0]].columns)


def test_a_refusing_before_write_stores_no_features(candle_store: Path) -> None:
    build_feature_days(candle_store, "SOL-USD", DAYS[:2], HISTORY_START)
    before = read_features(candle_store, "SOL-USD", DAYS[0], DAYS[-1] + timedelta(days=1))

    def refuse() -> None:
        raise RuntimeError("run 1a2b3c4d is FAILURE")

    with pytest.raises(RuntimeError, match="FAILURE"):
        build_feature_days(candle_store, "SOL-USD", DAYS, HISTORY_START, before_write=refuse)
    assert read_features(candle_store, "SOL-USD", DAYS[0], DAYS[-1] + timedelta(days=1)).equals(before)
