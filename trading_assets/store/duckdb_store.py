"""DuckDB storage: tables keyed by (symbol, minute), atomic slice replacement, Arrow/polars reads.

DuckDB lets one process at a time open a file for writing (and a read-only open fails while a writer
holds it). Every operation here therefore opens a connection, does its work and closes at once, and
the *whole* operation (connect, transaction, commit) is retried with exponential backoff and jitter when
another process holds the lock. A slice write is one transaction: DELETE the (symbol, [start, end))
slice (or several slices of one symbol, e.g. a batch of days), INSERT the new rows, COMMIT. A failure or
a killed process leaves the previous slices intact, and a rerun replaces them with the same rows (no
duplicates). Candle slices never shrink silently: a write with fewer rows for a slice than it holds is
refused inside the transaction (`ShrinkRefusedError`) unless the caller passes `allow_shrink=True`. A
caller can also hand a `guard` that sees the slices' stored rows inside the same transaction, before the
DELETE, and refuses the write by raising (the candle ingest compares the stored minutes with the new ones
there, so no other writer can slip in between the comparison and the replacement), and a `before_write`
that is called last before the DELETE (the Dagster shell checks there that its run is still alive, so a
step of a dead or failed run writes nothing).

Table and column names come from this package's code, never from users; values are SQL parameters.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import duckdb
import polars as pl
import pyarrow as pa

T = TypeVar("T")

#: Sees the stored rows of the slices about to be replaced (inside the write transaction); raises to
#: refuse the write.
StoredRowsGuard = Callable[[pl.DataFrame], None]
#: Called right before a write (inside its transaction); raises to stop it, and nothing is written.
BeforeWrite = Callable[[], None]

CANDLES_TABLE = "candles"
CANDLES_DDL = """
CREATE TABLE IF NOT EXISTS candles (
    symbol VARCHAR NOT NULL,
    minute TIMESTAMPTZ NOT NULL,
    open DOUBLE NOT NULL,
    high DOUBLE NOT NULL,
    low DOUBLE NOT NULL,
    close DOUBLE NOT NULL,
    volume DOUBLE NOT NULL,
    source VARCHAR NOT NULL,
    ingested_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (symbol, minute)
)
"""

#: Total time one operation keeps retrying a held lock before giving up.
DEFAULT_LOCK_TIMEOUT_S = 120.0


class StoreMissingError(FileNotFoundError, LookupError):
    """The DuckDB file (or a table in it) does not exist yet."""


class StoreLockTimeout(TimeoutError):
    """Another process held the DuckDB file for longer than the retry budget."""


class ShrinkRefusedError(ValueError):
    """A write would leave fewer rows in a stored slice than it holds: nothing was written."""


def is_lock_conflict(error: BaseException) -> bool:
    text = str(error)
    return "Could not set lock" in text or "Conflicting lock" in text


def with_lock_retry(path: Path, operation: Callable[[], T], timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> T:
    """Run `operation` (which opens and closes its own connection), retrying lock conflicts."""
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        try:
            return operation()
        except (duckdb.IOException, duckdb.ConnectionException) as error:
            if not is_lock_conflict(error):
                raise
            if time.monotonic() >= deadline:
                raise StoreLockTimeout(
                    f"DuckDB file {path} stayed locked by another process for {timeout_s:.0f} s"
                ) from error
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.25)


@contextlib.contextmanager
def _connect(path: Path, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    connection = duckdb.connect(str(path), read_only=read_only)
    connection.execute("SET enable_progress_bar = false")  # not on stderr: a training's log is its own
    try:
        yield connection
    finally:
        connection.close()


def run_write(path: Path, work: Callable[[duckdb.DuckDBPyConnection], T], ddl: Sequence[str] = ()) -> T:
    """Run `work` in one transaction on a short-lived read-write connection, retried on lock conflicts."""

    def operation() -> T:
        with _connect(path, read_only=False) as connection:
            for statement in ddl:
                connection.execute(statement)
            connection.execute("BEGIN TRANSACTION")
            try:
                result = work(connection)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            return result

    return with_lock_retry(path, operation)


def run_read(path: Path, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """Run `work` on a short-lived read-only connection, retried on lock conflicts.

    `work` must copy what it needs (Arrow/polars) before returning: the connection closes after.
    """
    if not path.exists():
        raise StoreMissingError(f"DuckDB store {path} does not exist yet: no candles have been stored")

    def operation() -> T:
        with _connect(path, read_only=True) as connection:
            return work(connection)

    return with_lock_retry(path, operation)


def table_exists(connection: duckdb.DuckDBPyConnection, table: str) -> bool:
    rows = connection.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
    ).fetchall()
    return rows[0][0] > 0


def replace_slice(
    path: Path,
    table: str,
    rows: pl.DataFrame | pa.Table,
    symbol: str,
    start: datetime,
    end: datetime,
    ddl: Sequence[str] = (),
) -> int:
    """Replace exactly the rows of `symbol` with `start <= minute < end` by `rows`, atomically.

    Every row must belong to that slice (checked before anything is written). Returns the rows written.
    """
    return replace_slices(path, table, rows, symbol, [(start, end)], ddl)


def replace_slices(
    path: Path,
    table: str,
    rows: pl.DataFrame | pa.Table,
    symbol: str,
    slices: Sequence[tuple[datetime, datetime]],
    ddl: Sequence[str] = (),
    allow_shrink: bool = True,
    guard: StoredRowsGuard | None = None,
    before_write: BeforeWrite | None = None,
) -> int:
    """Replace the rows of `symbol` in each [start, end) of `slices` by `rows`, all in one transaction.

    Every row must fall in one of the slices (checked before anything is written). Many partitions in one
    connection and transaction cost one connect instead of one each. With `allow_shrink=False` a slice
    that would end with fewer rows than it holds raises `ShrinkRefusedError` and nothing is written.
    `guard`, when given, is called with the slices' stored rows (all columns, sorted by minute; none when
    the table does not exist yet) after the shrink check and before the DELETE; whatever it or
    `before_write` (called after it) raises rolls the transaction back. Returns the rows written.
    """
    arrow_rows = rows.to_arrow() if isinstance(rows, pl.DataFrame) else rows
    incoming = pl.from_arrow(arrow_rows)
    _check_rows_in_slices(incoming, table, symbol, slices)

    def work(connection: duckdb.DuckDBPyConnection) -> int:
        if not allow_shrink:
            _refuse_shrink(connection, table, symbol, slices, incoming)
        if guard is not None and table_exists(connection, table):
            guard(_stored_slices(connection, table, symbol, slices))
        if before_write is not None:
            before_write()
        connection.executemany(
            f'DELETE FROM "{table}" WHERE symbol = ? AND minute >= ? AND minute < ?',
            [[symbol, start, end] for start, end in slices],
        )
        if arrow_rows.num_rows:
            connection.register("incoming_rows", arrow_rows)
            columns = ", ".join(f'"{name}"' for name in arrow_rows.column_names)
            connection.execute(f'INSERT INTO "{table}" ({columns}) SELECT {columns} FROM incoming_rows')
            connection.unregister("incoming_rows")
        return arrow_rows.num_rows

    return run_write(path, work, ddl)


def _refuse_shrink(
    connection: duckdb.DuckDBPyConnection,
    table: str,
    symbol: str,
    slices: Sequence[tuple[datetime, datetime]],
    incoming: pl.DataFrame,
) -> None:
    """Raise `ShrinkRefusedError` naming every slice whose incoming rows are fewer than its stored rows."""
    if not table_exists(connection, table):
        return
    shrinking = []
    for start, end in slices:
        [(stored,)] = connection.execute(
            f'SELECT count(*) FROM "{table}" WHERE symbol = ? AND minute >= ? AND minute < ?',
            [symbol, start, end],
        ).fetchall()
        fetched = incoming.filter(pl.col("minute").is_between(start, end, closed="left")).height
        if fetched < stored:
            shrinking.append(f"{_slice_name(start, end)} {stored} rows stored, {fetched} fetched")
    if shrinking:
        raise ShrinkRefusedError(
            f"refusing to shrink {table} of {symbol}: {'; '.join(shrinking)}; stored rows kept "
            "(run config allow_shrink: true permits a shrinking rewrite)"
        )


def _stored_slices(
    connection: duckdb.DuckDBPyConnection,
    table: str,
    symbol: str,
    slices: Sequence[tuple[datetime, datetime]],
) -> pl.DataFrame:
    """The stored rows of `symbol` in `slices`, read completely (Arrow) before anything else runs."""
    within = " OR ".join("(minute >= ? AND minute < ?)" for _ in slices) or "FALSE"
    parameters: list[object] = [symbol, *[bound for pair in slices for bound in pair]]
    return relation_to_polars(
        connection.sql(
            f'SELECT * FROM "{table}" WHERE symbol = ? AND ({within}) ORDER BY minute', params=parameters
        )
    )


def _slice_name(start: datetime, end: datetime) -> str:
    """A UTC day as its date, any other slice as [start, end)."""
    if end - start == timedelta(days=1) and start.astimezone(UTC).time() == datetime.min.time():
        return start.astimezone(UTC).date().isoformat()
    return f"[{start.isoformat()}, {end.isoformat()})"


def _check_rows_in_slices(
    frame: pl.DataFrame, table: str, symbol: str, slices: Sequence[tuple[datetime, datetime]]
) -> None:
    if frame.height == 0:
        return
    wrong_symbol = frame.filter(pl.col("symbol") != symbol).height
    in_a_slice = pl.any_horizontal(
        [pl.col("minute").is_between(start, end, closed="left") for start, end in slices] or [pl.lit(False)]
    )
    outside = frame.filter(~in_a_slice).height
    if wrong_symbol or outside:
        where = (
            f"[{slices[0][0].isoformat()}, {slices[0][1].isoformat()})"
            if len(slices) == 1
            else f"{len(slices)} slices from {slices[0][0].isoformat()}"
        )
        raise ValueError(
            f"refusing to write {table} slice {symbol} {where}: "
            f"{wrong_symbol} row(s) of another symbol and {outside} row(s) outside the slice"
        )


def read_range(
    path: Path,
    table: str,
    symbols: Sequence[str],
    start: datetime | None = None,
    end: datetime | None = None,
    columns: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Rows of `symbols` with `start <= minute < end` (either bound optional), sorted by symbol, minute."""
    selected = ", ".join(f'"{name}"' for name in columns) if columns else "*"
    conditions = ["list_contains(?, symbol)"]
    parameters: list[object] = [list(symbols)]
    if start is not None:
        conditions.append("minute >= ?")
        parameters.append(start)
    if end is not None:
        conditions.append("minute < ?")
        parameters.append(end)
    query = f'SELECT {selected} FROM "{table}" WHERE {" AND ".join(conditions)} ORDER BY symbol, minute'

    def work(connection: duckdb.DuckDBPyConnection) -> pl.DataFrame:
        if not table_exists(connection, table):
            raise StoreMissingError(
                f"table {table!r} does not exist in {path}: nothing has been written to it yet"
            )
        return relation_to_polars(connection.sql(query, params=parameters))

    return run_read(path, work)


