"""Dagster's PostgreSQL event log, holding its connections (deploy/scale-out/dagster.yaml names it).

dagster-postgres (0.29.27) opens a new database connection for every statement of its event log
(SQLAlchemy's NullPool, so that no process keeps idle connections): storing one event takes about three
(the insert, the table checks, the asset and check indexes). A backfill step of one symbol and 30 days
stores ~450 events (a materialization and 6 or 4 check evaluations per partition), so ~1,300 connections,
each a PostgreSQL backend started and a SCRAM authentication; measured on the 2-core machine of
docs/scale-out.md that was 40 % of the step's time, on the worker and on the database server alike.

`PooledPostgresEventLogStorage` is the same storage with its engine made the way dagster-postgres makes it
for the webserver (`optimize_for_webserver`: one pooled connection plus up to `MAX_OVERFLOW` more for
concurrent threads, recycled after `POOL_RECYCLE_S`, no statement timeout). A process holds its
connections while its instance is open and closes them when it is disposed (a Dask worker opens the run's
instance per step). Same configuration (`postgres_db` or `postgres_url`) and tables as dagster-postgres'.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

from trading_assets.defs.event_log import PlannedChecksSerializedOnce

#: Connections beyond the pooled one that concurrent threads of one process may open (then closed).
MAX_OVERFLOW = 10
#: A pooled connection older than this is replaced (servers and proxies close idle connections).
POOL_RECYCLE_S = 3600


class PooledPostgresEventLogStorage(PlannedChecksSerializedOnce, PostgresEventLogStorage):
    """dagster-postgres' event log storage with a connection pool (module docstring) and planned check rows
    serialized once (defs/event_log.py)."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,
    ) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        self.optimize_for_webserver(
            statement_timeout=0, pool_recycle=POOL_RECYCLE_S, max_overflow=MAX_OVERFLOW
        )

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledPostgresEventLogStorage:
        return cls(
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            inst_data=inst_data,
            token_provider=get_token_provider_from_config(config_value),
        )

    def dispose(self) -> None:
        super().dispose()
        self._engine.dispose()
