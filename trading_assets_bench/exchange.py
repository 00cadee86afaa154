"""Benchmark: the request rate the ccxt source achieves against the loopback exchange, versus its limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from trading_assets.market.ccxt_source import MAX_PAGE_LIMIT, CcxtCandleSource
from trading_assets.market.synthetic import SyntheticSource
from trading_assets_bench.harness.loopback_exchange import LoopbackExchange

BENCH_START = datetime(2024, 1, 1, tzinfo=UTC)
BENCH_SYMBOL = "BTC-USD"


def measure_exchange_rate(requests: int = 20, rate_limit_ms: int = 100) -> dict[str, float | int]:
    """Fetch `requests` full pages of synthetic candles through real ccxt over loopback HTTP.

    The achieved rate is measured by the server: candle requests minus one over the time from the first
    to the last, so it is directly comparable with the allowed `1000 / rate_limit_ms` requests per second.
    """
    if requests < 2 or rate_limit_ms <= 0:
        raise ValueError(f"need requests >= 2 and rate_limit_ms > 0, got {requests} and {rate_limit_ms}")
    end = BENCH_START + timedelta(minutes=requests * MAX_PAGE_LIMIT)
    with LoopbackExchange(SyntheticSource().fetch) as server:
        source = CcxtCandleSource(api_url=server.url, rate_limit_ms=rate_limit_ms, page_limit=MAX_PAGE_LIMIT)
        try:
            frame = source.fetch(BENCH_SYMBOL, BENCH_START, end)
        finally:
            source.close()
        candle_requests = len(server.candle_requests)
        achieved = server.candle_requests_per_second()
    return {
        "exchange_requests": candle_requests,
        "exchange_requests_per_s": achieved,
        "exchange_rate_limit_per_s": 1000 / rate_limit_ms,
        "exchange_rows": frame.height,
    }
