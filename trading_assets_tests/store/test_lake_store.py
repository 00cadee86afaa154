"""The same store on both backends: the embedded DuckDB file and a DuckLake (catalog in a real PostgreSQL server
started here on 127.0.0.1, Parquet files under a temporary data path). Each scenario runs against both and
must give the same rows; the lake's own guarantees (commit conflicts retried, no duplicates when two writers
fill one slice, several processes writing at once, snapshots) are tested on the lake."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import psycopg2
import pytest

from trading_assets.defs.partitions import partition_range_tags
from trading_assets.defs.resources import DuckDBStoreResource, MarketDataResource
from trading_assets.features.build import build_feature_days
from trading_assets.features.provenance import DataChangedError, data_snapshot, read_training_rows
from trading_assets.features.store import read_feature_days, read_feature_matrix
from trading_assets.market.candles import day_bounds
from trading_assets.market.ingest import ingest_days
from trading_assets.market.integrity import RevisionRefusedError
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.ml.config import TrainConfig
from trading_assets.ml.policy import PromotionPolicy
from trading_assets.ml.train import TrainSpec, train_symbol
from trading_assets.settings import LAKE_CATALOG_ENV, load_settings
from trading_assets.store.duckdb_store import (
    LakeStore,
    ShrinkRefusedError,
    Store,
    StoreMissingError,
    candle_integrity,
    candle_integrity_by_day,
    close_lakes,
    connect_lake,
    latest_minutes,
    query,
    read_candles,
    stored_minutes_per_day,
    write_candle_slices,
    write_candles,
)
from trading_assets_tests.defs.code_location import features, raw_candles
from trading_assets_tests.servers.postgres import PostgresServer, postgres_server
from trading_assets_tests.store.writer_process import backfill as backfill_and_read_back

DAY = date(2024, 2, 1)
NOW = datetime(2024, 2, 2, tzinfo=UTC)
_DATABASES = itertools.count()


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with postgres_server(db_name="lake_catalogs") as running:
        yield running


def new_lake(server: PostgresServer, data_path: Path) -> LakeStore:
    """A DuckLake on a new, empty PostgreSQL database of `server`."""
    name = f"lake_{next(_DATABASES)}"
    connection = psycopg2.connect(server.dsn)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
    catalog = server.dsn.replace(f"dbname={server.db_name}", f"dbname={name}")
    return LakeStore(catalog, str(data_path))


@pytest.fixture
def lake(server: PostgresServer, tmp_path: Path) -> Iterator[LakeStore]:
    yield new_lake(server, tmp_path / "lake-data")
    close_lakes()


@pytest.fixture(params=["duckdb", "ducklake"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "duckdb":
        return tmp_path / "store.duckdb"
    return request.getfixturevalue("lake")


def day_candles(symbol: str = "BTC-USD", day: date = DAY, seed: int = 7) -> pl.DataFrame:
    return SyntheticSource(seed=seed).fetch(symbol, *day_bounds(day))


def unique_keys(frame: pl.DataFrame) -> bool:
    return frame.select(pl.struct("symbol", "minute").is_unique().all()).item()


def test_candle_slices_are_replaced_idempotently_and_read_back(store: Store) -> None:
    for day in (DAY, DAY + timedelta(days=1)):
        write_candles(store, day_candles(day=day), "BTC-USD", *day_bounds(day), "synthetic", NOW)
    write_candles(store, day_candles("ETH-USD"), "ETH-USD", *day_bounds(DAY), "synthetic", NOW)
    before = read_candles(store, ["BTC-USD", "ETH-USD"])
    write_candles(store, day_candles(), "BTC-USD", *day_bounds(DAY), "synthetic", NOW)  # a rerun
    after = read_candles(store, ["BTC-USD", "ETH-USD"])
    assert after.height == 3 * 1440 and unique_keys(after)
    assert after.equals(before)
    expected = pl.concat([day_candles(), day_candles(day=DAY + timedelta(days=1))])
    assert after.filter(pl.col("symbol") == "BTC-USD").select(expected.columns).equals(expected)
    assert candle_integrity(store, "BTC-USD", *day_bounds(DAY)) == {
        "rows": 1440,
        "duplicate_minutes": 0,
        "ohlc_violations": 0,
    }
    by_day = candle_integrity_by_day(store, "BTC-USD", [DAY - timedelta(days=1), DAY])
    assert [counts["rows"] for counts in by_day.values()] == [0, 1440]
    assert stored_minutes_per_day(store, "BTC-USD", DAY, DAY + timedelta(days=5)) == {
        DAY: 1440,
        DAY + timedelta(days=1): 1440,
    }
    assert latest_minutes(store, ["BTC-USD"]) == {
        "BTC-USD": day_bounds(DAY + timedelta(days=1))[1] - timedelta(minutes=1)
    }


def test_a_failing_write_leaves_the_old_slices(store: Store) -> None:
    days = [DAY, DAY + timedelta(days=1)]
    candles = pl.concat([day_candles(day=day) for day in days])
    slices = [day_bounds(day) for day in days]
    write_candle_slices(store, candles, "BTC-USD", slices, "synthetic", NOW)
    before = read_candles(store, ["BTC-USD"])
    broken = candles.with_columns(
        pl.when(pl.col("minute") == slices[1][0]).then(None).otherwise(pl.col("close")).alias("close")
    )
    with pytest.raises(duckdb.ConstraintException):
        write_candle_slices(store, broken, "BTC-USD", slices, "v2", NOW)
    assert read_candles(store, ["BTC-USD"]).equals(before)


def test_a_shrinking_write_is_refused_and_keeps_the_stored_rows(store: Store) -> None:
    write_candles(store, day_candles(), "BTC-USD", *day_bounds(DAY), "synthetic", NOW)
    before = read_candles(store, ["BTC-USD"])
    with pytest.raises(ShrinkRefusedError, match="2024-02-01 1440 rows stored, 1000 fetched"):
        write_candles(store, day_candles().head(1000), "BTC-USD", *day_bounds(DAY), "synthetic", NOW)
    assert read_candles(store, ["BTC-USD"]).equals(before)
    write_candles(store, day_candles().head(1000), "BTC-USD", *day_bounds(DAY), "s", NOW, allow_shrink=True)
    assert read_candles(store, ["BTC-USD"]).height == 1000


def test_the_revision_guard_refuses_revised_minutes_and_keeps_the_stored_rows(store: Store) -> None:
    ingest_days(SyntheticSource(seed=7), store, "BTC-USD", [DAY], max_invalid_share=0.0)
    before = read_candles(store, ["BTC-USD"])
    with pytest.raises(RevisionRefusedError, match="BTC-USD"):
        ingest_days(SyntheticSource(seed=8), store, "BTC-USD", [DAY], max_invalid_share=0.0)
    assert read_candles(store, ["BTC-USD"]).equals(before)
    [report] = ingest_days(SyntheticSource(seed=8), store, "BTC-USD", [DAY], 0.0, allow_revision=True)
    assert report.revision is not None
    revised = read_candles(store, ["BTC-USD"])
    assert revised.height == 1440 and not revised["close"].equals(before["close"])


def test_reading_a_store_never_written_says_so(store: Store) -> None:
    with pytest.raises(StoreMissingError):
        read_candles(store, ["BTC-USD"])
    with pytest.raises(StoreMissingError):
        latest_minutes(store, ["BTC-USD"])  # a query naming a table (the freshness check's)


def backfill(store: Store, symbols: list[str], days: list[date]) -> None:
    for symbol in symbols:
        ingest_days(SyntheticSource(), store, symbol, days, max_invalid_share=0.0)
        build_feature_days(store, symbol, days, days[0])


def without_clock(frame: pl.DataFrame) -> pl.DataFrame:
    """The rows without the columns that record when they were written."""
    return frame.drop([name for name in ("ingested_at", "computed_at") if name in frame.columns])


def test_both_backends_store_and_read_identical_candles_and_features(tmp_path: Path, lake: LakeStore) -> None:
    symbols, days = ["BTC-USD", "ETH-USD"], [DAY + timedelta(days=offset) for offset in range(3)]
    embedded = tmp_path / "store.duckdb"
    for store in (embedded, lake):
        backfill(store, symbols, days)
    assert without_clock(read_candles(lake, symbols)).equals(without_clock(read_candles(embedded, symbols)))
    for symbol in symbols:
        lake_days, file_days = (
            read_feature_days(lake, symbol, days),
            read_feature_days(embedded, symbol, days),
        )
        for day in days:
            assert lake_days[day].height == 1440
            assert without_clock(lake_days[day]).equals(without_clock(file_days[day])), (symbol, day)
        from_lake = read_feature_matrix(lake, symbol, days[0], days[-1] + timedelta(days=1))
        from_file = read_feature_matrix(embedded, symbol, days[0], days[-1] + timedelta(days=1))
        for name in ("x", "minutes", "close", "usable", "observed"):
            assert np.array_equal(getattr(from_lake, name), getattr(from_file, name)), name
        assert from_lake.source is not None and from_lake.source.backend == "ducklake"
        assert from_file.source is not None and from_file.source.snapshot is None
    counts = query(lake, "SELECT count(*) - count(DISTINCT (symbol, minute)) AS duplicates FROM features")
    assert counts["duplicates"][0] == 0


def test_a_commit_that_loses_a_conflict_is_retried(lake: LakeStore) -> None:
    """Another writer replaces the same slice and commits while our transaction is open: our commit loses
    the conflict and the whole transaction runs again; the slice ends with our rows, once."""
    write_candles(lake, day_candles(), "BTC-USD", *day_bounds(DAY), "first", NOW)
    attempts = []

    def meanwhile_another_writer() -> None:
        attempts.append(1)
        if len(attempts) > 1:
            return
        other = connect_lake(lake)
        try:
            other.execute("BEGIN TRANSACTION")
            other.execute("DELETE FROM candles WHERE symbol = 'BTC-USD'")
            other.register("rows", read_candles(lake, ["BTC-USD"]).with_columns(source=pl.lit("other")))
            other.execute("INSERT INTO candles SELECT * FROM rows")
            other.execute("COMMIT")
        finally:
            other.close()

    write_candle_slices(
        lake, day_candles(), "BTC-USD", [day_bounds(DAY)], "ours", NOW, before_write=meanwhile_another_writer
    )
    assert len(attempts) == 2
    stored = read_candles(lake, ["BTC-USD"])
    assert stored.height == 1440 and unique_keys(stored)
    assert stored["source"].unique().to_list() == ["ours"]


def test_two_writers_filling_the_same_empty_slice_at_once_leave_no_duplicates(lake: LakeStore) -> None:
    """Both delete nothing, so DuckLake sees no conflict and both commit; the writer then finds the duplicate
    minutes and replaces the slice once more."""
    write_candles(
        lake,
        day_candles(day=DAY - timedelta(days=1)),
        "BTC-USD",
        *day_bounds(DAY - timedelta(days=1)),
        "s",
        NOW,
    )
    theirs = day_candles()

    def meanwhile_another_writer() -> None:
        other = connect_lake(lake)
        try:
            rows = theirs.select(
                pl.lit("BTC-USD").alias("symbol"),
                "minute",
                "open",
                "high",
                "low",
                "close",
                "volume",
                pl.lit("other").alias("source"),
                pl.lit(NOW).alias("ingested_at"),
            )
            other.register("rows", rows.to_arrow())
            other.execute("INSERT INTO candles SELECT * FROM rows")
        finally:
            other.close()

    calls = []
    write_candle_slices(
        lake,
        day_candles(),
        "BTC-USD",
        [day_bounds(DAY)],
        "ours",
        NOW,
        before_write=lambda: calls.append(1) or (meanwhile_another_writer() if len(calls) == 1 else None),
    )
    stored = read_candles(lake, ["BTC-USD"], *day_bounds(DAY))
    assert stored.height == 1440 and unique_keys(stored)
    assert stored["source"].unique().to_list() == ["ours"]
    assert len(calls) == 2, "one write and one repair"


def _writer(store_text: str, *args: str) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "trading_assets_tests.store.writer_process",
        "backfill",
        store_text,
        *args,
    ]
    return subprocess.Popen(command)


@pytest.mark.e2e  # two writer processes
def test_two_processes_write_different_slices_into_the_lake_at_once(tmp_path: Path, lake: LakeStore) -> None:
    """Two processes backfill candles then features (batches of days, one transaction each, read back at
    once) of different symbols into the same lake tables at the same time: nothing lost, nothing twice, and
    row for row what the embedded file holds after the same backfill."""
    symbols, days = ["BTC-USD", "ETH-USD"], 10
    text = json.dumps({"catalog": lake.catalog, "data_path": lake.data_path})
    writers = [_writer(text, symbol, DAY.isoformat(), str(days)) for symbol in symbols]
    assert [writer.wait(timeout=600) for writer in writers] == [0, 0]
    embedded = tmp_path / "embedded.duckdb"
    for symbol in symbols:
        assert backfill_and_read_back(embedded, symbol, DAY, days) == []
    for table, order in (("candles", "symbol, minute"), ("features", "symbol, minute")):
        counts = query(
            lake,
            f"SELECT symbol, count(*) AS n, count(DISTINCT minute) AS distinct_minutes FROM {table} GROUP BY symbol ORDER BY symbol",
        )
        assert counts.rows() == [(symbol, days * 1440, days * 1440) for symbol in symbols], table
        lake_rows = without_clock(query(lake, f"SELECT * FROM {table} ORDER BY {order}"))
        file_rows = without_clock(query(embedded, f"SELECT * FROM {table} ORDER BY {order}"))
        assert lake_rows.equals(file_rows), table


@pytest.mark.parametrize("backend", ["duckdb", "ducklake"])
def test_the_training_rows_are_read_again_exactly_or_refused_when_they_changed(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A manifest's `data_snapshot` after newer data was written: the lake reads the same rows from the
    snapshot; the embedded file, which keeps no history, detects the change by the rows' hash."""
    store: Store = tmp_path / "store.duckdb" if backend == "duckdb" else request.getfixturevalue("lake")
    days = [DAY + timedelta(days=offset) for offset in range(3)]
    backfill(store, ["BTC-USD"], days)
    trained = read_feature_matrix(store, "BTC-USD", days[0], days[-1] + timedelta(days=1))
    manifest = {"data_snapshot": data_snapshot(trained), "feature_names": list(trained.names)}
    record = manifest["data_snapshot"]
    assert record["rows"] == 3 * 1440 and record["symbol"] == "BTC-USD" and len(record["sha256"]) == 64
    assert (record["snapshot"] is None) == (backend == "duckdb")
    assert data_snapshot(read_training_rows(store, manifest)) == record  # nothing written since

    # Newer data: a day revised by the exchange (its features recomputed) and a later day.
    ingest_days(SyntheticSource(seed=8), store, "BTC-USD", [days[1]], 0.0, allow_revision=True)
    build_feature_days(store, "BTC-USD", [days[1]], days[0])
    backfill(store, ["BTC-USD"], [days[-1] + timedelta(days=1)])
    now = read_feature_matrix(store, "BTC-USD", days[0], days[-1] + timedelta(days=1))
    assert data_snapshot(now)["sha256"] != record["sha256"]

    if backend == "duckdb":
        with pytest.raises(DataChangedError, match=r"differ from the rows the model was trained on"):
            read_training_rows(store, manifest)
        return
    again = read_training_rows(store, manifest)
    for name in ("x", "minutes", "close", "usable", "observed"):
        assert np.array_equal(getattr(again, name), getattr(trained, name)), name
    assert data_snapshot(again) == record


