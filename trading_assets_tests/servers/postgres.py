"""A throwaway PostgreSQL server for tests: the benchmark harness's server
(trading_assets_bench/harness/postgres.py: Debian's binaries, a temp data dir, 127.0.0.1, a free port), with
the tests' rule for missing binaries.

Usage::

    with postgres_server() as server:
        psycopg2.connect(server.dsn)

Missing binaries skip the test with a message, unless ``TA_REQUIRE_SERVERS=1`` (CI) turns the skip into
a failure saying what to install.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from trading_assets_bench.harness import postgres as harness
from trading_assets_bench.harness.postgres import (
    BIN_GLOB,
    INSTALL_HINT,
    PostgresServer,
    PostgresUnavailableError,
    create_database,
    find_bin_dir,
    free_port,
)

__all__ = [
    "BIN_GLOB",
    "INSTALL_HINT",
    "REQUIRE_ENV",
    "PostgresServer",
    "PostgresUnavailableError",
    "create_database",
    "find_bin_dir",
    "free_port",
    "postgres_server",
    "require_bin_dir",
]

REQUIRE_ENV = "TA_REQUIRE_SERVERS"


def require_bin_dir() -> Path:
    """find_bin_dir(), or skip the test (fail it when TA_REQUIRE_SERVERS=1) when PostgreSQL is absent."""
    bin_dir = find_bin_dir()
    if bin_dir is not None:
        return bin_dir
    message = harness.missing_binaries_message()
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message} ({REQUIRE_ENV}=1 requires real servers)", pytrace=False)
    pytest.skip(message)


@contextmanager
def postgres_server(db_name: str = "dagster", user: str = "ta_test") -> Iterator[PostgresServer]:
    """Start a fresh PostgreSQL server on 127.0.0.1 with database `db_name`; stop and delete it on exit
    (`trading_assets_bench.harness.postgres.postgres_server`); skip the test without the binaries."""
    require_bin_dir()
    with harness.postgres_server(db_name=db_name, user=user) as server:
        yield server
