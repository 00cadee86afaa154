from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from trading_assets.market.candles import day_bounds, day_quality, validate_candles
from trading_assets.market.files_source import (
    FileSpanError,
    FilesSource,
    NaiveTimesError,
    read_candle_file,
)
from trading_assets_tests.conftest import SHARED_DATA

FIXTURES = Path(__file__).parent / "fixtures"
REAL_MARCH = SHARED_DATA / "binance_2026-03_paparocketeer-freqtrade-bot"


def test_freqtrade_csv_with_gaps_replays_one_day() -> None:
    day = date(2017, 11, 10)
    candles = FilesSource(FIXTURES, timezone="UTC").fetch("UNITTEST-BTC", *day_bounds(day))
    valid, report = validate_candles(candles, "UNITTEST-BTC", day, max_invalid_share=0.0)
    quality = day_quality(valid["minute"], day)
    assert valid.height == 1403 and report.rows_invalid == 0
    assert quality.gap_count > 0 and quality.coverage == pytest.approx(1403 / 1440)


@pytest.mark.parametrize("suffix", [".parquet", ".feather", ".csv"])
def test_formats_round_trip(tmp_path: Path, suffix: str) -> None:
    original = read_candle_file(FIXTURES / "UNITTEST_BTC-1m.csv", timezone="UTC")
    path = tmp_path / f"ETH_USD-1m{suffix}"
    if suffix == ".parquet":
        original.write_parquet(path)
    elif suffix == ".feather":
        original.write_ipc(path)
    else:
        original.with_columns(pl.col("minute").dt.epoch("ms").alias("timestamp")).drop("minute").write_csv(
            path
        )
    assert read_candle_file(path).equals(original)
    assert FilesSource(tmp_path).file_for("ETH-USD") == path


def test_missing_symbol_and_columns_are_named(tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=r"no candle file for symbol SOL-USD in .*UNITTEST_BTC-1m.csv"
    ):
        FilesSource(FIXTURES).file_for("SOL-USD")
    broken = tmp_path / "XRP-USD.csv"
    broken.write_text("date,open,high,low,close\n2024-01-01 00:00:00,1,1,1,1\n")
    with pytest.raises(ValueError, match=r"XRP-USD.csv: missing column\(s\) \['volume'\]"):
        read_candle_file(broken)


@pytest.mark.skipif(not REAL_MARCH.is_dir(), reason=f"real Binance candles not found at {REAL_MARCH}")
@pytest.mark.parametrize("symbol", ["BTC/USDT", "ETH-USDT", "SOL_USDT"])
def test_real_binance_days_are_complete_and_valid(symbol: str) -> None:
    day = date(2026, 4, 2)
    candles = FilesSource(REAL_MARCH).fetch(symbol, *day_bounds(day))
    valid, report = validate_candles(candles, symbol, day, max_invalid_share=0.0)
    assert valid.height == 1440 and report.rows_invalid == 0


@pytest.mark.parametrize(
    ("unit", "encode"),
    [
        ("s", lambda m: m.dt.epoch("s")),
        ("ms", lambda m: m.dt.epoch("ms")),
        ("us", lambda m: m.dt.epoch("us")),
        ("ns", lambda m: m.dt.epoch("ns")),
        ("float seconds", lambda m: m.dt.epoch("ms") / 1000),
        ("ISO strings with a zone", lambda m: m.dt.to_string("%Y-%m-%dT%H:%M:%S%z")),
        ("ISO strings (UTC)", lambda m: m.dt.to_string("%Y-%m-%d %H:%M:%S")),
        (
            "ISO strings (America/New_York)",
            lambda m: m.dt.convert_time_zone("America/New_York").dt.to_string("%Y-%m-%d %H:%M:%S"),
        ),
    ],
)
def test_the_time_unit_is_inferred_from_the_values(tmp_path: Path, unit: str, encode) -> None:
    start, _ = day_bounds(date(2024, 3, 5))
    minutes = pl.datetime_range(
        start, start.replace(hour=2), "1m", time_unit="us", time_zone="UTC", eager=True
    )
    path = tmp_path / "BTC-USD.csv"
    base = pl.Series(range(minutes.len()), dtype=pl.Float64) + 100.0
    pl.DataFrame(
        {
            "timestamp": encode(minutes),
            "open": base,
            "high": base + 1,
            "low": base - 1,
            "close": base,
            "volume": base,
        }
    ).write_csv(path)
    zone = unit[len("ISO strings (") : -1] if unit.startswith("ISO strings (") else None
    assert read_candle_file(path, timezone=zone)["minute"].equals(minutes.alias("minute"))


def test_times_outside_2009_to_tomorrow_are_refused_naming_file_column_and_unit(tmp_path: Path) -> None:
    path = tmp_path / "BTC-USD.csv"
    pl.DataFrame(
        {
            "date": [5, 6],
            "open": [1.0, 1.0],
            "high": [1.0, 1.0],
            "low": [1.0, 1.0],
            "close": [1.0, 1.0],
            "volume": [1.0, 1.0],
        }
    ).write_csv(path)
    with pytest.raises(
        ValueError, match=rf"^{path}: column 'date' read as s spans 1970-01-01 .*outside 2009-01-01"
    ):
        read_candle_file(path)