def relation_to_polars(relation: duckdb.DuckDBPyRelation) -> pl.DataFrame:
    """A relation as polars (zero-copy via Arrow), with every timestamp in UTC microseconds."""
    return arrow_to_polars(relation.to_arrow_table())


def arrow_to_polars(data: pa.Table | pa.RecordBatch) -> pl.DataFrame:
    """Arrow data from DuckDB as polars (zero-copy), with every timestamp in UTC microseconds."""
    frame = pl.from_arrow(data)
    assert isinstance(frame, pl.DataFrame)
    timestamps = [
        name for name, dtype in frame.schema.items() if isinstance(dtype, pl.Datetime) and dtype.time_zone
    ]
    return frame.with_columns(
        [pl.col(name).dt.convert_time_zone("UTC").dt.cast_time_unit("us") for name in timestamps]
    )


def query(path: Path, sql: str, parameters: Sequence[object] = ()) -> pl.DataFrame:
    """A read-only query with parameters, returned as polars."""
    return run_read(path, lambda connection: relation_to_polars(connection.sql(sql, params=list(parameters))))


def write_candles(
    path: Path,
    candles: pl.DataFrame,
    symbol: str,
    start: datetime,
    end: datetime,
    source: str,
    ingested_at: datetime,
    allow_shrink: bool = False,
) -> int:
    """Replace the (symbol, [start, end)) slice of the candles table with validated candles."""
    return write_candle_slices(path, candles, symbol, [(start, end)], source, ingested_at, allow_shrink)


