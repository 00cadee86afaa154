"""Dagster's SQLite storage with cheaper event writes: the instance class of dagster_home/dagster.yaml.

Dagster's SQLite event log (1.13) builds a new SQLAlchemy engine for every statement and disposes of it
after (`SqliteEventLogStorage._connect`), and, as no connection stays open, each statement's connection is
the last one to close: SQLite then checkpoints the write-ahead log into the database (two fsyncs) and
deletes it. Storing one asset check evaluation takes three such statements (run shard, index shard, check
execution row) plus a fourth engine to ask whether a table exists. A single-run backfill of 730 days of one
symbol stores ~10,300 events (a materialization and 6 or 4 check evaluations per partition), and the event
log was about half of the run's CPU; with three runs at once, each fsync held the index database's write
lock while the other runs waited (docs/backfill-speed.md).

`EngineCachingSqliteEventLogStorage` is the same storage, same files, tables and statements, except:

- **One engine per shard (database file), kept**, and what `has_table` found, **with a pool of
  connections** (`POOLED_CONNECTIONS` per shard kept open between statements; connections beyond those,
  opened by concurrent threads, are closed after their statement). Dagster's `NullPool` opened, set up and
  closed a SQLite connection for every statement: ~13 CPU-seconds of a 731-day run's ~31,000 statements.
  A pooled connection holds no transaction between statements (SQLAlchemy rolls back on return), so other
  processes read and write the files as before.
- **One idle connection per shard, kept open** (no transaction, no lock): a statement's connection is no
  longer the last, so the log is checkpointed by SQLite's automatic checkpoint (every 1,000 pages) rather
  than after every statement. Readers and writers in other processes are not affected.
- **`PRAGMA synchronous = NORMAL`** on each statement's connection (the databases are in WAL mode already):
  a commit appends to the log without an fsync; checkpoints still fsync. SQLite's documentation: in WAL mode
  NORMAL cannot corrupt the database; a power loss or OS crash (not a killed process) may roll back the
  last transactions, i.e. the newest events of a run in progress, which run monitoring then fails like a
  run whose worker died.

At most `ENGINES_KEPT` shards keep an engine and a connection (the index and the runs most recently
written); the oldest is closed beyond that, all on `dispose()`, run shards on `wipe()`. A forked child
starts with none of its parent's (and never closes them).

`TunedSqliteInstance` is Dagster's instance with this storage as its default (`instance_class` in
dagster.yaml): `config_defaults(base_dir)` is where Dagster gives an instance its directory, so the files
stay in `<DAGSTER_HOME>/history/runs` whoever opens the instance (`dagster dev`, run workers,
`DagsterInstance.from_config`). Every other setting is Dagster's default; `storage:` or
`event_log_storage:` in dagster.yaml (e.g. PostgreSQL) still replace it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
import sqlalchemy as db
import yaml
from sqlalchemy.pool import NullPool, QueuePool
from watchdog.events import FileSystemEvent, PatternMatchingEventHandler
from watchdog.observers import Observer

from trading_assets.defs.dagster_private import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    ConfigurableClassData,
    DagsterSqliteStorage,
    InstanceRef,
    SqliteEventLogStorage,
    SqliteEventLogStorageWatchdog,
)
from trading_assets.defs.event_log import PlannedChecksSerializedOnce

#: Shards (database files) whose engine a process keeps: the index plus the runs written most recently.
ENGINES_KEPT = 32
#: SQLite connections per shard that a process keeps open between statements (more threads open more, closed
#: after use).
POOLED_CONNECTIONS = 2
#: Dagster's name for the shard (database file) of its cross-run index.
INDEX_SHARD = "index"

_MODULE = __name__
#: Connections a forked child inherited: kept referenced, so the child never closes its parent's.
_INHERITED: list[object] = []


class EngineCachingSqliteEventLogStorage(PlannedChecksSerializedOnce, SqliteEventLogStorage):
    """Dagster's SQLite event log with an engine and an idle connection kept per shard,
    `synchronous = NORMAL` (module docstring) and planned check rows serialized once (defs/event_log.py)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, db.engine.Engine] = OrderedDict()
        self._held: dict[str, sqlite3.Connection] = {}
        self._tables: set[str] = set()
        self._pid = os.getpid()
        # Guards the two caches; never waits for Dagster's _db_lock (has_table runs while it is held).
        self._cache_lock = threading.RLock()
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> EngineCachingSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[db.engine.Connection]:
        # Dagster's _connect, with the shard's engine and idle connection kept instead of made each time.
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                # with Dagster's NullPool engine: its switch to WAL mode fails while a pooled connection is open
                initializing = db.create_engine(
                    self.conn_string_for_shard(shard),
                    poolclass=NullPool,
                    connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
                )
                self._initdb(initializing)
                initializing.dispose()
                self._initialized_dbs.add(shard)
            self._hold(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        # Asked on every asset event (Dagster makes an engine for it each time); a table, once there, stays.
        if table_name in self._tables:
            return True
        engine = self._engine(INDEX_SHARD)
        with engine.connect() as conn:
            found = bool(engine.dialect.has_table(conn, table_name))
        if found:
            self._tables.add(table_name)
        return found

    def watch(self, run_id: str, cursor: str | None, callback: Any) -> None:
        # Dagster's watcher reacts to changes of <run>.db; with a connection kept open a commit changes only
        # <run>.db-wal until a checkpoint, so the UI's live run log would stall: watch both files.
        if not self._obs:
            self._obs = Observer()
            self._obs.start()
        watchdog = _RunLogWatchdog(self, run_id, callback, cursor)
        self._watchers[run_id][callback] = (
            watchdog,
            self._obs.schedule(watchdog, self._base_dir, recursive=True),
        )

    def wipe(self) -> None:
        with self._cache_lock:
            for shard in [shard for shard in self._engines if shard != INDEX_SHARD]:
                self._drop(shard)
        super().wipe()

    def dispose(self) -> None:
        with self._cache_lock:
            self._forget_if_forked()
            for shard in list(self._engines):
                self._drop(shard)
        super().dispose()

    def _engine(self, shard: str) -> db.engine.Engine:
        with self._cache_lock:
            self._forget_if_forked()
            engine = self._engines.get(shard)
            if engine is not None:
                self._engines.move_to_end(shard)
                return engine
            engine = db.create_engine(
                self.conn_string_for_shard(shard),
                poolclass=QueuePool,
                pool_size=POOLED_CONNECTIONS,
                max_overflow=-1,  # no limit, as NullPool had: a thread never waits for a connection
                # pooled connections move between threads; Dagster serializes their statements (_db_lock)
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            db.event.listen(engine, "connect", _synchronous_normal)
            self._engines[shard] = engine
            while len(self._engines) > ENGINES_KEPT:
                self._drop(next(name for name in self._engines if name != INDEX_SHARD))
            return engine

    def _hold(self, shard: str) -> None:
        """Keep an idle connection to the (initialized, WAL-mode) shard open: then a statement's connection
        is never the last one to close, which would checkpoint the log into the database (two fsyncs) and
        delete it. It holds no lock and no transaction; SQLite checkpoints every 1,000 pages instead."""
        with self._cache_lock:
            if shard in self._held or shard not in self._engines:
                return
            try:
                connection = sqlite3.connect(self.path_for_shard(shard), check_same_thread=False)
                connection.execute("PRAGMA schema_version").fetchall()  # opens the WAL index, then ends
            except sqlite3.Error:
                return  # only an optimisation: the statement goes on without it
            self._held[shard] = connection

    def _drop(self, shard: str) -> None:
        self._engines.pop(shard).dispose()
        held = self._held.pop(shard, None)
        if held is not None:
            held.close()

    def _forget_if_forked(self) -> None:
        """In a forked child: start with no engines or connections, never closing the parent's."""
        if self._pid != os.getpid():
            _INHERITED.extend([*self._held.values(), *self._engines.values()])
            self._engines, self._held, self._pid = OrderedDict(), {}, os.getpid()


class _RunLogWatchdog(SqliteEventLogStorageWatchdog):
    """Dagster's watcher of a run's event log, also woken by a commit to the run file's write-ahead log."""

    def __init__(
        self, storage: EngineCachingSqliteEventLogStorage, run_id: str, callback: Any, cursor: str | None
    ) -> None:
        super().__init__(storage, run_id, callback, cursor)
        PatternMatchingEventHandler.__init__(self, patterns=[self._log_path, f"{self._log_path}-wal"])

    def on_modified(self, event: FileSystemEvent) -> None:
        self._process_log()


def _synchronous_normal(connection: sqlite3.Connection, _record: object) -> None:
    connection.execute("PRAGMA synchronous = NORMAL")


class EngineCachingSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage (runs, event log, schedules under one directory) with the event log above."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(base_dir, inst_data)
        self._event_log_storage.dispose()
        self._event_log_storage = EngineCachingSqliteEventLogStorage(_event_logs_directory(base_dir))

    @classmethod
    def from_config_value(  # ty: ignore[invalid-method-override]
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> EngineCachingSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)

    @property
    def event_storage_data(self) -> ConfigurableClassData | None:
        return _class_data(EngineCachingSqliteEventLogStorage, _event_logs_directory(self.base_dir))


class TunedSqliteInstance(dg.DagsterInstance):
    """Dagster's instance whose default storage is `EngineCachingSqliteStorage` (module docstring)."""

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        return {}

    @staticmethod
    def config_defaults(base_dir: str) -> Mapping[str, ConfigurableClassData | None]:
        return {
            **InstanceRef.config_defaults(base_dir),
            "storage": _class_data(EngineCachingSqliteStorage, base_dir),
            "event_log_storage": _class_data(
                EngineCachingSqliteEventLogStorage, _event_logs_directory(base_dir)
            ),
        }


def _event_logs_directory(base_dir: str) -> str:
    """Where Dagster's SQLite storage keeps the event logs under an instance directory."""
    return os.path.join(base_dir, "history", "runs", "")


def _class_data(cls: type, base_dir: str) -> ConfigurableClassData:
    return ConfigurableClassData(_MODULE, cls.__name__, yaml.dump({"base_dir": base_dir}))
