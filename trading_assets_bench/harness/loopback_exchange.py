"""A loopback HTTP server that answers like Coinbase's public candle endpoints, with injectable faults.

It speaks the two protocols ccxt uses for Coinbase, so the real ccxt client can be tested and benchmarked
offline (point it here with `CcxtCandleSource(api_url=server.url)`):

- Advanced Trade (ccxt `coinbase`): `GET /api/v3/brokerage/market/products/{PRODUCT}/candles?granularity=
  ONE_MINUTE&start=SEC&end=SEC` answers `{"candles": [{"start": "SEC", "low": "..", ...}]}` for
  [start, end), newest first; asking for more than 350 candles is a 400 `INVALID_ARGUMENT`, like Coinbase.
  With `end_inclusive=True` it answers [start, end] instead, as an exchange that includes the candle at the
  request's end does: ccxt asks `end = since + limit minutes`, so a full page gets `limit + 1` candles
  (ccxt trims the last) and a page with a gap keeps the candle at `end`, one minute past the window asked.
- Exchange (ccxt `coinbaseexchange`): `GET /products/{PRODUCT}/candles?granularity=60&start=ISO&end=ISO`
  answers `[[time_s, low, high, open, close, volume], ...]` for [start, end] (end inclusive, as ccxt
  asks), newest first, at most 300 rows.

Candles come from `candle_fn(product, start, end)`, any candle source's `fetch`. Faults apply to candle
requests only: omitted minutes (gaps), malformed rows, N answers of 429 or 500 before success, no
answer at all (`hang`), and `PageFault`s: the answers real exchanges give on a bad day (a 200 with a
truncated JSON or an HTML body, an empty page, a duplicated or shuffled candle, the candles of the
previous day or of a window shifted by an hour), each on the candle requests it names by their ordinal.
Every request is recorded with its time, so tests can measure the request rate.
Market listings are not served (ccxt's `load_markets` gets a 404): clients set their markets themselves.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

import polars as pl

CandleFn = Callable[[str, datetime, datetime], pl.DataFrame]

ADVANCED_TRADE_MAX_CANDLES = 350
EXCHANGE_MAX_CANDLES = 300
_POLL_INTERVAL_S = 0.02  # how soon `stop()` is noticed by the serving loop
_ADVANCED_CANDLES = re.compile(r"^/api/v3/brokerage/market/products/(?P<product>[^/]+)/candles$")
_EXCHANGE_CANDLES = re.compile(r"^/products/(?P<product>[^/]+)/candles$")
_FIELDS = ("open", "high", "low", "close", "volume")
#: How malformed rows are spoiled, in turn: a non-numeric price, a missing field, an empty value.
_MALFORMATIONS: tuple[tuple[str, str | None], ...] = (
    ("open", "not-a-number"),
    ("volume", None),
    ("high", ""),
)


class Fault(StrEnum):
    """What a faulty answer to a candle request looks like (all with status 200)."""

    MALFORMED_JSON = "malformed JSON"  # the body is cut off half-way: not JSON
    HTML_BODY = "HTML body"  # a maintenance page instead of JSON
    EMPTY_PAGE = "empty page"  # valid JSON without candles for a window that has them
    DUPLICATE_ROW = "duplicate row"  # one candle sent twice with identical values
    SHUFFLED_ROWS = "shuffled rows"  # candles in random order
    PREVIOUS_DAY = "previous day"  # the candles of the same window a day earlier
    SHIFTED_HOUR = "shifted by 1 h"  # the candles of the window an hour later


#: Every candle request, for a fault that never goes away.
EVERY_REQUEST = range(10**12)


@dataclass(frozen=True)
class PageFault:
    """`fault` on the candle requests whose 0-based ordinal is in `requests` (e.g. `range(3, 10**12, 7)`:
    every 7th from the 4th; `EVERY_REQUEST`: all of them)."""

    fault: Fault
    requests: Container[int] = EVERY_REQUEST


@dataclass(frozen=True)
class RequestRecord:
    """One request the server received: when it arrived (`time.monotonic()`), what, and the answer's status."""

    at: float
    path: str
    query: dict[str, str]
    status: int | None


