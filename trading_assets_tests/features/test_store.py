"""Feature store: round trip, idempotent rewrite, refusal of bad frames, matrix, summary and checks."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from trading_assets.features import store as feature_store
from trading_assets.features.pipeline import compute_day_features
from trading_assets.features.registry import FEATURE_NAMES, FEATURE_SET_VERSION, MODEL_FEATURES, schema_hash
from trading_assets.features.store import (
    check_feature_ranges,
    feature_matrix,
    feature_summary,
    read_feature_matrix,
    read_features,
    write_feature_day,
)
from trading_assets.store.duckdb_store import StoreMissingError, query
from trading_assets_tests.features.conftest import FIRST_DAY

DAY2 = FIRST_DAY + timedelta(days=1)


@pytest.fixture(scope="module")
def day2_rows(btc_candles: pl.DataFrame) -> pl.DataFrame:
    return compute_day_features(btc_candles, DAY2, FIRST_DAY)


def test_round_trip_and_idempotent_rewrite(tmp_path: Path, day2_rows: pl.DataFrame) -> None:
    db = tmp_path / "store.duckdb"
    assert write_feature_day(db, "BTC-USD", DAY2, day2_rows) == 1440
    assert write_feature_day(db, "BTC-USD", DAY2, day2_rows) == 1440
    stored = read_features(db, "BTC-USD", DAY2, DAY2 + timedelta(days=1))
    assert stored.height == 1440
    assert stored.select(day2_rows.columns).equals(day2_rows)
    assert set(stored["feature_set_version"]) == {FEATURE_SET_VERSION}
    assert set(stored["schema_hash"]) == {schema_hash()}
    counts = query(db, "SELECT symbol, count(*) AS n FROM features GROUP BY symbol")
    assert counts.rows() == [("BTC-USD", 1440)]


def test_days_and_symbols_are_separate_slices(tmp_path: Path, btc_candles: pl.DataFrame, day2_rows) -> None:
    db = tmp_path / "store.duckdb"
    day1_rows = compute_day_features(btc_candles, FIRST_DAY, FIRST_DAY)
    write_feature_day(db, "BTC-USD", FIRST_DAY, day1_rows)
    write_feature_day(db, "BTC-USD", DAY2, day2_rows)
    write_feature_day(db, "ETH-USD", DAY2, day2_rows)
    assert read_features(db, "BTC-USD", FIRST_DAY, DAY2 + timedelta(days=1)).height == 2880
    assert read_features(db, "ETH-USD", FIRST_DAY, DAY2 + timedelta(days=1)).height == 1440
    subset = read_features(db, "BTC-USD", FIRST_DAY, DAY2, columns=["minute", "rsi_14"])
    assert subset.columns == ["minute", "rsi_14"] and subset.height == 1440


def test_write_refuses_non_finite_values_and_keeps_the_old_slice(tmp_path: Path, day2_rows) -> None:
    db = tmp_path / "store.duckdb"
    write_feature_day(db, "BTC-USD", DAY2, day2_rows)
    broken = day2_rows.with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(float("nan")).otherwise(pl.col("rsi_14")).alias("rsi_14")
    )
    with pytest.raises(ValueError, match="rsi_14"):
        write_feature_day(db, "BTC-USD", DAY2, broken)
    assert (
        read_features(db, "BTC-USD", DAY2, DAY2 + timedelta(days=1))
        .select(day2_rows.columns)
        .equals(day2_rows)
    )


def test_checks_report_bounds_and_coverage(day2_rows: pl.DataFrame) -> None:
    assert check_feature_ranges(day2_rows, DAY2) == []
    out_of_range = day2_rows.with_columns(pl.col("rsi_14") + 200.0, pl.col("williams_r_14") + 150.0)
    problems = check_feature_ranges(out_of_range.head(1000), DAY2)
    assert any(p.startswith("rsi_14") for p in problems)
    assert any(p.startswith("williams_r_14") for p in problems)
    assert any("expected 1440" in p for p in problems)
    assert check_feature_ranges(day2_rows.drop("usable")) == ["missing column(s) ['usable']"]


def test_feature_matrix_is_float32_in_model_order(tmp_path: Path, day2_rows: pl.DataFrame) -> None:
    db = tmp_path / "store.duckdb"
    write_feature_day(db, "BTC-USD", DAY2, day2_rows)
    matrix = read_feature_matrix(db, "BTC-USD", DAY2, DAY2 + timedelta(days=1))
    assert matrix.x.dtype == np.float32 and matrix.x.shape == (1440, len(MODEL_FEATURES))
    assert matrix.names == MODEL_FEATURES
    assert np.array_equal(matrix.x[:, 3], day2_rows[MODEL_FEATURES[3]].cast(pl.Float32).to_numpy())
    assert matrix.close.shape == matrix.usable.shape == matrix.minutes.shape == (1440,)
    with pytest.raises(ValueError, match="feature set"):
        feature_matrix(day2_rows.with_columns(schema_hash=pl.lit("0123456789abcdef")))


def test_matrix_is_streamed_in_minute_order_across_batches(
    tmp_path: Path, btc_candles: pl.DataFrame, day2_rows: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "store.duckdb"
    write_feature_day(db, "BTC-USD", DAY2, day2_rows)  # the later day is stored first
    write_feature_day(db, "BTC-USD", FIRST_DAY, compute_day_features(btc_candles, FIRST_DAY, FIRST_DAY))
    monkeypatch.setattr(feature_store, "_READ_BATCH_ROWS", 1000)  # 2,880 rows: three batches
    streamed = read_feature_matrix(db, "BTC-USD", FIRST_DAY, DAY2 + timedelta(days=1))
    whole = feature_matrix(read_features(db, "BTC-USD", FIRST_DAY, DAY2 + timedelta(days=1)))
    assert np.all(np.diff(streamed.minutes) == np.timedelta64(1, "m")) and len(streamed.minutes) == 2880
    for name in ("x", "minutes", "close", "usable", "observed"):
        assert np.array_equal(getattr(streamed, name), getattr(whole, name)), name
    assert read_feature_matrix(db, "ETH-USD", FIRST_DAY, DAY2).x.shape == (0, len(MODEL_FEATURES))
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    with pytest.raises(StoreMissingError, match="no features are stored"):
        read_feature_matrix(empty, "BTC-USD", FIRST_DAY, DAY2)


def test_summary_has_one_row_per_feature(day2_rows: pl.DataFrame) -> None:
    summary = feature_summary(day2_rows)
    assert summary["feature"].to_list() == list(FEATURE_NAMES)
    assert summary.columns == ["feature", "mean", "std", "min", "max", "rows", "share_filled"]
    rsi = summary.filter(pl.col("feature") == "rsi_14").row(0, named=True)
    assert 0 <= rsi["min"] <= rsi["mean"] <= rsi["max"] <= 100
    assert summary["share_filled"].to_list() == [0.0] * 39
    assert summary.null_count().sum_horizontal().item() == 0


def test_summary_counts_filled_minutes(btc_candles: pl.DataFrame) -> None:
    day = date(2026, 3, 26)
    start = btc_candles.filter(pl.col("minute").dt.date() == day)["minute"][100]
    gappy = btc_candles.filter(
        (pl.col("minute") < start) | (pl.col("minute") >= start + timedelta(minutes=144))
    )
    summary = feature_summary(compute_day_features(gappy, day, FIRST_DAY))
    assert summary["share_filled"][0] == pytest.approx(0.1)
