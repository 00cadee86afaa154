"""Candles from a real exchange through ccxt: paged forward, throttled, retried, never a cryptic crash.

Paging. ccxt's own `paginate=True` walks back from now and ignores `since`, so the source pages forward
itself: each request asks at most `page_limit` (<= 300) one-minute candles from `since`, and the next page
starts one minute after the last candle *returned*, never after the window asked for (ccxt trims a page to
`limit` rows, so a duplicate in an answer makes the page end a minute early). Only a page the exchange
answered empty advances by its window; its minutes are a gap the exchange reported. Each fetch leaves a
`FetchLog` in `last_fetch`: the span every page covered, so gaps are traceable to where they come from.

Page conventions. Exchanges differ in whether a candle request's end is included: ccxt's `coinbase` asks
Advanced Trade for `start=since, end=since + limit minutes`, and an exchange that includes the end sends the
candle at `end` as well. Without a gap ccxt trims the answer to `limit` rows and that candle goes; with a
gap in the page it stays. So the source accepts both conventions: any candle outside the window asked for
is dropped and counted (`FetchLog.rows_outside_window`), never an error by itself, and the next page asks
for it again.

Faults. Network errors, timeouts, 429 and 5xx answers are retried with exponential backoff (the HTTP status
decides where ccxt maps an answer to a non-network error class, as it does for Coinbase's JSON 5xx bodies).
So are answers that cannot be right (`SuspectAnswer`): a 200 body that is not JSON or not candles (ccxt
quietly returns `[]` for it), and a page that does not start at its first minute while the answer held
misplaced candles (before the window, e.g. the previous day, which ccxt drops; or after it beyond the one
candle at exactly its end, e.g. a window shifted by an hour). A page whose candles start at its first
minute is taken as it is. A page that is empty or starts with a gap, with nothing misplaced, is asked
again until an answer repeats an earlier one and misses no candle that any earlier answer held (identical
copies count once), and only then taken as the exchange's own gap: one extra request per gap, and an
exchange that answers empty every second request is still read right. A wrong answer repeated
identically cannot be told from the truth (e.g. every page shifted by exactly one minute looks like an
end-inclusive exchange with a gap at each page's first minute). Anything
else, or running out of retries, raises `ExchangeFetchError` naming exchange, symbol, range and window.
Values the exchange sends malformed (non-numeric, missing) come back as nulls, so the project's
`validate_candles` counts them as invalid; shuffled answers are sorted (by ccxt, and again here).

Credentials come only from the environment (`TA_CCXT_API_KEY`, `TA_CCXT_SECRET`, `TA_CCXT_PASSWORD`);
public candle endpoints need none. They are handed to ccxt and never logged or put into messages. The API
URL may carry `user:password@`: ccxt quotes the URL it asked in its error messages and chains requests'
errors that do too, for candles and for `load_markets` (which every exchange but the two Coinbase ones
calls). Every ccxt call is therefore made inside the redaction: a failure leaves as an `ExchangeFetchError`
whose message is redacted (`trading_assets.urls.redact`: any URL's user-info, and the URL's password and
the credentials wherever they appear) and which chains nothing (no `__cause__`, no `__context__`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from urllib.parse import urlsplit

import ccxt
import polars as pl
import requests

from trading_assets.market.candles import FetchLog, PageSpan, conform, empty_candles
from trading_assets.retry import retry
from trading_assets.urls import redact, url_secrets

T = TypeVar("T")

MINUTE_MS = 60_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_PAGE_LIMIT = 300
#: Exchanges whose market id is known from the symbol, so no `load_markets` round trip is needed.
_MARKET_ID_FORMATS = {"coinbase": "{base}-{quote}", "coinbaseexchange": "{base}-{quote}"}
_OHLCV_SCHEMA = {
    "timestamp": pl.Int64,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Float64,
}


class ExchangeFetchError(RuntimeError):
    """The exchange could not deliver the candles of a range (after retries where retrying made sense)."""


class SuspectAnswer(Exception):
    """A 200 answer that cannot be the candles asked for (malformed, misplaced): re-asked, then a failure."""


class _AskAgain(SuspectAnswer):
    """An empty page or one starting with a gap that no earlier answer confirms yet: asked again."""


@dataclass
class FetchStats:
    """Counters over the life of one source, for run metadata and benchmarks."""

    requests: int = 0
    retries: int = 0
    rows: int = 0
    seconds: float = 0.0


class CcxtCandleSource:
    """`CandleSource` backed by a ccxt exchange (Coinbase Advanced Trade by default).

    `api_url` replaces the origin of every REST URL of the exchange (a proxy or the loopback test server).
    `rate_limit_ms=None` keeps ccxt's own per-exchange throttle; a number replaces it by at most one
    request per `rate_limit_ms`, retries included. `credentials`: ccxt's apiKey / secret / password, only
    for an exchange that wants them (never logged). Not thread-safe: use one instance per thread.
    """

    def __init__(
        self,
        exchange_id: str = "coinbase",
        api_url: str | None = None,
        timeout_ms: int = 10_000,
        max_retries: int = 5,
        rate_limit_ms: int | None = None,
        page_limit: int = MAX_PAGE_LIMIT,
        backoff_ms: int = 500,
        max_backoff_ms: int = 30_000,
        credentials: dict[str, str] | None = None,
    ) -> None:
        if not 1 <= page_limit <= MAX_PAGE_LIMIT:
            raise ValueError(f"page_limit must be within 1..{MAX_PAGE_LIMIT}, got {page_limit}")
        self.name = f"ccxt:{exchange_id}"
        self.exchange_id = exchange_id
        self.max_retries = max_retries
        self.page_limit = page_limit
        self.backoff_ms = backoff_ms
        self.max_backoff_ms = max_backoff_ms
        self.stats = FetchStats()
        #: The pages of the latest `fetch` (also when it raised).
        self.last_fetch = FetchLog()
        self._min_interval_s = 0.0 if rate_limit_ms is None else rate_limit_ms / 1000
        self._last_request_at: float | None = None
        #: Kept out of every message besides the URL redaction: the URL's password and the credentials.
        self._secrets = (*url_secrets(api_url), *(credentials or {}).values())
        self._exchange = _make_exchange(
            exchange_id, api_url, timeout_ms, rate_limit_ms is None, credentials or {}
        )
        # ccxt logs every request and answer with its full URL at DEBUG level: through the redaction
        self._exchange.logger = _RedactingLogger(logging.getLogger("ccxt.base.exchange"), self._secrets)

    def fetch(self, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
        started = time.monotonic()
        start_ms, end_ms = _to_ms(start), _to_ms(end)
        what = f"{symbol} candles [{_iso(start_ms)}, {_iso(end_ms)})"
        self.last_fetch = FetchLog()
        try:
            rows = self._fetch_rows(symbol, start_ms, end_ms, what)
        finally:
            self.stats.seconds += time.monotonic() - started
            self.stats.retries += self.last_fetch.retries
        self.stats.rows += len(rows)
        return _to_frame(rows)

    def close(self) -> None:
        """Close the HTTP session (idempotent)."""
        self._exchange.close()

    def _fetch_rows(self, symbol: str, start_ms: int, end_ms: int, what: str) -> list[list]:
        market = self._market_symbol(symbol, what)
        rows: list[list] = []
        since = start_ms
        while since < end_ms:
            limit = min(self.page_limit, math.ceil((end_ms - since) / MINUTE_MS))
            page, attempts = self._page(market, since, limit, what)
            covered_end = page[-1][0] + MINUTE_MS if page else since + limit * MINUTE_MS
            self.last_fetch.pages.append(
                PageSpan(_dt(since), _dt(since + limit * MINUTE_MS), _dt(covered_end), len(page), attempts)
            )
            rows.extend(page)
            since = covered_end
        return rows

    def _page(self, market: str, since: int, limit: int, what: str) -> tuple[list[list], int]:
        """One page of checked ccxt rows within [since, since + limit minutes), oldest first, and the
        number of requests it took; `what` names symbol and range for the error.

        Candles outside the window are dropped and counted. A page whose candles start at `since` is taken.
        One that is empty or starts later (a gap) is suspect when the answer also held misplaced candles (any
        outside the window but the one at exactly its end, which exchanges that include the end send), and
        otherwise asked again until an answer repeats an earlier one and misses no candle any earlier answer
        held (`_agrees`): an exchange that answers empty or short now and then is not taken at its word.
        """
        window = f"page [{_iso(since)}, {_iso(since + limit * MINUTE_MS)})"
        answers: list[list[list]] = []  # the earlier answers that were empty or started with a gap

        def request(attempt: int) -> tuple[list[list], int]:
            self.stats.requests += 1
            rows = self._exchange.fetch_ohlcv(market, "1m", since=since, limit=limit)
            page, misplaced = self._checked(rows, since, limit, window)
            if page and page[0][0] == since:
                return page, attempt + 1
            if misplaced:
                raise SuspectAnswer(f"{misplaced}, and none at its first minute")
            if _agrees(page, answers):
                return page, attempt + 1
            answers.append(page)
            if attempt >= self.max_retries:
                raise SuspectAnswer("answers starting with a gap kept changing")
            raise _AskAgain()

        return self._retried(request, what, f"at {window}")

    def _load_markets(self, what: str) -> dict:
        """ccxt's `load_markets`, retried like a page (it asks the exchange, through the same URL)."""
        return self._retried(lambda _attempt: self._exchange.load_markets(), what, "loading the markets")

    def _retried(self, request: Callable[[int], T], what: str, where: str) -> T:
        """`request(attempt)` throttled, and retried with exponential backoff while the failure is
        retryable (`_is_retryable`), at most `max_retries` times; then a redacted `ExchangeFetchError`
        (`_failure`), raised outside any `except` block."""

        def throttled(attempt: int) -> T:
            self._throttle()
            return request(attempt)

        def count_retry() -> None:
            self.last_fetch.retries += 1

        return retry(
            throttled,
            wait=lambda n: min(self.backoff_ms * 2**n, self.max_backoff_ms) / 1000,
            retryable=_is_retryable,
            attempts=self.max_retries + 1,
            give_up=lambda error, calls: self._failure(what, f"{where} after {calls} request(s)", error),
            on_retry=count_retry,
        )

    def _failure(self, what: str, where: str, error: BaseException) -> ExchangeFetchError:
        """The one-line error for a request that failed for good. ccxt's messages quote the URL they asked
        (with any user:password@ of `api_url`) and its errors chain requests' errors that do too: only the
        redacted message is kept, never the error itself; raise the result outside the `except` block, so
        that it has no `__context__` either (Dagster records the whole chain in the event log)."""
        return ExchangeFetchError(
            redact(
                f"{self.exchange_id}: fetching {what} failed {where}: {type(error).__name__}: {error}",
                self._secrets,
            )
        )

    def _checked(
        self, rows: list[list], since: int, limit: int, window: str
    ) -> tuple[list[list], str | None]:
        """The rows of [since, since + limit minutes) sorted by time, and what was misplaced in the answer
        (None when nothing was, or only the candle at exactly the window's end); `SuspectAnswer` for a body
        that is not candles. Every candle of the answer outside the window is counted in `last_fetch`."""
        answered = _answer_rows(self._exchange.last_json_response)
        if answered is None:
            body = str(self._exchange.last_http_response or "")[:60]
            raise SuspectAnswer(f"the 200 answer is not a JSON list of candles (body starts {body!r})")
        window_end = since + limit * MINUTE_MS
        inside = sorted((row for row in rows if since <= row[0] < window_end), key=lambda row: row[0])
        stray = sorted(row[0] for row in rows if not since <= row[0] < window_end)
        # ccxt drops candles before `since` or without a timestamp; when it returned fewer than `limit`, it
        # trimmed none, so every candle missing from what it returned is one of those
        dropped = answered - len(rows) if answered > len(rows) and len(rows) < limit else 0
        self.last_fetch.rows_outside_window += len(stray) + dropped
        misplaced = [timestamp for timestamp in stray if timestamp != window_end]
        problems = []
        if misplaced:
            problems.append(
                f"{len(misplaced)} of {len(rows)} candles lie outside {window} "
                f"({_iso(misplaced[0])} .. {_iso(misplaced[-1])})"
            )
        if dropped:
            problems.append(f"{dropped} of {answered} candles of the answer lie before {window}")
        return inside, "; ".join(problems) or None

    def _throttle(self) -> None:
        """At most one request per `rate_limit_ms` when one is given (ccxt's throttle is then off): ccxt's own
        spaces requests by `rateLimit` x each endpoint's cost (3 for Coinbase's candles), not per request."""
        if self._last_request_at is not None:
            wait = self._min_interval_s - (time.monotonic() - self._last_request_at)
            if wait > 0:
                time.sleep(wait)
        self._last_request_at = time.monotonic()

    def _market_symbol(self, symbol: str, what: str) -> str:
        """The ccxt symbol for `symbol` ("BTC-USD" or "BTC/USD").

        For exchanges in `_MARKET_ID_FORMATS` a minimal market is registered instead of loading them all;
        the others load the exchange's markets (retried, and failing with a redacted `ExchangeFetchError`).
        """
        unified = symbol.replace("-", "/")
        id_format = _MARKET_ID_FORMATS.get(self.exchange_id)
        if id_format is None:
            markets = self._load_markets(what)
            return unified if unified in markets else symbol
        if self._exchange.markets is None or unified not in self._exchange.markets:
            base, _, quote = unified.partition("/")
            known = list((self._exchange.markets or {}).values())
            self._exchange.set_markets([*known, _minimal_market(id_format, base, quote)])
        return unified