class LoopbackExchange:
    """Coinbase-like candle server on 127.0.0.1 in a background thread; use it as a context manager.

    `rate_limited` and `server_errors` are how many candle requests are answered 429 (then 500) before
    candle requests succeed; `fail_next` adds more while running. `hang=True` makes candle requests never
    answer (until the server stops). `omit_minutes` and `malformed_minutes` are UTC-aware datetimes.
    `end_inclusive=True`: the Advanced Trade endpoint answers [start, end] instead of [start, end) (the
    Exchange endpoint always answers [start, end]).
    """

    def __init__(
        self,
        candle_fn: CandleFn,
        *,
        omit_minutes: Iterable[datetime] = (),
        malformed_minutes: Iterable[datetime] = (),
        rate_limited: int = 0,
        server_errors: int = 0,
        hang: bool = False,
        faults: Iterable[PageFault] = (),
        end_inclusive: bool = False,
    ) -> None:
        self.candle_fn = candle_fn
        self.end_inclusive = end_inclusive
        self.faults = tuple(faults)
        self._candle_requests_seen = 0
        self.omit_minutes = frozenset(omit_minutes)
        self.malformed_minutes = sorted(malformed_minutes)
        self.hang = hang
        self._failures: list[int] = [429] * rate_limited + [500] * server_errors
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LoopbackExchange:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self._stopping.clear()
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        httpd.daemon_threads = False  # server_close() then joins every handler thread
        httpd.exchange = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, args=(_POLL_INTERVAL_S,), name="loopback-exchange", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Release hanging requests, stop serving, close the socket and join all threads."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = None
        self._thread = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("loopback exchange is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer the next `times` candle requests with HTTP `status` (after failures already queued)."""
        with self._lock:
            self._failures.extend([status] * times)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    @property
    def candle_requests(self) -> list[RequestRecord]:
        return [r for r in self.requests if r.path.endswith("/candles")]

    def candle_requests_per_second(self) -> float:
        """Achieved rate of candle requests: intervals between the first and last one over their span."""
        times = sorted(r.at for r in self.candle_requests)
        if len(times) < 2 or times[-1] == times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def _record(self, at: float, path: str, query: dict[str, str], status: int | None) -> None:
        with self._lock:
            self._records.append(RequestRecord(at, path, query, status))

    def _next_failure(self) -> int | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def _next_fault(self) -> tuple[int, Fault | None]:
        """This candle request's ordinal and the fault it gets, if any."""
        with self._lock:
            ordinal = self._candle_requests_seen
            self._candle_requests_seen += 1
        return ordinal, next((f.fault for f in self.faults if ordinal in f.requests), None)

    def _wait_until_stopped(self) -> None:
        self._stopping.wait()

    def _rows(
        self, product: str, start: datetime, end: datetime, fault: Fault | None = None, ordinal: int = 0
    ) -> list[dict[str, object]]:
        """Candles of [start, end) as Coinbase-style string dicts, oldest first, faults applied."""
        if fault is Fault.EMPTY_PAGE:
            return []
        shift = {Fault.PREVIOUS_DAY: -timedelta(days=1), Fault.SHIFTED_HOUR: timedelta(hours=1)}.get(
            fault, timedelta(0)
        )
        rows = self._clean_rows(product, start + shift, end + shift)
        if fault is Fault.DUPLICATE_ROW and rows:
            middle = len(rows) // 2
            rows.insert(middle, dict(rows[middle]))
        if fault is Fault.SHUFFLED_ROWS:
            random.Random(ordinal).shuffle(rows)
        return rows

    def _clean_rows(self, product: str, start: datetime, end: datetime) -> list[dict[str, object]]:
        frame = (
            self.candle_fn(product, start, end)
            .filter(
                pl.col("minute").is_between(start, end, closed="left")
                & ~pl.col("minute").is_in(list(self.omit_minutes))
            )
            .sort("minute")
        )
        rows = frame.select(
            pl.col("minute").dt.epoch("s").cast(pl.String).alias("start"),
            *[pl.col(name).cast(pl.Float64).cast(pl.String) for name in _FIELDS],
        ).to_dicts()
        if self.malformed_minutes:
            for candle, minute in zip(rows, frame["minute"], strict=True):
                if minute in self.malformed_minutes:
                    _malform(candle, self.malformed_minutes.index(minute))
        return rows


def _malform(candle: dict[str, object], index: int) -> None:
    field, value = _MALFORMATIONS[index % len(_MALFORMATIONS)]
    if value is None:
        del candle[field]
    else:
        candle[field] = value


def _epoch_seconds(raw: str) -> datetime:
    return datetime.fromtimestamp(int(raw), UTC)


def _iso(raw: str) -> datetime:
    return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)