@pytest.mark.e2e  # two Dagster runs
def test_the_assets_and_their_checks_give_the_same_results_on_the_lake(
    tmp_path: Path, lake: LakeStore, monkeypatch: pytest.MonkeyPatch, dagster_instance: dg.DagsterInstance
) -> None:
    """raw_candles + features for 2 symbols x 2 days through Dagster, once into the embedded file and once
    into the lake chosen by the settings (TA_STORE=ducklake): the same checks pass, the same rows are stored."""
    monkeypatch.setenv("TA_STORE", "ducklake")
    monkeypatch.setenv(LAKE_CATALOG_ENV, lake.catalog)
    monkeypatch.setenv("TA_LAKE_DATA_PATH", lake.data_path)
    settings = load_settings()
    lake_resource = DuckDBStoreResource.from_settings(settings)
    assert lake_resource.lake_catalog == dg.EnvVar(LAKE_CATALOG_ENV)  # Dagster shows the name only
    file_resource = DuckDBStoreResource(path=str(tmp_path / "store.duckdb"))
    symbols, first, last = ("BTC-USD", "ETH-USD"), date(2024, 1, 2), date(2024, 1, 3)
    outcomes = []
    for resource in (file_resource, lake_resource):
        resources = {"market_data": MarketDataResource(source="synthetic"), "store": resource}
        job = dg.Definitions(
            assets=[raw_candles, features], resources=resources
        ).resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(
            instance=dagster_instance, tags=partition_range_tags(first, last, symbols)
        )
        assert result.success
        checks = sorted(
            (e.asset_key.to_user_string(), e.check_name, e.passed, str(e.partition))
            for e in result.get_asset_check_evaluations()
        )
        outcomes.append(checks)
    assert outcomes[0] == outcomes[1]
    stored_rows = [passed for _, check, passed, _ in outcomes[1] if check == "stored_rows"]
    assert len(stored_rows) == 2 * len(symbols) * 2 and all(stored_rows)  # both assets, every partition
    for table in ("candles", "features"):
        rows = [
            without_clock(query(store, f"SELECT * FROM {table} ORDER BY symbol, minute"))
            for store in (tmp_path / "store.duckdb", lake)
        ]
        assert rows[0].height == len(symbols) * 2 * 1440 and rows[0].equals(rows[1]), table