def write_candle_slices(
    path: Path,
    candles: pl.DataFrame,
    symbol: str,
    slices: Sequence[tuple[datetime, datetime]],
    source: str,
    ingested_at: datetime,
    allow_shrink: bool = False,
    guard: StoredRowsGuard | None = None,
    before_write: BeforeWrite | None = None,
) -> int:
    """Replace the (symbol, [start, end)) slices of the candles table with validated candles, in one
    transaction. A slice never ends with fewer rows than it holds unless `allow_shrink`
    (`ShrinkRefusedError`, nothing written); `guard` sees the stored rows first and may refuse, then
    `before_write` may stop the write (see `replace_slices`)."""
    rows = candles.select(
        pl.lit(symbol).alias("symbol"),
        "minute",
        "open",
        "high",
        "low",
        "close",
        "volume",
        pl.lit(source).alias("source"),
        pl.lit(ingested_at).cast(pl.Datetime("us", "UTC")).alias("ingested_at"),
    )
    return replace_slices(
        path,
        CANDLES_TABLE,
        rows,
        symbol,
        slices,
        ddl=[CANDLES_DDL],
        allow_shrink=allow_shrink,
        guard=guard,
        before_write=before_write,
    )


def read_candles(
    path: Path, symbols: Sequence[str], start: datetime | None = None, end: datetime | None = None
) -> pl.DataFrame:
    """Stored candles as polars (symbol, minute, open, high, low, close, volume, source, ingested_at)."""
    return read_range(path, CANDLES_TABLE, symbols, start, end)


