from datetime import date
from pathlib import Path

import polars as pl
import pytest

from trading_assets.market.candles import day_bounds, day_quality, validate_candles
from trading_assets.market.files_source import FilesSource, read_candle_file
from trading_assets_tests.conftest import SHARED_DATA

FIXTURES = Path(__file__).parent / "fixtures"
REAL_MARCH = SHARED_DATA / "binance_2026-03_paparocketeer-freqtrade-bot"


def test_freqtrade_csv_with_gaps_replays_one_day() -> None:
    day = date(2017, 11, 10)
    candles = FilesSource(FIXTURES).fetch("UNITTEST-BTC", *day_bounds(day))
    valid, report = validate_candles(candles, "UNITTEST-BTC", day, max_invalid_share=0.0)
    quality = day_quality(valid["minute"], day)
    assert valid.height == 1403 and report.rows_invalid == 0
    assert quality.gap_count > 0 and quality.coverage == pytest.approx(1403 / 1440)


@pytest.mark.parametrize("suffix", [".parquet", ".feather", ".csv"])
def test_formats_round_trip(tmp_path: Path, suffix: str) -> None:
    original = read_candle_file(FIXTURES / "UNITTEST_BTC-1m.csv")
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