@pytest.mark.e2e  # a training
def test_a_model_trained_on_the_lake_records_its_snapshot_and_the_rows_are_read_again(
    lake: LakeStore, tmp_path: Path
) -> None:
    """`train_symbol` on the lake: the manifest's `data_snapshot` names the snapshot the training read; after
    newer and revised data was written, `read_training_rows` gives exactly the rows trained on."""
    days = [DAY + timedelta(days=offset) for offset in range(4)]
    backfill(lake, ["BTC-USD"], days)
    config = TrainConfig(seq_len=10, max_epochs=2, samples_per_epoch=256, batch_size=64)
    spec = TrainSpec("logistic", "BTC-USD", tmp_path / "models", config, policy=PromotionPolicy(folds=2))
    result = train_symbol(lake, days[0], days[-1], spec)
    record = result.manifest["data_snapshot"]
    assert record["backend"] == "ducklake" and record["rows"] == 4 * 1440
    assert record["snapshot"] == query(lake, "SELECT max(snapshot_id) AS n FROM lake.snapshots()")["n"][0]
    trained_on = read_feature_matrix(lake, "BTC-USD", days[0], days[-1] + timedelta(days=1))

    ingest_days(SyntheticSource(seed=8), lake, "BTC-USD", days[1:2], 0.0, allow_revision=True)
    build_feature_days(lake, "BTC-USD", days[1:2], days[0])
    assert (
        data_snapshot(read_feature_matrix(lake, "BTC-USD", days[0], days[-1] + timedelta(days=1))) != record
    )
    again = read_training_rows(lake, result.manifest)
    assert data_snapshot(again) == record
    assert np.array_equal(again.x, trained_on.x) and np.array_equal(again.minutes, trained_on.minutes)


def test_a_lake_that_cannot_be_reached_is_reported_without_its_password(tmp_path: Path) -> None:
    unreachable = LakeStore(
        "host=127.0.0.1 port=1 user=ta password=hunter2 dbname=ta_lake connect_timeout=2", str(tmp_path)
    )
    with pytest.raises(duckdb.Error, match=r"Unable to connect to Postgres") as refused:
        read_candles(unreachable, ["BTC-USD"])
    shown = [refused.value, refused.value.__cause__, refused.value.__context__]
    assert "hunter2" not in " ".join(str(error) for error in shown if error is not None)
    assert "password=***" in str(refused.value)
