"""Real BTC/USDT candles for the feature tests.

`fixtures/btc_usdt_1m_2026-03-24_3d.parquet` holds 3 UTC days (2026-03-24 to 2026-03-26, 4,320 minutes,
no gaps) copied from ../shared/data/real-1m/binance_2026-03_paparocketeer-freqtrade-bot/BTC_USDT-1m.feather
(market data (c) Binance, for research and test use), so these tests always run.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "btc_usdt_1m_2026-03-24_3d.parquet"
FIRST_DAY = date(2026, 3, 24)
SHARED_BTC = (
    Path(__file__).resolve().parents[3]
    / "shared/data/real-1m/binance_2026-03_paparocketeer-freqtrade-bot/BTC_USDT-1m.feather"
)


@pytest.fixture(scope="session")
def btc_candles() -> pl.DataFrame:
    """Candle frame (minute, open, high, low, close, volume) of the 3 fixture days."""
    return pl.read_parquet(FIXTURE)