class _RedactingLogger(logging.LoggerAdapter):
    """ccxt's logger, with every message redacted (URL user-info and the given secrets) before it is
    formatted into any handler."""

    def __init__(self, logger: logging.Logger, secrets: tuple[str, ...]) -> None:
        super().__init__(logger, {})
        self.secrets = secrets

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            self.logger.log(level, "%s", redact(text, self.secrets), **kwargs)  # type: ignore[arg-type]


def _make_exchange(
    exchange_id: str, api_url: str | None, timeout_ms: int, ccxt_throttle: bool, credentials: dict[str, str]
) -> ccxt.Exchange:
    exchange_class = getattr(ccxt, exchange_id, None)
    if exchange_class is None:
        raise ValueError(f"unknown ccxt exchange id {exchange_id!r}")
    exchange = exchange_class({"timeout": timeout_ms, "enableRateLimit": ccxt_throttle, **credentials})
    exchange.enableLastJsonResponse = True  # tells a non-JSON 200 body (ccxt returns []) from no candles
    if api_url:
        exchange.urls["api"] = _rebase_urls(exchange.urls["api"], api_url.rstrip("/"))
    return exchange


def _rebase_urls(urls: object, base: str) -> object:
    """Replace the origin (scheme and host) of every URL in ccxt's `urls["api"]`, keeping paths."""
    if isinstance(urls, dict):
        return {key: _rebase_urls(value, base) for key, value in urls.items()}
    if isinstance(urls, str):
        return base + urlsplit(urls).path
    return urls


