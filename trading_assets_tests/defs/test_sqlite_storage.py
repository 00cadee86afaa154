"""The shipped instance's SQLite event log (trading_assets/defs/sqlite_storage.py): Dagster's files and
results, with engines and an idle connection kept per database file and commits without an fsync."""

import shutil
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as db

from trading_assets.defs import sqlite_storage
from trading_assets.defs.dagster_private import AssetCheckExecutionsTable, SqliteEventLogStorage
from trading_assets.defs.sqlite_storage import (
    EngineCachingSqliteEventLogStorage,
    TunedSqliteInstance,
)

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = dg.StaticPartitionsDefinition(["a", "b", "c"])


@dg.multi_asset(
    specs=[dg.AssetSpec("numbers", partitions_def=PARTITIONS)],
    check_specs=[dg.AssetCheckSpec("positive", asset="numbers", partitions_def=PARTITIONS)],
    partitions_def=PARTITIONS,
    can_subset=True,  # the check results are per-partition evaluations, as raw_candles and features do
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def numbers(context: dg.AssetExecutionContext):
    for key in context.partition_keys:
        context.add_asset_metadata({"value": len(key)}, partition_key=key)
    yield dg.MaterializeResult(asset_key="numbers")
    for key in context.partition_keys:
        yield dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey("numbers"), check_name="positive", passed=True, partition=key
        )