class _Handler(BaseHTTPRequestHandler):
    server_version = "LoopbackExchange/1"

    @property
    def exchange(self) -> LoopbackExchange:
        return self.server.exchange  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the server records requests instead of printing them."""

    def do_GET(self) -> None:
        arrived = time.monotonic()
        parts = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        advanced = _ADVANCED_CANDLES.match(parts.path)
        match = advanced or _EXCHANGE_CANDLES.match(parts.path)
        if match is None:
            status, body = HTTPStatus.NOT_FOUND, {"error": "NOT_FOUND", "message": "unknown path"}
        elif self.exchange.hang:
            self.exchange._record(arrived, parts.path, query, None)
            self.exchange._wait_until_stopped()
            return
        else:
            status, body = self._candles(match["product"], query, is_advanced=advanced is not None)
        self.exchange._record(arrived, parts.path, query, status)
        self._send(status, body)

    def _candles(self, product: str, query: dict[str, str], is_advanced: bool) -> tuple[int, object]:
        failure = self.exchange._next_failure()
        if failure is not None:
            return failure, _error_body(failure)
        ordinal, fault = self.exchange._next_fault()
        if fault is Fault.HTML_BODY:
            return HTTPStatus.OK, _RawBody(b"<html><body>Down for maintenance</body></html>", "text/html")
        try:
            status, body = _candle_answer(self.exchange, product, query, is_advanced, fault, ordinal)
        except (KeyError, ValueError) as error:
            return HTTPStatus.BAD_REQUEST, {"error": "INVALID_ARGUMENT", "message": str(error)}
        if fault is Fault.MALFORMED_JSON:
            text = json.dumps(body).encode()
            return status, _RawBody(text[: max(1, len(text) // 2)], "application/json")
        return status, body

    def _send(self, status: int, body: object) -> None:
        raw = body if isinstance(body, _RawBody) else _RawBody(json.dumps(body).encode(), "application/json")
        payload = raw.payload
        self.send_response(status)
        self.send_header("Content-Type", raw.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@dataclass(frozen=True)
class _RawBody:
    """An answer body sent as it is (not JSON-encoded)."""

    payload: bytes
    content_type: str


def _error_body(status: int) -> dict[str, str]:
    """Coinbase-style error bodies; ccxt maps `rate_limit_exceeded` and `INVALID_ARGUMENT` by name."""
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        return {"error": "rate_limit_exceeded", "message": "Too many requests (injected)"}
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        return {"error": "INTERNAL", "message": f"injected failure {status}"}
    return {"error": "INVALID_ARGUMENT", "message": f"injected failure {status}"}


def _candle_answer(
    exchange: LoopbackExchange,
    product: str,
    query: dict[str, str],
    is_advanced: bool,
    fault: Fault | None,
    ordinal: int,
) -> tuple[int, object]:
    if is_advanced:
        if query["granularity"] != "ONE_MINUTE":
            raise ValueError(f"unsupported granularity {query['granularity']}")
        start, end = _epoch_seconds(query["start"]), _epoch_seconds(query["end"])
        requested = math.ceil((end - start).total_seconds() / 60)
        if requested > ADVANCED_TRADE_MAX_CANDLES:
            raise ValueError(f"number of candles requested should be less than {ADVANCED_TRADE_MAX_CANDLES}")
        stop = end + timedelta(minutes=1) if exchange.end_inclusive else end
        rows = exchange._rows(product, start, stop, fault, ordinal)
        return HTTPStatus.OK, {"candles": rows[::-1]}
    if query["granularity"] != "60":
        raise ValueError(f"unsupported granularity {query['granularity']}")
    start, end = _iso(query["start"]), _iso(query["end"])
    rows = exchange._rows(product, start, end + timedelta(minutes=1), fault, ordinal)[:EXCHANGE_MAX_CANDLES]
    as_arrays = [
        [int(r["start"]), *(_number(r.get(k)) for k in ("low", "high", "open", "close", "volume"))]
        for r in rows
    ]
    return HTTPStatus.OK, as_arrays[::-1]


def _number(raw: object) -> object:
    """The exchange protocol sends numbers; a malformed value stays as it is."""
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return raw
