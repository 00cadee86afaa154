"""The ccxt source, with the real ccxt library, against the loopback Coinbase server."""

from __future__ import annotations

import math
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta

import polars as pl
import pytest
from dagster._utils.error import serializable_error_info_from_exc_info
from polars.testing import assert_frame_equal

from trading_assets.market.candles import CANDLE_SCHEMA, day_bounds, day_quality, validate_candles
from trading_assets.market.ccxt_source import CcxtCandleSource, ExchangeFetchError
from trading_assets.settings import load_settings
from trading_assets_bench.exchange import measure_exchange_rate
from trading_assets_bench.harness.loopback_exchange import Fault, LoopbackExchange, PageFault

DAY = date(2024, 3, 5)
START, END = day_bounds(DAY)
SYMBOL = "BTC-USD"


def ramp_candles(symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
    """Deterministic valid candles for every minute of [start, end); prices rise by 0.25 a minute."""
    minutes = pl.datetime_range(start, end, "1m", closed="left", time_unit="us", time_zone="UTC", eager=True)
    index = ((minutes - START).dt.total_minutes()).cast(pl.Float64)
    base = 100.0 + 1000.0 * (symbol != SYMBOL) + 0.25 * index
    return pl.DataFrame(
        {"minute": minutes, "open": base, "high": base + 1.5, "low": base - 1.0, "close": base + 0.5},
    ).with_columns(volume=1.0 + index / 7)


def at(minute: int) -> datetime:
    return START + timedelta(minutes=minute)


@contextmanager
def source_for(server: LoopbackExchange, **overrides: object) -> Iterator[CcxtCandleSource]:
    options: dict = {"api_url": server.url, "rate_limit_ms": 0, "backoff_ms": 5, "timeout_ms": 2000}
    source = CcxtCandleSource(**(options | overrides))
    try:
        yield source
    finally:
        source.close()


def test_a_full_day_pages_forward_in_windows_of_at_most_300_candles() -> None:
    with LoopbackExchange(ramp_candles) as server, source_for(server) as source:
        frame = source.fetch(SYMBOL, START, END)
        requests = server.candle_requests

    assert_frame_equal(frame, ramp_candles(SYMBOL, START, END).select(list(CANDLE_SCHEMA)))
    assert frame.schema == pl.Schema(CANDLE_SCHEMA)
    assert len(requests) == math.ceil(1440 / 300) == source.stats.requests
    starts = [int(r.query["start"]) for r in requests]
    ends = [int(r.query["end"]) for r in requests]
    assert starts[0] == START.timestamp() and starts == sorted(starts)
    assert starts[1:] == ends[:-1], "windows must be contiguous, paged forward"
    assert all(0 < end - start <= 300 * 60 for start, end in zip(starts, ends, strict=True))
    assert ends[-1] == END.timestamp(), "the last page must not ask beyond the end"
    assert (source.stats.retries, source.stats.rows) == (0, 1440)


def test_a_range_not_aligned_to_pages_returns_exactly_start_to_end() -> None:
    start, end = at(10), at(10 + 301)
    with LoopbackExchange(ramp_candles) as server, source_for(server) as source:
        frame = source.fetch("ETH-USD", start, end)

    assert_frame_equal(frame, ramp_candles("ETH-USD", start, end))
    assert source.stats.requests == 2


def test_gaps_come_back_as_missing_minutes_and_every_page_span_is_logged() -> None:
    missing = {at(m) for m in [0, 17, 299, 300, *range(600, 1000), 1439]}
    with LoopbackExchange(ramp_candles, omit_minutes=missing) as server, source_for(server) as source:
        frame = source.fetch(SYMBOL, START, END)

    assert frame.height == 1440 - len(missing)
    assert missing.isdisjoint(frame["minute"].to_list())
    quality = day_quality(frame["minute"], DAY)
    assert (quality.gap_count, quality.longest_gap_minutes) == (5, 400)
    log = source.last_fetch
    spans = [(p.start, p.covered_end, p.rows, p.attempts) for p in log.pages]
    # Each page starts a minute after the last candle returned; a page that is empty or starts with a gap
    # is asked twice (the answers agree), then taken as the exchange's gap; an empty one covers its window.
    assert spans == [
        (at(0), at(299), 297, 2),
        (at(299), at(599), 298, 2),
        (at(599), at(600), 1, 1),
        (at(600), at(900), 0, 2),
        (at(900), at(1200), 200, 2),
        (at(1200), at(1439), 239, 1),
        (at(1439), at(1440), 0, 2),
    ]
    assert log.uncovered_minutes(START, END) == 0 and log.empty_pages == 2
    assert source.stats.requests == len(server.candle_requests) == 12


@pytest.mark.parametrize("fault", ["rate_limited", "server_errors"])
def test_429_and_500_are_retried_then_succeed(fault: str) -> None:
    with LoopbackExchange(ramp_candles, **{fault: 2}) as server, source_for(server) as source:
        frame = source.fetch(SYMBOL, START, END)
        statuses = [r.status for r in server.candle_requests]

    failed = 429 if fault == "rate_limited" else 500
    assert statuses == [failed, failed] + [200] * 5
    assert (source.stats.requests, source.stats.retries) == (7, 2)
    assert_frame_equal(frame, ramp_candles(SYMBOL, START, END))


def test_retries_back_off_exponentially() -> None:
    with (
        LoopbackExchange(ramp_candles, server_errors=3) as server,
        source_for(server, backoff_ms=40) as source,
    ):
        source.fetch(SYMBOL, START, at(60))
        times = [r.at for r in server.candle_requests]

    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert gaps[0] >= 0.04 and gaps[1] >= 0.08 and gaps[2] >= 0.16


def test_running_out_of_retries_raises_an_error_naming_exchange_symbol_and_range() -> None:
    with (
        LoopbackExchange(ramp_candles, server_errors=10) as server,
        source_for(server, max_retries=2) as source,
        pytest.raises(ExchangeFetchError) as raised,
    ):
        source.fetch(SYMBOL, START, END)

    message = str(raised.value)
    assert "coinbase" in message and SYMBOL in message
    assert "2024-03-05T00:00:00+00:00" in message and "2024-03-06T00:00:00+00:00" in message
    assert "3 request(s)" in message
    assert source.stats.retries == 2


def test_a_client_error_is_not_retried() -> None:
    with LoopbackExchange(ramp_candles) as server, source_for(server) as source:
        server.fail_next(400)
        with pytest.raises(ExchangeFetchError, match="BadRequest"):
            source.fetch(SYMBOL, START, END)

    assert (source.stats.requests, source.stats.retries) == (1, 0)


def test_malformed_rows_are_counted_invalid_by_validation_and_never_kept() -> None:
    broken = [at(5), at(400), at(1000)]  # a non-numeric price, a missing volume, an empty high
    with LoopbackExchange(ramp_candles, malformed_minutes=broken) as server, source_for(server) as source:
        frame = source.fetch(SYMBOL, START, END)

    assert frame.height == 1440
    valid, report = validate_candles(frame, SYMBOL, DAY, max_invalid_share=0.01)
    assert report.invalid_by_reason == {"null or NaN value": 3}
    assert valid.height == 1437
    assert set(broken).isdisjoint(valid["minute"].to_list())


def test_a_server_that_never_answers_fails_in_bounded_time_with_a_clear_error() -> None:
    began = time.monotonic()
    with (
        LoopbackExchange(ramp_candles, hang=True) as server,
        source_for(server, timeout_ms=300, max_retries=2) as source,
        pytest.raises(
            ExchangeFetchError, match=r"coinbase: fetching BTC-USD candles \[2024-03-05T00:00"
        ) as raised,
    ):
        source.fetch(SYMBOL, START, END)
    elapsed = time.monotonic() - began

    assert "RequestTimeout" in str(raised.value)
    assert source.stats.requests == 3
    assert 0.9 <= elapsed < 5.0


def test_the_rate_limit_is_honoured() -> None:
    rate_limit_ms = 50
    limits = {"rate_limit_ms": rate_limit_ms, "page_limit": 30}
    with LoopbackExchange(ramp_candles) as server, source_for(server, **limits) as source:
        source.fetch(SYMBOL, START, at(1))  # warm up: one-time set-up must not shorten the measured span
        source.fetch(SYMBOL, START, at(300))
        requests = server.candle_requests[1:]
        rate = (len(requests) - 1) / (requests[-1].at - requests[0].at)

    allowed = 1000 / rate_limit_ms
    assert len(requests) == 10
    assert rate <= allowed * 1.05
    assert rate >= allowed * 0.5, "throttled far below the allowed rate"


def test_api_url_works_for_coinbase_exchange_too() -> None:
    with (
        LoopbackExchange(ramp_candles) as server,
        source_for(server, exchange_id="coinbaseexchange") as source,
    ):
        frame = source.fetch(SYMBOL, START, END)
        paths = {r.path for r in server.requests}

    assert_frame_equal(frame, ramp_candles(SYMBOL, START, END))
    assert paths == {"/products/BTC-USD/candles"}
    assert source.stats.requests == 5


def test_credentials_come_from_the_settings_and_stay_out_of_errors_and_reprs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TA_CCXT_API_KEY", "key-7f3a9")
    monkeypatch.setenv("TA_CCXT_SECRET", "secret-b41c0")
    settings = load_settings()
    options = settings.source_options
    with (
        LoopbackExchange(ramp_candles, server_errors=5) as server,
        source_for(server, max_retries=0, credentials=options.ccxt_credentials()) as source,
        pytest.raises(ExchangeFetchError) as raised,
    ):
        source.fetch(SYMBOL, START, END)

    assert (source._exchange.apiKey, source._exchange.secret) == ("key-7f3a9", "secret-b41c0")
    shown = [str(raised.value), repr(settings), repr(options)]
    assert not [text for text in shown if "key-7f3a9" in text or "secret-b41c0" in text]


def test_the_loopback_server_shuts_down_cleanly_even_with_a_hanging_request() -> None:
    before = set(threading.enumerate())
    with LoopbackExchange(ramp_candles, hang=True) as server:
        port = int(server.url.rsplit(":", 1)[1])
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(b"GET /products/BTC-USD/candles HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 2
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.01)
    client.close()

    assert len(server.requests) == 1
    assert set(threading.enumerate()) <= before
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_the_source_accepts_naive_datetimes_as_utc() -> None:
    with LoopbackExchange(ramp_candles) as server, source_for(server) as source:
        frame = source.fetch(SYMBOL, START.replace(tzinfo=None), at(30).replace(tzinfo=None))

    assert frame["minute"].to_list() == [at(m) for m in range(30)]
    assert frame["minute"].dtype == pl.Datetime("us", "UTC")


def test_the_exchange_benchmark_reports_an_achieved_rate_within_the_limit() -> None:
    result = measure_exchange_rate(requests=5, rate_limit_ms=20)

    assert (result["exchange_requests"], result["exchange_rows"]) == (5, 1500)
    assert result["exchange_rate_limit_per_s"] == 50
    assert 0 < result["exchange_requests_per_s"] <= 50 * 1.05


def test_a_password_inside_the_api_url_stays_out_of_errors() -> None:
    with LoopbackExchange(ramp_candles, server_errors=5) as server:
        with_password = server.url.replace("http://", "http://trader:hunter2@")
        with (
            source_for(server, api_url=with_password, max_retries=0) as source,
            pytest.raises(ExchangeFetchError) as raised,
        ):
            source.fetch(SYMBOL, START, END)

    # Not in the message, nor in the chained ccxt/requests errors that quote the URL (as Dagster records them).
    recorded = serializable_error_info_from_exc_info((raised.type, raised.value, raised.tb))
    assert "hunter2" not in recorded.to_string()
    assert "hunter2" not in "".join(traceback.format_exception(raised.value))


# --- both page conventions: an exchange that includes the candle at the request's end, and one that does not


def day_without(missing: set[datetime]) -> pl.DataFrame:
    return ramp_candles(SYMBOL, START, END).filter(~pl.col("minute").is_in(list(missing)))


def test_the_loopback_exchange_answers_the_end_candle_only_in_end_inclusive_mode() -> None:
    import json
    from urllib.request import urlopen

    query = f"granularity=ONE_MINUTE&start={int(at(10).timestamp())}&end={int(at(20).timestamp())}"
    answers = {}
    for inclusive in (False, True):
        with LoopbackExchange(ramp_candles, end_inclusive=inclusive) as server:
            url = f"{server.url}/api/v3/brokerage/market/products/{SYMBOL}/candles?{query}"
            with urlopen(url) as answer:
                answers[inclusive] = [int(c["start"]) for c in json.load(answer)["candles"]]

    assert sorted(answers[False]) == [int(at(m).timestamp()) for m in range(10, 20)]
    assert sorted(answers[True]) == [int(at(m).timestamp()) for m in range(10, 21)]


GAPS = {
    "at a page's start": {300},
    "in a page's middle": {150},
    "at a page's end": {299},
    "at the day's last minute": {1439},
    "all of them and a long hole": {0, 150, 299, 300, *range(590, 700), 1439},
}


@pytest.mark.parametrize("end_inclusive", [False, True], ids=["end-exclusive", "end-inclusive"])
@pytest.mark.parametrize("gap", list(GAPS), ids=list(GAPS))
def test_gaps_give_the_exact_day_whether_or_not_the_exchange_includes_the_end_candle(
    gap: str, end_inclusive: bool
) -> None:
    missing = {at(m) for m in GAPS[gap]}
    exchange = LoopbackExchange(ramp_candles, omit_minutes=missing, end_inclusive=end_inclusive)
    with exchange as server, source_for(server, max_retries=2) as source:
        frame = source.fetch(SYMBOL, START, END)

    assert_frame_equal(frame, day_without(missing))
    log = source.last_fetch
    assert log.uncovered_minutes(START, END) == 0
    # the exchange sent the candle at a page's end (one past the window) and it was dropped and counted
    assert (log.rows_outside_window > 0) is end_inclusive


@pytest.mark.parametrize("end_inclusive", [False, True], ids=["end-exclusive", "end-inclusive"])
def test_duplicated_and_shuffled_pages_with_gaps_give_the_exact_day_in_both_conventions(
    end_inclusive: bool,
) -> None:
    missing = {at(m) for m in GAPS["all of them and a long hole"]}
    faults = [
        PageFault(Fault.DUPLICATE_ROW, range(0, 10**12, 2)),
        PageFault(Fault.SHUFFLED_ROWS, range(1, 10**12, 2)),
    ]
    exchange = LoopbackExchange(
        ramp_candles, omit_minutes=missing, faults=faults, end_inclusive=end_inclusive
    )
    with exchange as server, source_for(server, max_retries=2) as source:
        frame = source.fetch(SYMBOL, START, END)

    # a duplicated candle is an identical copy: kept once when the day is stored (`validate_candles`)
    assert_frame_equal(frame.unique("minute", keep="first", maintain_order=True), day_without(missing))
    assert frame.height > frame["minute"].n_unique(), "the duplicates must have reached the source"
    assert source.last_fetch.uncovered_minutes(START, END) == 0


@pytest.mark.parametrize("end_inclusive", [False, True], ids=["end-exclusive", "end-inclusive"])
def test_an_exchange_that_answers_empty_every_second_request_still_gives_the_exact_day(
    end_inclusive: bool,
) -> None:
    missing = {at(m) for m in GAPS["all of them and a long hole"]}
    faults = [PageFault(Fault.EMPTY_PAGE, range(1, 10**12, 2))]
    exchange = LoopbackExchange(
        ramp_candles, omit_minutes=missing, faults=faults, end_inclusive=end_inclusive
    )
    with exchange as server, source_for(server, max_retries=3) as source:
        frame = source.fetch(SYMBOL, START, END)

    assert_frame_equal(frame, day_without(missing))
    assert source.last_fetch.uncovered_minutes(START, END) == 0


def test_a_stray_candle_outside_the_window_is_dropped_and_counted_not_fatal() -> None:
    """An answer that starts at the window's first minute but also holds a candle two minutes past the
    window (as ccxt returns it for an exchange it does not filter): the page is taken, the stray counted."""
    with LoopbackExchange(ramp_candles) as server, source_for(server, max_retries=0) as source:
        fetch_ohlcv = source._exchange.fetch_ohlcv

        def with_a_stray(symbol: str, timeframe: str, since: int, limit: int) -> list[list]:
            rows = fetch_ohlcv(symbol, timeframe, since=since, limit=limit)
            return [*rows, [since + (limit + 2) * 60_000, 1.0, 2.0, 0.5, 1.5, 3.0]]

        source._exchange.fetch_ohlcv = with_a_stray
        frame = source.fetch(SYMBOL, START, END)

    assert_frame_equal(frame, ramp_candles(SYMBOL, START, END))
    log = source.last_fetch
    assert (log.rows_outside_window, log.retries, len(log.pages)) == (5, 0, 5)


@pytest.mark.parametrize("fault", [Fault.PREVIOUS_DAY, Fault.SHIFTED_HOUR])
@pytest.mark.parametrize("end_inclusive", [False, True], ids=["end-exclusive", "end-inclusive"])
def test_misplaced_answers_are_still_refused_when_they_never_go_away(
    fault: Fault, end_inclusive: bool
) -> None:
    exchange = LoopbackExchange(ramp_candles, faults=[PageFault(fault)], end_inclusive=end_inclusive)
    with (
        exchange as server,
        source_for(server, max_retries=2) as source,
        pytest.raises(
            ExchangeFetchError, match=r"after 3 request\(s\): SuspectAnswer: .* lie (outside|before)"
        ),
    ):
        source.fetch(SYMBOL, START, END)