def test_a_header_only_csv_and_a_corrupt_parquet_name_the_file(tmp_path: Path) -> None:
    header_only = tmp_path / "BTC-USD.csv"
    header_only.write_text("date,open,high,low,close,volume\n")
    with pytest.raises(ValueError, match=rf"^{header_only}: holds no candles"):
        read_candle_file(header_only)
    corrupt = tmp_path / "ETH-USD.parquet"
    corrupt.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(ValueError, match=rf"^{corrupt}: cannot read it as parquet"):
        read_candle_file(corrupt)


def _day_file(path: Path, times: pl.Series, name: str = "date") -> None:
    base = pl.Series(range(times.len()), dtype=pl.Float64) + 100.0
    frame = pl.DataFrame(
        {name: times, "open": base, "high": base + 1, "low": base - 1, "close": base, "volume": base}
    )
    if path.suffix == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_times_without_a_zone_are_refused_unless_a_zone_is_configured(tmp_path: Path, suffix: str) -> None:
    """Naive New York wall-clock times (ISO strings in a CSV, a naive datetime column in Parquet): refused
    without a zone, naming the file and the setting; read as New York time (EST, UTC-5) with one."""
    start = datetime(2024, 1, 2)
    local = pl.datetime_range(start, start.replace(hour=23, minute=59), "1m", time_unit="us", eager=True)
    path = tmp_path / f"BTC-USD{suffix}"
    _day_file(path, local.dt.to_string("%Y-%m-%d %H:%M:%S") if suffix == ".csv" else local)
    with pytest.raises(
        NaiveTimesError, match=rf"^{path}: column 'date' holds times without a zone.*TA_FILES_TIMEZONE"
    ):
        read_candle_file(path)
    with pytest.raises(NaiveTimesError, match=rf"^{path}: "):
        FilesSource(tmp_path).fetch("BTC-USD", *day_bounds(date(2024, 1, 2)))
    minutes = read_candle_file(path, timezone="America/New_York")["minute"]
    assert minutes[0] == datetime(2024, 1, 2, 5, 0, tzinfo=UTC) and minutes.len() == 1440
    utc = FilesSource(tmp_path, timezone="UTC").fetch("BTC-USD", *day_bounds(date(2024, 1, 2)))
    assert utc["minute"][0] == start.replace(tzinfo=UTC) and utc.height == 1440


def test_a_fall_back_hour_in_local_time_keeps_both_hours(tmp_path: Path) -> None:
    """New York's 2024-11-03 01:00-01:59 occurs twice: the first run is EDT (05:00Z), the repeat EST (06:00Z)."""
    first = pl.datetime_range(datetime(2024, 11, 3, 0, 0), datetime(2024, 11, 3, 1, 59), "1m", eager=True)
    second = pl.datetime_range(datetime(2024, 11, 3, 1, 0), datetime(2024, 11, 3, 2, 59), "1m", eager=True)
    path = tmp_path / "BTC-USD.csv"
    _day_file(path, pl.concat([first, second]).dt.to_string("%Y-%m-%d %H:%M:%S"))
    minutes = read_candle_file(path, timezone="America/New_York")["minute"]
    expected = pl.datetime_range(
        datetime(2024, 11, 3, 4, 0),
        datetime(2024, 11, 3, 7, 59),
        "1m",
        time_unit="us",
        time_zone="UTC",
        eager=True,
    )
    assert minutes.equals(expected.alias("minute"))


def test_a_bad_zone_and_mixed_zones_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"timezone 'Mars/Olympus' is not an IANA zone name"):
        FilesSource(tmp_path, timezone="Mars/Olympus")
    path = tmp_path / "BTC-USD.csv"
    _day_file(path, pl.Series(["2024-01-02T00:00:00Z", "2024-01-02 00:01:00"]))
    with pytest.raises(ValueError, match=rf"^{path}: column 'date' mixes times with a zone"):
        read_candle_file(path, timezone="UTC")


def test_a_day_the_file_does_not_cover_is_refused_naming_the_file(tmp_path: Path) -> None:
    """A file shifted by a day (or cut short) holds no candle of the day asked: refused naming the file and its
    span, instead of answering an empty day."""
    start, _ = day_bounds(date(2024, 1, 3))
    minutes = pl.datetime_range(
        start, start.replace(hour=23), "1m", time_unit="us", time_zone="UTC", eager=True
    )
    path = tmp_path / "BTC-USD.parquet"
    _day_file(path, minutes)
    source = FilesSource(tmp_path)
    assert source.fetch("BTC-USD", *day_bounds(date(2024, 1, 3))).height == minutes.len()
    with pytest.raises(
        FileSpanError,
        match=rf"^{path}: holds no candle in \[2024-01-02T00:00:00\+00:00, 2024-01-03T00:00:00\+00:00\); "
        r"the file spans 2024-01-03T00:00:00\+00:00 \.\. 2024-01-03T23:00:00\+00:00",
    ):
        source.fetch("BTC-USD", *day_bounds(date(2024, 1, 2)))