def _minimal_market(id_format: str, base: str, quote: str) -> dict:
    return {
        "id": id_format.format(base=base, quote=quote),
        "symbol": f"{base}/{quote}",
        "base": base,
        "quote": quote,
        "baseId": base,
        "quoteId": quote,
        "type": "spot",
        "spot": True,
        "active": True,
    }


def _agrees(page: list[list], earlier: list[list[list]]) -> bool:
    """True when `page` (an answer that is empty or starts with a gap) is the same as one of the `earlier`
    answers and holds every minute any of them held. Identical copies of a candle count once (ccxt trims a
    page with a duplicate a candle short, but not one that has a gap)."""
    distinct = _distinct(page)
    minutes = {row[0] for row in distinct}
    seen = [_distinct(answer) for answer in earlier]
    return distinct in seen and all(row[0] in minutes for answer in seen for row in answer)


def _distinct(page: list[list]) -> list[tuple]:
    return list(dict.fromkeys(tuple(row) for row in page))


def _answer_rows(answer: object) -> int | None:
    """Candles in a parsed JSON answer: a list (Coinbase Exchange) or an object holding one (Advanced
    Trade's `{"candles": [...]}`); None when the body was not JSON or holds no list."""
    if isinstance(answer, list):
        return len(answer)
    if isinstance(answer, dict):
        lists = [value for value in answer.values() if isinstance(value, list)]
        return len(lists[0]) if len(lists) == 1 else None
    return None


def _is_retryable(error: BaseException) -> bool:
    """Suspect answers, 429, 408 and 5xx answers and network failures; the HTTP status wins over ccxt's
    error class. Anything else (another client error, a bug) is not retried."""
    if isinstance(error, SuspectAnswer):
        return True
    status = _http_status(error)
    if status is not None:
        return status in (408, 429) or status >= 500
    return isinstance(error, ccxt.NetworkError)


def _http_status(error: BaseException) -> int | None:
    """The HTTP status of the answer behind a ccxt error (ccxt raises it while handling requests' HTTPError)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, requests.HTTPError) and seen.response is not None:
            return seen.response.status_code
        seen = seen.__cause__ or seen.__context__
    return None


def _to_frame(rows: list[list]) -> pl.DataFrame:
    if not rows:
        return empty_candles()
    frame = pl.DataFrame(rows, schema=_OHLCV_SCHEMA, orient="row", strict=False)
    return conform(frame.with_columns(pl.from_epoch("timestamp", time_unit="ms").alias("minute")))


def _to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _iso(ms: int) -> str:
    return _dt(ms).isoformat()
