"""Production storage: an instance built from deploy/postgres/dagster.yaml keeps runs, events and schedule
ticks in a real PostgreSQL server (started by the test on 127.0.0.1), readable by any other instance."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import yaml
from dagster._core.scheduler.instigation import InstigatorType, TickData, TickStatus

from trading_assets.defs.partitions import partition_range_tags
from trading_assets.defs.resources import DuckDBStoreResource, MarketDataResource
from trading_assets.store.duckdb_store import read_candles
from trading_assets_tests.defs.code_location import features, raw_candles
from trading_assets_tests.servers.postgres import PostgresServer, postgres_server

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "postgres" / "dagster.yaml"
SHIPPED = ROOT / "dagster_home" / "dagster.yaml"
SYMBOLS = ("BTC-USD", "ETH-USD")
FIRST, LAST = date(2024, 1, 2), date(2024, 1, 3)
PARTITIONS = {f"{day}|{symbol}" for day in (FIRST, LAST) for symbol in SYMBOLS}
CANDLE_CHECKS = {"coverage", "ohlc_consistency", "no_duplicate_minutes", "stored_rows"}
TICK_ORIGIN, TICK_SELECTOR = "ta-postgres-test-origin", "ta-postgres-test-selector"
POSTGRES_CLASSES = ("PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage")


def storage_classes(instance: dg.DagsterInstance) -> tuple[str, str, str]:
    return (
        type(instance.run_storage).__name__,
        type(instance.event_log_storage).__name__,
        type(instance.schedule_storage).__name__,
    )


def instance_from(template: Path, home: Path) -> dg.DagsterInstance:
    """What an operator does: copy the template into DAGSTER_HOME as dagster.yaml and load the instance."""
    home.mkdir(parents=True)
    shutil.copy(template, home / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(home))


@dataclass(frozen=True)
class Written:
    server: PostgresServer
    run_id: str
    db_path: Path
    homes: tuple[Path, ...]


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with postgres_server(db_name="dagster_ta") as running:
        yield running


@pytest.fixture(scope="module")
def pg_env(server: PostgresServer) -> Iterator[PostgresServer]:
    """The template's TA_PG_* variables, pointing at the test server."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in server.env().items():
            patch.setenv(name, value)
        yield server


