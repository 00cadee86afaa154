"""The feature store: one DuckDB table keyed by (symbol, minute), one column per feature plus flags.

Writes go through `duckdb_store.replace_slices`, so (symbol, day) partitions replace their slices in one
transaction with the candles table's guarantees (lock retries, rollback, idempotent reruns). Each row
records the feature set it was computed with (`feature_set_version`, `schema_hash`). The store is the
embedded DuckDB file or a DuckLake (`duckdb_store.Store`); a feature matrix says where its rows came from
(`FeatureMatrix.source`, the lake's snapshot included), for the model manifest's provenance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

import duckdb
import numpy as np
import polars as pl

from trading_assets.features.pipeline import FLAG_COLUMNS
from trading_assets.features.registry import (
    FEATURE_NAMES,
    FEATURES,
    MODEL_FEATURES,
    schema_hash,
)
from trading_assets.market.candles import MINUTES_PER_DAY, day_bounds
from trading_assets.store.duckdb_store import (
    BeforeWrite,
    LakeStore,
    Store,
    StoreMissingError,
    arrow_to_polars,
    current_snapshot,
    read_range,
    replace_slices,
    run_read,
    table_exists,
)

FEATURES_TABLE = "features"
STORED_COLUMNS = ("minute", "close", *FEATURE_NAMES, *FLAG_COLUMNS, "feature_set_version", "schema_hash")
_FEATURE_COLUMNS_SQL = ",\n".join(f'    "{name}" DOUBLE NOT NULL' for name in FEATURE_NAMES)
FEATURES_DDL = f"""
CREATE TABLE IF NOT EXISTS {FEATURES_TABLE} (
    symbol VARCHAR NOT NULL,
    minute TIMESTAMPTZ NOT NULL,
    close DOUBLE NOT NULL,
{_FEATURE_COLUMNS_SQL},
    filled BOOLEAN NOT NULL,
    warmup BOOLEAN NOT NULL,
    usable BOOLEAN NOT NULL,
    feature_set_version VARCHAR NOT NULL,
    schema_hash VARCHAR NOT NULL,
    computed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (symbol, minute)
)
"""


@dataclass(frozen=True)
class MatrixSource:
    """Which stored rows a `FeatureMatrix` holds: the features of `symbol` with start <= minute < end (UTC,
    ISO), read from the embedded file (`backend` "duckdb") or from a DuckLake at `snapshot` ("ducklake")."""

    backend: str
    symbol: str
    start: str
    end: str
    snapshot: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "table": FEATURES_TABLE,
            "symbol": self.symbol,
            "start": self.start,
            "end": self.end,
            "snapshot": self.snapshot,
        }


class FeatureMatrix(NamedTuple):
    """Training input: float32 features (rows x features) and the row-aligned minute, close and flags.

    `observed[i]` is False for a minute filled across a gap (no candle): its close is carried forward.
    `source`: the stored rows it was read from (None for a matrix built in memory).
    """

    x: np.ndarray
    minutes: np.ndarray
    close: np.ndarray
    usable: np.ndarray
    observed: np.ndarray
    names: tuple[str, ...]
    source: MatrixSource | None = None


def write_feature_day(
    db_path: Store, symbol: str, day: date, frame: pl.DataFrame, computed_at: datetime | None = None
) -> int:
    """Replace the (symbol, day) slice of the features table with `frame` (from `compute_day_features`).

    Refuses a frame that fails `check_feature_ranges`. Returns the rows written.
    """
    return write_feature_days(db_path, symbol, {day: frame}, computed_at)


def write_feature_days(
    db_path: Store,
    symbol: str,
    frames: Mapping[date, pl.DataFrame],
    computed_at: datetime | None = None,
    before_write: BeforeWrite | None = None,
) -> int:
    """Replace the (symbol, day) slices of the features table with each day's frame, in one transaction.

    Refuses, before writing anything, when a day's frame fails `check_feature_ranges`; `before_write` may
    stop the write inside the transaction (see `replace_slices`). Returns the rows written.
    """
    for day, frame in frames.items():
        problems = check_feature_ranges(frame, day)
        if problems:
            raise ValueError(
                f"refusing to store features of {symbol} {day.isoformat()}: " + "; ".join(problems)
            )
    stamp = pl.lit(computed_at or datetime.now(UTC)).cast(pl.Datetime("us", "UTC")).alias("computed_at")
    rows = pl.concat(
        [frame.select(pl.lit(symbol).alias("symbol"), *STORED_COLUMNS, stamp) for frame in frames.values()]
    )
    slices = [day_bounds(day) for day in frames]
    return replace_slices(
        db_path, FEATURES_TABLE, rows, symbol, slices, ddl=[FEATURES_DDL], before_write=before_write
    )


def _as_datetime(bound: date | datetime) -> datetime:
    return bound if isinstance(bound, datetime) else day_bounds(bound)[0]


def read_features(
    db_path: Store,
    symbol: str,
    start: date | datetime,
    end: date | datetime,
    columns: tuple[str, ...] | list[str] | None = None,
) -> pl.DataFrame:
    """Stored rows of `symbol` with start <= minute < end (a date means its 00:00 UTC), sorted by minute."""
    return read_range(db_path, FEATURES_TABLE, [symbol], _as_datetime(start), _as_datetime(end), columns)


def read_feature_days(db_path: Store, symbol: str, days: Sequence[date]) -> dict[date, pl.DataFrame]:
    """The stored rows of `symbol` on each of `days` (one read from the first to the last day; a day
    with nothing stored maps to an empty frame)."""
    if not days:
        return {}
    stored = read_features(db_path, symbol, min(days), max(days) + timedelta(days=1))
    by_day = {
        day: frame.drop("day")
        for (day,), frame in stored.with_columns(pl.col("minute").dt.date().alias("day"))
        .partition_by("day", as_dict=True, maintain_order=True)
        .items()
    }
    return {day: by_day.get(day, stored.clear()) for day in days}


def feature_matrix(frame: pl.DataFrame, names: tuple[str, ...] = MODEL_FEATURES) -> FeatureMatrix:
    """The frame's features as one float32 array, without per-row Python.

    Raises ValueError when rows were computed with another feature set than the current registry.
    """
    hashes = frame["schema_hash"].unique().to_list() if "schema_hash" in frame.columns else []
    if any(value != schema_hash() for value in hashes):
        raise ValueError(
            f"rows computed with feature set(s) {hashes}, current is {schema_hash()}: recompute them"
        )
    return FeatureMatrix(
        x=frame.select(pl.col(names).cast(pl.Float32)).to_numpy(order="c"),
        minutes=frame["minute"].to_numpy(),
        close=frame["close"].to_numpy(),
        usable=frame["usable"].to_numpy(),
        observed=~frame["filled"].to_numpy(),
        names=tuple(names),
    )


def read_feature_matrix(
    db_path: Store,
    symbol: str,
    start: date | datetime,
    end: date | datetime,
    names: tuple[str, ...] = MODEL_FEATURES,
    snapshot: int | None = None,
) -> FeatureMatrix:
    """`feature_matrix` of the stored rows of `symbol` in [start, end), sorted by minute; its `source` names
    them (on a DuckLake with the snapshot read: all of it comes from one snapshot).

    `snapshot` (DuckLake only): read the rows as they were at that snapshot (time travel), not the latest.

    Streamed: DuckDB casts the features to float32 and hands them over in record batches, which fill
    arrays allocated once, so memory holds the matrix plus one batch; the embedded file's short-lived
    connection sorts with one thread in at most `_READ_MEMORY_LIMIT` (it caches the scanned table otherwise;
    the lake's connection is shared by the process, so its settings stay). Read as one polars frame of the
    stored float64 columns, two years of one symbol raised a training's peak RSS by ~1 GB.
    """
    lake = isinstance(db_path, LakeStore)
    if snapshot is not None and not lake:
        raise ValueError(f"{db_path} is an embedded DuckDB file: it keeps no snapshots to read")
    first, last = _as_datetime(start), _as_datetime(end)
    table = FEATURES_TABLE if snapshot is None else f"{FEATURES_TABLE} AT (VERSION => {int(snapshot)})"
    where = "symbol = ? AND minute >= ? AND minute < ?"
    parameters = [symbol, first, last]
    casts = ", ".join(f'CAST("{name}" AS FLOAT) AS "{name}"' for name in names)
    query = f"SELECT minute, close, usable, filled, schema_hash, {casts} FROM {table} WHERE {where} ORDER BY minute"

    def work(connection: duckdb.DuckDBPyConnection) -> FeatureMatrix:
        if not table_exists(connection, FEATURES_TABLE):
            raise StoreMissingError(f"no features are stored in {db_path} yet")
        if not lake:
            connection.execute(f"SET threads = 1; SET memory_limit = '{_READ_MEMORY_LIMIT}'")
        source = MatrixSource(
            "ducklake" if lake else "duckdb",
            symbol,
            first.isoformat(),
            last.isoformat(),
            (snapshot if snapshot is not None else current_snapshot(connection)) if lake else None,
        )
        counted = connection.execute(f"SELECT count(*) FROM {table} WHERE {where}", parameters)
        matrix = _empty_matrix(counted.fetchall()[0][0], names)._replace(source=source)
        filled = 0
        for batch in connection.sql(query, params=parameters).fetch_arrow_reader(_READ_BATCH_ROWS):
            filled = _fill_matrix(matrix, filled, arrow_to_polars(batch))
        return matrix._replace(
            x=matrix.x[:filled],
            minutes=matrix.minutes[:filled],
            close=matrix.close[:filled],
            usable=matrix.usable[:filled],
            observed=matrix.observed[:filled],
        )

    return run_read(db_path, work)


_READ_BATCH_ROWS = 65_536
_READ_MEMORY_LIMIT = "128MB"


def _empty_matrix(rows: int, names: tuple[str, ...]) -> FeatureMatrix:
    return FeatureMatrix(
        x=np.empty((rows, len(names)), dtype=np.float32),
        minutes=np.empty(rows, dtype="datetime64[us]"),
        close=np.empty(rows),
        usable=np.empty(rows, dtype=bool),
        observed=np.empty(rows, dtype=bool),
        names=names,
    )


def _fill_matrix(matrix: FeatureMatrix, offset: int, batch: pl.DataFrame) -> int:
    """Copy `batch` (after `feature_matrix`'s schema check) into `matrix` from row `offset`; the next offset."""
    part = feature_matrix(batch, matrix.names)
    end = offset + batch.height
    if end > len(matrix.x):
        raise RuntimeError(f"the feature rows changed while they were read ({end} > {len(matrix.x)})")
    for name in ("x", "minutes", "close", "usable", "observed"):
        getattr(matrix, name)[offset:end] = getattr(part, name)
    return end


def feature_summary(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per feature: mean, std (ddof=0), min and max over the non-warm-up rows, and the share of
    rows whose minute was filled."""
    measured = frame.filter(~pl.col("warmup"))
    value = pl.col("value")
    return (
        measured.select(FEATURE_NAMES)
        .unpivot(variable_name="feature", value_name="value")
        .group_by("feature", maintain_order=True)
        .agg(
            value.mean().alias("mean"),
            value.std(ddof=0).alias("std"),
            value.min().alias("min"),
            value.max().alias("max"),
        )
        .with_columns(
            pl.lit(measured.height).alias("rows"),
            pl.lit(frame["filled"].mean() if frame.height else 0.0, dtype=pl.Float64).alias("share_filled"),
        )
    )


class FeatureProblems(NamedTuple):
    """What is wrong with a features frame, by kind; each entry one line naming the feature or the rows."""

    missing_columns: list[str]
    non_finite: list[str]  # null, NaN or infinite values
    out_of_bounds: list[str]  # values outside a feature's bounds
    minutes: list[str]  # rows that are not exactly the day's 1,440 minutes

    def all(self) -> list[str]:
        return [*self.missing_columns, *self.non_finite, *self.out_of_bounds, *self.minutes]


def feature_problems(frame: pl.DataFrame, day: date | None = None) -> FeatureProblems:
    """Missing columns (then nothing else is checked), null/NaN/infinite values, values outside a feature's
    bounds, and (given `day`) minutes that are not exactly the day's 1,440."""
    missing = [name for name in STORED_COLUMNS if name not in frame.columns]
    if missing:
        return FeatureProblems([f"missing column(s) {missing}"], [], [], [])
    minutes = _coverage(frame, day) if day is not None else []
    return FeatureProblems([], _non_finite(frame), _out_of_bounds(frame), minutes)


def check_feature_ranges(frame: pl.DataFrame, day: date | None = None) -> list[str]:
    """Every problem of `feature_problems`, as lines."""
    return feature_problems(frame, day).all()


def _non_finite(frame: pl.DataFrame) -> list[str]:
    counts = frame.select(pl.col(FEATURE_NAMES).is_finite().not_().fill_null(True).sum()).row(0, named=True)
    return [f"{name}: {count} null, NaN or infinite value(s)" for name, count in counts.items() if count]


def _out_of_bounds(frame: pl.DataFrame) -> list[str]:
    bounds = {feature.name: feature.bounds for feature in FEATURES if feature.bounds is not None}
    counts = frame.select(
        (~pl.col(name).is_between(low, high)).sum().alias(name) for name, (low, high) in bounds.items()
    ).row(0, named=True)
    return [
        f"{name}: {counts[name]} value(s) outside [{low}, {high}]"
        for name, (low, high) in bounds.items()
        if counts[name]
    ]


def _coverage(frame: pl.DataFrame, day: date) -> list[str]:
    start, end = day_bounds(day)
    minutes = frame["minute"]
    problems = []
    if frame.height != MINUTES_PER_DAY or minutes.n_unique() != frame.height:
        problems.append(f"{frame.height} rows with {minutes.n_unique()} distinct minutes, expected 1440")
    if frame.height and (minutes.min() != start or minutes.max() != end - timedelta(minutes=1)):
        problems.append(f"minutes span [{minutes.min()}, {minutes.max()}], expected the UTC day {day}")
    return problems