_INTEGRITY_COLUMNS = """
    count(*) AS rows,
    count(*) - count(DISTINCT minute) AS duplicate_minutes,
    count(*) FILTER (WHERE high < low OR open > high OR open < low OR close > high OR close < low
                     OR least(open, high, low, close) <= 0 OR volume < 0) AS ohlc_violations
"""
_NO_CANDLES = {"rows": 0, "duplicate_minutes": 0, "ohlc_violations": 0}


def candle_integrity(path: Path, symbol: str, start: datetime, end: datetime) -> dict[str, int]:
    """Counts over the stored (symbol, [start, end)) candles: rows, duplicate minutes, OHLC violations."""
    result = query(
        path,
        f"SELECT {_INTEGRITY_COLUMNS} FROM candles WHERE symbol = ? AND minute >= ? AND minute < ?",
        [symbol, start, end],
    )
    return {name: int(result[name][0]) for name in result.columns}


def candle_integrity_by_day(path: Path, symbol: str, days: Sequence[date]) -> dict[date, dict[str, int]]:
    """`candle_integrity` of each UTC day of `symbol` in `days`, in one query (a day with no stored
    candles counts zero rows)."""
    if not days:
        return {}
    first, last = min(days), max(days)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    result = query(
        path,
        f"""
        SELECT CAST(timezone('UTC', minute) AS DATE) AS day, {_INTEGRITY_COLUMNS}
        FROM candles WHERE symbol = ? AND minute >= ? AND minute < ? GROUP BY day
        """,
        [symbol, start, end],
    )
    stored = {
        row["day"]: {name: int(row[name]) for name in _NO_CANDLES} for row in result.iter_rows(named=True)
    }
    return {day: stored.get(day, dict(_NO_CANDLES)) for day in days}


def stored_minutes_per_day(path: Path, symbol: str, first_day: date, last_day: date) -> dict[date, int]:
    """Stored candle minutes of each UTC day of `symbol` in [first_day, last_day] that has any."""
    start = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC)
    end = datetime(last_day.year, last_day.month, last_day.day, tzinfo=UTC) + timedelta(days=1)
    result = query(
        path,
        "SELECT CAST(timezone('UTC', minute) AS DATE) AS day, count(*) AS minutes FROM candles "
        "WHERE symbol = ? AND minute >= ? AND minute < ? GROUP BY day",
        [symbol, start, end],
    )
    return dict(zip(result["day"].to_list(), result["minutes"].to_list(), strict=True))


def latest_minutes(path: Path, symbols: Sequence[str]) -> dict[str, datetime]:
    """The newest stored candle minute of each symbol that has any."""
    result = query(
        path,
        "SELECT symbol, max(minute) AS latest FROM candles WHERE list_contains(?, symbol) GROUP BY symbol",
        [list(symbols)],
    )
    return dict(zip(result["symbol"].to_list(), result["latest"].to_list(), strict=True))
