"""Replay candles from files a user downloaded: Parquet, Arrow IPC/feather or CSV.

Files live in one directory, one file per symbol. A file belongs to a symbol when its name, without the
extension and an optional timeframe suffix such as `-1m`, matches the symbol with `-`, `_` and `/`
treated alike: `BTC_USDT-1m.feather` (freqtrade's layout) serves `BTC-USDT` and `BTC/USDT`.

Columns: a time column named `minute`, `date`, `time`, `timestamp` or `datetime` (a datetime, naive
meaning UTC, or integer epoch milliseconds) and `open, high, low, close, volume`.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import polars as pl

from trading_assets.market.candles import conform

SUFFIXES = (".parquet", ".feather", ".arrow", ".ipc", ".csv")
TIME_COLUMNS = ("minute", "date", "time", "timestamp", "datetime")
_TIMEFRAME_SUFFIX = re.compile(r"[-_]1m$", re.IGNORECASE)


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
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        raw = pl.read_parquet(path)
    elif suffix == ".csv":
        raw = pl.read_csv(path, try_parse_dates=True)
    else:
        raw = pl.read_ipc(path)
    lowered = raw.rename({name: name.lower() for name in raw.columns})
    time_column = next((name for name in TIME_COLUMNS if name in lowered.columns), None)
    if time_column is None:
        raise ValueError(
            f"{path}: no time column (expected one of {TIME_COLUMNS}); columns are {raw.columns}"
        )
    missing = [name for name in ("open", "high", "low", "close", "volume") if name not in lowered.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; columns are {raw.columns}")
    times = lowered[time_column]
    if times.dtype.is_integer():
        minute = pl.from_epoch(times, time_unit="ms")
    elif times.dtype == pl.String:
        minute = times.str.to_datetime(time_zone="UTC")
    else:
        minute = times
    try:
        return conform(lowered.with_columns(minute.alias("minute"))).sort("minute")
    except pl.exceptions.PolarsError as error:
        raise ValueError(f"{path}: cannot read candles: {error}") from error
