"""Replay candles from files a user downloaded: Parquet, Arrow IPC/feather or CSV.

Files live in one directory, one file per symbol. A file belongs to a symbol when its name, without the
extension and an optional timeframe suffix such as `-1m`, matches the symbol with `-`, `_` and `/`
treated alike: `BTC_USDT-1m.feather` (freqtrade's layout) serves `BTC-USDT` and `BTC/USDT`.

Columns: a time column named `minute`, `date`, `time`, `timestamp` or `datetime` and `open, high, low,
close, volume`. The time column may be a datetime (naive meaning UTC), ISO strings with or without a zone
(none meaning UTC), or epoch numbers whose unit (s, ms, us, ns; floats as seconds) is inferred from their
size. Times outside 2009-01-01 .. now + 1 day are refused, naming the file, column and unit inferred.
Every error names the file.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from trading_assets.market.candles import conform

SUFFIXES = (".parquet", ".feather", ".arrow", ".ipc", ".csv")
TIME_COLUMNS = ("minute", "date", "time", "timestamp", "datetime")
_TIMEFRAME_SUFFIX = re.compile(r"[-_]1m$", re.IGNORECASE)
EARLIEST = datetime(2009, 1, 1, tzinfo=UTC)
#: Epoch units by how many of them make a second, smallest first.
_EPOCH_UNITS = (("s", 1), ("ms", 10**3), ("us", 10**6), ("ns", 10**9))


def normalise_symbol(name: str) -> str:
    return re.sub(r"[-_/]", "-", _TIMEFRAME_SUFFIX.sub("", name)).upper()


class FilesSource:
    """Candles of each symbol from the matching file in `directory`."""

    name = "files"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._frames: dict[str, pl.DataFrame] = {}

    def fetch(self, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
        frame = self._frames.get(symbol)
        if frame is None:
            frame = self._frames[symbol] = read_candle_file(self.file_for(symbol))
        return frame.filter((pl.col("minute") >= start) & (pl.col("minute") < end))

    def file_for(self, symbol: str) -> Path:
        if not self.directory.is_dir():
            raise FileNotFoundError(f"files source directory {self.directory} does not exist")
        candidates = sorted(
            path
            for path in self.directory.iterdir()
            if path.suffix.lower() in SUFFIXES and normalise_symbol(path.stem) == normalise_symbol(symbol)
        )
        if not candidates:
            present = ", ".join(
                sorted(p.name for p in self.directory.iterdir() if p.suffix.lower() in SUFFIXES)
            )
            raise FileNotFoundError(
                f"no candle file for symbol {symbol} in {self.directory} (files there: {present or 'none'})"
            )
        if len(candidates) > 1:
            raise ValueError(f"several candle files match {symbol} in {self.directory}: {candidates}")
        return candidates[0]


def read_candle_file(path: Path) -> pl.DataFrame:
    """One candle file in CANDLE_SCHEMA, sorted by minute. Errors name the file and the column."""
    try:
        raw = _read_raw(path)
    except (OSError, pl.exceptions.PolarsError) as error:
        raise ValueError(f"{path}: cannot read it as {path.suffix.lstrip('.')}: {error}") from error
    lowered = raw.rename({name: name.lower() for name in raw.columns})
    time_column = next((name for name in TIME_COLUMNS if name in lowered.columns), None)
    if time_column is None:
        raise ValueError(
            f"{path}: no time column (expected one of {TIME_COLUMNS}); columns are {raw.columns}"
        )
    missing = [name for name in ("open", "high", "low", "close", "volume") if name not in lowered.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; columns are {raw.columns}")
    if lowered.height == 0:
        raise ValueError(f"{path}: holds no candles (only a header)")
    try:
        minute, unit = to_minutes(lowered[time_column])
        _check_time_range(minute, path, time_column, unit)
        return conform(lowered.with_columns(minute.alias("minute"))).sort("minute")
    except pl.exceptions.PolarsError as error:
        raise ValueError(f"{path}: cannot read candles from column {time_column!r}: {error}") from error


def _read_raw(path: Path) -> pl.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pl.read_parquet(path)
    if suffix == ".csv":
        return pl.read_csv(path)
    return pl.read_ipc(path)


def to_minutes(times: pl.Series) -> tuple[pl.Series, str]:
    """UTC datetimes (us) from a time column, and the unit inferred for it."""
    if times.dtype.is_integer() or times.dtype.is_float():
        unit, per_second = _epoch_unit(times)
        if times.dtype.is_float() and unit == "s":
            unit = "float seconds"
        micros = (times.cast(pl.Float64) * (10**6 / per_second)).round().cast(pl.Int64)
        return pl.from_epoch(micros, time_unit="us").dt.replace_time_zone("UTC"), unit
    if times.dtype == pl.String:
        zoned = times.str.contains(r"(Z|[+-]\d\d:?\d\d)$").any()
        parsed = times.str.to_datetime(time_unit="us", time_zone="UTC" if zoned else None)
        if parsed.dtype.time_zone is None:
            parsed = parsed.dt.replace_time_zone("UTC")
        return parsed, "ISO strings with a zone" if zoned else "ISO strings (UTC)"
    return times, "datetime"


def _epoch_unit(times: pl.Series) -> tuple[str, int]:
    """The epoch unit whose reading of the column's median lands nearest the present."""
    median = abs(times.cast(pl.Float64).median() or 0.0)
    now_s = datetime.now(UTC).timestamp()
    return min(_EPOCH_UNITS, key=lambda unit: abs(median / unit[1] - now_s) if median else unit[1])


def _check_time_range(minute: pl.Series, path: Path, column: str, unit: str) -> None:
    latest = datetime.now(UTC) + timedelta(days=1)
    first, last = minute.min(), minute.max()
    if first is None or first < EARLIEST or last > latest:
        raise ValueError(
            f"{path}: column {column!r} read as {unit} spans {first} .. {last}, outside "
            f"{EARLIEST.date()} .. {latest.date()}: wrong unit or corrupt times"
        )