def _home(path: Path, shipped: bool = True) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if shipped:
        shutil.copy(ROOT / "dagster_home" / "dagster.yaml", path / "dagster.yaml")
    else:
        (path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return path


def _materialize_all(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    tags = {"dagster/asset_partition_range_start": "a", "dagster/asset_partition_range_end": "c"}
    result = dg.materialize([numbers], instance=instance, tags=tags)
    assert result.success
    return result


def _stored(instance: dg.DagsterInstance) -> tuple[dict[str, int], dict[str, str]]:
    records = instance.fetch_materializations(dg.AssetKey("numbers"), limit=10).records
    values = {r.partition_key: r.asset_materialization.metadata["value"].value for r in records}
    check_key = dg.AssetCheckKey(dg.AssetKey("numbers"), "positive")
    executions = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=10)
    return values, {e.partition: e.status.value for e in executions}


def test_the_shipped_instance_keeps_dagsters_layout_with_the_tuned_event_log(tmp_path: Path) -> None:
    home = _home(tmp_path / "home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance, TunedSqliteInstance)
        storage = instance.event_log_storage
        assert isinstance(storage, EngineCachingSqliteEventLogStorage)
        assert Path(storage._base_dir) == home / "history" / "runs"
        assert instance.run_monitoring_enabled and instance.run_retries_max_retries == 1
    # the run workers and step processes rebuild it from the instance's ref
    with dg.DagsterInstance.from_ref(instance.get_ref()) as rebuilt:
        assert isinstance(rebuilt.event_log_storage, EngineCachingSqliteEventLogStorage)


def test_per_partition_history_is_the_same_and_readable_by_dagsters_own_storage(tmp_path: Path) -> None:
    home = _home(tmp_path / "home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        _materialize_all(instance)
        tuned = _stored(instance)
    assert tuned == ({"a": 1, "b": 1, "c": 1}, {"a": "SUCCEEDED", "b": "SUCCEEDED", "c": "SUCCEEDED"})
    # the same files opened by Dagster's default SQLite storage (e.g. after dagster.yaml drops the class)
    with dg.DagsterInstance.from_config(str(_home(home, shipped=False))) as plain:
        assert type(plain.event_log_storage).__name__ == "SqliteEventLogStorage"
        assert _stored(plain) == tuned
        _materialize_all(plain)  # and Dagster writes on where the tuned storage left off
        assert len(plain.fetch_materializations(dg.AssetKey("numbers"), limit=10).records) == 6


def test_engines_and_idle_connections_are_kept_per_file_bounded_and_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_storage, "ENGINES_KEPT", 3)
    storage = EngineCachingSqliteEventLogStorage(str(tmp_path / "runs"))
    with dg.DagsterInstance.from_config(str(_home(tmp_path / "home"))) as instance:
        storage.register_instance(instance)
    for run in range(4):
        with storage.run_connection(f"run{run}") as connection:
            # each statement's connection commits without an fsync (1 = NORMAL) in WAL mode
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert list(storage._engines) == ["index", "run2", "run3"]  # the oldest run dropped, never the index
    # the statement's connection went back to its shard's pool, open for the next statement
    assert storage._engines["run3"].pool.checkedin() == 1
    held = dict(storage._held)
    assert set(held) == {"index", "run2", "run3"}
    # an idle connection keeps the log open between statements: no checkpoint-and-delete after each
    assert (tmp_path / "runs" / "run3.db-wal").exists()
    storage.dispose()
    assert not storage._engines and not storage._held
    with pytest.raises(Exception, match="closed"):
        held["run3"].execute("SELECT 1")


def test_wipe_closes_the_run_files_first(tmp_path: Path) -> None:
    home = _home(tmp_path / "home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = _materialize_all(instance)
        storage = instance.event_log_storage
        assert result.run_id in storage._held
        instance.wipe()
        assert set(storage._held) <= {"index"}
        assert not list((home / "history" / "runs").glob(f"{result.run_id}.db*"))
        _materialize_all(instance)
        assert len(instance.fetch_materializations(dg.AssetKey("numbers"), limit=10).records) == 3


def _planned_rows(storage: SqliteEventLogStorage, event: dg.EventLogEntry) -> list[tuple]:
    storage.store_event(event)
    with storage.index_connection() as conn:
        rows = conn.execute(
            db.select(
                AssetCheckExecutionsTable.c.asset_key,
                AssetCheckExecutionsTable.c.check_name,
                AssetCheckExecutionsTable.c.partition,
                AssetCheckExecutionsTable.c.run_id,
                AssetCheckExecutionsTable.c.execution_status,
                AssetCheckExecutionsTable.c.evaluation_event,
            ).order_by(AssetCheckExecutionsTable.c.partition)
        ).fetchall()
    return [tuple(row) for row in rows]


def test_planned_check_rows_equal_dagsters_with_the_event_serialized_once(tmp_path: Path) -> None:
    with dg.DagsterInstance.from_config(str(_home(tmp_path / "home"))) as instance:
        run_id = _materialize_all(instance).run_id
        planned = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
        ).records
    [event] = [record.event_log_entry for record in planned]
    ours = _planned_rows(EngineCachingSqliteEventLogStorage(str(tmp_path / "ours")), event)
    dagsters = _planned_rows(SqliteEventLogStorage(str(tmp_path / "dagsters")), event)
    assert [row[2] for row in ours] == ["a", "b", "c"]
    assert ours == dagsters  # same rows, same serialized event in each


def _log_entry(run_id: str, message: str) -> dg.EventLogEntry:
    return dg.EventLogEntry(
        error_info=None, level="INFO", user_message=message, run_id=run_id, timestamp=time.time()
    )


def test_a_watched_run_log_streams_while_the_writer_keeps_its_connection(tmp_path: Path) -> None:
    # the UI's live run log: the webserver watches the run's file while a run worker writes it
    with dg.DagsterInstance.from_config(str(_home(tmp_path / "home"))) as instance:
        writer = EngineCachingSqliteEventLogStorage(str(tmp_path / "runs"))
        reader = EngineCachingSqliteEventLogStorage(str(tmp_path / "runs"))
        for storage in (writer, reader):
            storage.register_instance(instance)
        writer.store_event(_log_entry("run1", "first"))
        assert "run1" in writer._held  # the writer's idle connection: commits stay in the write-ahead log
        received: list[str] = []
        reader.watch("run1", None, lambda entry, _cursor: received.append(entry.user_message))
        writer.store_event(_log_entry("run1", "second"))
        deadline = time.monotonic() + 15
        while "second" not in received and time.monotonic() < deadline:
            time.sleep(0.1)
        reader.dispose()
        writer.dispose()
    assert "second" in received