@pytest.fixture(scope="module")
def written(pg_env: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Written:
    """One run materializing raw_candles + features for 2 symbols x 2 days, plus one sensor tick."""
    base = tmp_path_factory.mktemp("postgres_storage")
    db_path = base / "store.duckdb"
    resources = {
        "market_data": MarketDataResource(source="synthetic", synthetic_predictability=0.4),
        "store": DuckDBStoreResource(path=str(db_path)),
    }
    job = dg.Definitions(
        assets=[raw_candles, features], resources=resources
    ).resolve_implicit_global_asset_job_def()
    with instance_from(TEMPLATE, base / "writer_home") as instance:
        assert storage_classes(instance) == POSTGRES_CLASSES
        result = job.execute_in_process(instance=instance, tags=partition_range_tags(FIRST, LAST, SYMBOLS))
        assert result.success
        instance.create_tick(
            TickData(
                instigator_origin_id=TICK_ORIGIN,
                instigator_name="ta_postgres_test_sensor",
                instigator_type=InstigatorType.SENSOR,
                status=TickStatus.SKIPPED,
                timestamp=time.time(),
                selector_id=TICK_SELECTOR,
                skip_reason="written by test_postgres_storage",
            )
        )
        run_id = result.run_id
    return Written(pg_env, run_id, db_path, (base / "writer_home",))


@pytest.fixture
def reader(pg_env: PostgresServer, tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A fresh instance object with its own, empty DAGSTER_HOME, on the same database."""
    with instance_from(TEMPLATE, tmp_path / "reader_home") as instance:
        yield instance


def test_the_template_reads_every_connection_setting_from_the_environment() -> None:
    config = yaml.safe_load(TEMPLATE.read_text())
    database = config["storage"]["postgres"]["postgres_db"]
    assert database == {
        "hostname": {"env": "TA_PG_HOST"},
        "port": {"env": "TA_PG_PORT"},
        "username": {"env": "TA_PG_USER"},
        "password": {"env": "TA_PG_PASSWORD"},
        "db_name": {"env": "TA_PG_DB"},
        "scheme": "postgresql+psycopg2",  # SQLAlchemy 2.1's bare postgresql:// means psycopg 3
    }
    shipped = yaml.safe_load(SHIPPED.read_text())
    # The same settings but the storage; the shipped instance class only tunes the SQLite event log.
    assert {k: v for k, v in config.items() if k != "storage"} == {
        k: v for k, v in shipped.items() if k != "instance_class"
    }


def test_a_missing_variable_stops_the_instance_from_loading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("TA_PG_HOST", "TA_PG_PORT", "TA_PG_USER", "TA_PG_DB"):
        monkeypatch.setenv(name, "5432" if name == "TA_PG_PORT" else "unused")
    monkeypatch.delenv("TA_PG_PASSWORD", raising=False)
    with pytest.raises(dg.DagsterInvalidConfigError, match="TA_PG_PASSWORD"):
        instance_from(TEMPLATE, tmp_path / "home")


def test_the_shipped_instance_stays_on_sqlite(tmp_path: Path) -> None:
    shipped = yaml.safe_load(SHIPPED.read_text())
    assert not {"storage", "run_storage", "event_log_storage", "schedule_storage"} & set(shipped)
    with instance_from(SHIPPED, tmp_path / "home") as instance:
        run_storage, event_storage, schedule_storage = storage_classes(instance)
    assert run_storage == "SqliteRunStorage"
    # Dagster's run-sharded SQLite event log (one file per run) with engines kept (defs/sqlite_storage.py)
    assert event_storage == "EngineCachingSqliteEventLogStorage"
    assert schedule_storage == "SqliteScheduleStorage"


@pytest.mark.e2e  # starts PostgreSQL
def test_a_fresh_instance_reads_the_run_back(written: Written, reader: dg.DagsterInstance) -> None:
    assert storage_classes(reader) == POSTGRES_CLASSES
    [record] = reader.get_run_records()
    assert record.dagster_run.run_id == written.run_id
    assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
    assert record.dagster_run.tags["dagster/asset_partition_range_start"] == "2024-01-02|BTC-USD"
    assert record.end_time is not None and record.end_time >= record.start_time


@pytest.mark.e2e  # starts PostgreSQL
@pytest.mark.parametrize("asset", ["raw_candles", "features"])
def test_a_fresh_instance_reads_each_partition_materialization_back(
    written: Written, reader: dg.DagsterInstance, asset: str
) -> None:
    key = dg.AssetKey(asset)
    records = reader.fetch_materializations(key, limit=100).records
    by_partition = {r.partition_key: r for r in records}
    assert len(records) == len(PARTITIONS) and set(by_partition) == PARTITIONS
    assert {r.run_id for r in records} == {written.run_id}
    for record in records:
        metadata = record.asset_materialization.metadata
        assert metadata["rows"].value == 1440, (asset, record.partition_key)
    assert reader.get_materialized_partitions(key) == PARTITIONS
    stored = read_candles(written.db_path, SYMBOLS)
    assert stored.height == len(PARTITIONS) * 1440  # the data itself stays in DuckDB


@pytest.mark.e2e  # starts PostgreSQL
@pytest.mark.parametrize("check", sorted(CANDLE_CHECKS))
def test_a_fresh_instance_reads_each_partition_check_back(
    written: Written, reader: dg.DagsterInstance, check: str
) -> None:
    check_key = dg.AssetCheckKey(dg.AssetKey("raw_candles"), check)
    history = reader.event_log_storage.get_asset_check_execution_history(check_key, limit=100)
    assert len(history) == len(PARTITIONS)  # one execution record per partition, none left planned
    assert {r.status.value for r in history} == {"SUCCEEDED"}
    assert {r.run_id for r in history} == {written.run_id}
    evaluations = {r.partition: r.event.asset_check_evaluation for r in history if r.event is not None}
    assert set(evaluations) == PARTITIONS
    assert all(e is not None and e.passed and e.check_name == check for e in evaluations.values())
    if check == "coverage":
        minimum = [e.metadata["min_coverage"].value for e in evaluations.values() if e is not None]
        assert minimum == pytest.approx([0.95] * len(PARTITIONS))


@pytest.mark.e2e  # starts PostgreSQL
def test_a_fresh_instance_reads_the_schedule_storage_back(
    written: Written, reader: dg.DagsterInstance
) -> None:
    [tick] = reader.get_ticks(TICK_ORIGIN, TICK_SELECTOR)
    assert tick.status == TickStatus.SKIPPED and tick.skip_reason == "written by test_postgres_storage"


@pytest.mark.e2e  # starts PostgreSQL
def test_the_records_live_in_postgres_not_in_dagster_home(written: Written) -> None:
    server = written.server
    with psycopg2.connect(server.dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT status FROM runs WHERE run_id = %s", (written.run_id,))
        assert cursor.fetchall() == [("SUCCESS",)]
        cursor.execute(
            "SELECT count(*) FROM event_logs"
            " WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            (written.run_id,),
        )
        assert cursor.fetchone() == (2 * len(PARTITIONS),)
        cursor.execute("SELECT count(*) FROM job_ticks WHERE selector_id = %s", (TICK_SELECTOR,))
        assert cursor.fetchone() == (1,)
    connection.close()
    for home in written.homes:
        assert not [p for p in home.rglob("*") if p.suffix in {".db", ".sqlite"}], home


@pytest.mark.e2e  # starts PostgreSQL
def test_the_server_helper_stops_its_server_also_when_the_block_fails() -> None:
    with pytest.raises(RuntimeError, match="boom"), postgres_server() as running:
        pid = int((running.base_dir / "data" / "postmaster.pid").read_text().split()[0])
        port, base_dir = running.port, running.base_dir
        raise RuntimeError("boom")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    assert not base_dir.exists()
