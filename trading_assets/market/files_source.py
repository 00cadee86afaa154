"""Replay candles from files a user downloaded: Parquet, Arrow IPC/feather or CSV.

Files live in one directory, one file per symbol. A file belongs to a symbol when its name, without the
extension and an optional timeframe suffix such as `-1m`, matches the symbol with `-`, `_` and `/`
treated alike: `BTC_USDT-1m.feather` (freqtrade's layout) serves `BTC-USDT` and `BTC/USDT`.

Columns: a time column named `minute`, `date`, `time`, `timestamp` or `datetime` and `open, high, low,
close, volume`. The time column may be a datetime, ISO strings, or epoch numbers whose unit (s, ms, us,
ns; floats as seconds) is inferred from their size (epochs are UTC by definition). Times that carry a zone
(a zoned datetime column, ISO strings ending in `Z` or `+hh:mm`) are converted to UTC. Times without a
zone (a naive datetime column, ISO strings without an offset) are refused unless the source is given a
`timezone` (an IANA name such as `UTC` or `America/New_York`): a file in New York wall-clock time read as
UTC would shift every candle by 4 or 5 hours. With a zone, naive times are read as wall-clock times there
(in a fall-back hour, the first occurrence of a time is the earlier instant, the second the later; a time
in a spring-forward gap is refused). Times outside 2009-01-01 .. now + 1 day are refused, naming the
file, column and unit inferred. A fetch for a range the file holds no candle of is refused naming the file
and the span it covers (`FileSpanError`), rather than answering an empty day. Every error names the file.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from trading_assets.market.candles import InvalidPartitionError, conform

SUFFIXES = (".parquet", ".feather", ".arrow", ".ipc", ".csv")
TIME_COLUMNS = ("minute", "date", "time", "timestamp", "datetime")
_TIMEFRAME_SUFFIX = re.compile(r"[-_]1m$", re.IGNORECASE)
EARLIEST = datetime(2009, 1, 1, tzinfo=UTC)
#: Epoch units by how many of them make a second, smallest first.
_EPOCH_UNITS = (("s", 1), ("ms", 10**3), ("us", 10**6), ("ns", 10**9))


def normalise_symbol(name: str) -> str:
    return re.sub(r"[-_/]", "-", _TIMEFRAME_SUFFIX.sub("", name)).upper()


class NaiveTimesError(ValueError):
    """A file's times carry no zone and the source has none configured."""


class FileSpanError(InvalidPartitionError):
    """A file holds no candle in the range asked for: the file does not cover it (nothing is stored)."""


def check_timezone(timezone: str | None) -> str | None:
    """`timezone` if it is an IANA zone name (or None); a ValueError naming it otherwise."""
    if timezone is None:
        return None
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(
            f"files source timezone {timezone!r} is not an IANA zone name (e.g. UTC, America/New_York)"
        ) from error
    return timezone


class FilesSource:
    """Candles of each symbol from the matching file in `directory`.

    `timezone`: the zone of times written without one (None: such files are refused).
    """

    name = "files"

    def __init__(self, directory: Path, timezone: str | None = None) -> None:
        self.directory = Path(directory)
        self.timezone = check_timezone(timezone)
        self._frames: dict[str, tuple[Path, pl.DataFrame]] = {}

    def fetch(self, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
        if symbol not in self._frames:
            path = self.file_for(symbol)
            self._frames[symbol] = (path, read_candle_file(path, self.timezone))
        path, frame = self._frames[symbol]
        candles = frame.filter((pl.col("minute") >= start) & (pl.col("minute") < end))
        if candles.height == 0:
            raise FileSpanError(
                f"{path}: holds no candle in [{start.isoformat()}, {end.isoformat()}); the file spans "
                f"{frame['minute'].min().isoformat()} .. {frame['minute'].max().isoformat()} "
                "(a file shifted or cut short? nothing stored)"
            )
        return candles

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


def read_candle_file(path: Path, timezone: str | None = None) -> pl.DataFrame:
    """One candle file in CANDLE_SCHEMA, sorted by minute. Errors name the file and the column.

    `timezone`: the zone of times written without one; None refuses such times (`NaiveTimesError`).
    """
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
        minute, unit = to_minutes(lowered[time_column], check_timezone(timezone), path)
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


def to_minutes(
    times: pl.Series, timezone: str | None = None, path: Path | str = "candle file"
) -> tuple[pl.Series, str]:
    """UTC datetimes (us) from a time column, and the unit inferred for it.

    Times without a zone are read in `timezone`; with `timezone=None` they raise `NaiveTimesError`.
    """
    if times.dtype.is_integer() or times.dtype.is_float():
        unit, per_second = _epoch_unit(times)
        if times.dtype.is_float() and unit == "s":
            unit = "float seconds"
        micros = (times.cast(pl.Float64) * (10**6 / per_second)).round().cast(pl.Int64)
        return pl.from_epoch(micros, time_unit="us").dt.replace_time_zone("UTC"), unit
    if times.dtype == pl.String:
        zoned = times.str.contains(r"(Z|[+-]\d\d:?\d\d)$")
        if zoned.all():
            return times.str.to_datetime(time_unit="us", time_zone="UTC"), "ISO strings with a zone"
        if zoned.any():
            raise ValueError(
                f"{path}: column {times.name!r} mixes times with a zone ({times.filter(zoned)[0]!r}) and "
                f"without ({times.filter(~zoned)[0]!r})"
            )
        naive = times.str.to_datetime(time_unit="us")
        return _localize(naive, timezone, path, times.name), f"ISO strings ({timezone or 'no zone'})"
    if isinstance(times.dtype, pl.Datetime):
        if times.dtype.time_zone is not None:
            return times.dt.convert_time_zone("UTC").dt.cast_time_unit("us"), "datetime"
        return _localize(times.dt.cast_time_unit("us"), timezone, path, times.name), f"datetime ({timezone})"
    return times, "datetime"


def _localize(naive: pl.Series, timezone: str | None, path: Path | str, column: str) -> pl.Series:
    """Naive wall-clock times in `timezone` as UTC; refused without a zone."""
    if timezone is None:
        raise NaiveTimesError(
            f"{path}: column {column!r} holds times without a zone (first {naive.min()}); refusing to guess "
            "one: configure the files source's timezone (TA_FILES_TIMEZONE, e.g. UTC or America/New_York) "
            "or write the times with an offset"
        )
    # In a fall-back hour the same wall-clock time occurs twice: its first occurrence in the file is the
    # earlier instant, a repeat the later one.
    ambiguous = (
        pl.when(pl.col(column).is_first_distinct()).then(pl.lit("earliest")).otherwise(pl.lit("latest"))
    )
    try:
        local = naive.to_frame(column).select(
            pl.col(column).dt.replace_time_zone(timezone, ambiguous=ambiguous, non_existent="raise")
        )[column]
    except pl.exceptions.PolarsError as error:
        raise ValueError(
            f"{path}: column {column!r} read in {timezone}: a time that does not exist there "
            f"(a spring-forward gap?): {str(error).splitlines()[0]}"
        ) from error
    return local.dt.convert_time_zone("UTC")


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
