"""The fault matrix: real candles through real ccxt from a loopback exchange that misbehaves.

30 days x 3 symbols of real Binance 1-minute candles (../shared/data/real-1m, moved to start at a UTC
midnight) with a few genuine gaps are served by the loopback exchange with each fault class alone and
all together, and ingested with the core functions into a store that already holds the correct rows.
A recoverable fault (it goes away when the page is asked again) must end with exactly the exchange's
unique valid candles stored (0 missing, 0 extra, 0 wrong) and rewritten; a fault that never goes away
must fail the ingest and leave the stored rows byte-identical. `pytest -s` prints the matrix.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from trading_assets.market.candles import InvalidPartitionError, day_bounds
from trading_assets.market.ccxt_source import CcxtCandleSource, ExchangeFetchError
from trading_assets.market.ingest import ingest_days
from trading_assets.store.duckdb_store import ShrinkRefusedError, read_candles
from trading_assets_bench.harness.loopback_exchange import EVERY_REQUEST, Fault, LoopbackExchange, PageFault
from trading_assets_tests.conftest import SHARED_DATA

REAL_DIR = SHARED_DATA / "binance_2026-03_paparocketeer-freqtrade-bot"
SYMBOLS = ("BTC-USDT", "ETH-USDT", "SOL-USDT")
FIRST_DAY = date(2026, 3, 23)
DAYS = [FIRST_DAY + timedelta(days=offset) for offset in range(30)]
CANDLE_COLUMNS = ["symbol", "minute", "open", "high", "low", "close", "volume"]
#: Minutes without trades (the exchange's own gaps): on page edges, a 2-hour hole and a day's last minute.
_GAP_MINUTES = [299, 300, 301, 599, *range(700, 820), 1439]

pytestmark = pytest.mark.skipif(not REAL_DIR.is_dir(), reason=f"real candles not present at {REAL_DIR}")


def real_month() -> dict[str, pl.DataFrame]:
    """Each symbol's 43,199 real candles, moved by whole minutes to start at FIRST_DAY 00:00 UTC."""
    month = {}
    for symbol in SYMBOLS:
        frame = pl.read_ipc(REAL_DIR / f"{symbol.replace('-', '_')}-1m.feather").rename({"date": "minute"})
        frame = frame.with_columns(pl.col("minute").dt.convert_time_zone("UTC").dt.cast_time_unit("us"))
        offset = frame["minute"].min() - datetime.combine(FIRST_DAY, datetime.min.time(), UTC)
        month[symbol] = frame.select(
            pl.col("minute") - offset, *[pl.col(c).cast(pl.Float64) for c in CANDLE_COLUMNS[2:]]
        )
    return month


def gap_minutes() -> set[datetime]:
    return {day_bounds(DAYS[7])[0] + timedelta(minutes=m) for m in _GAP_MINUTES} | {
        day_bounds(DAYS[21])[0] + timedelta(minutes=m) for m in _GAP_MINUTES
    }


@dataclass(frozen=True)
class Scenario:
    name: str
    faults: tuple[PageFault, ...] = ()
    rate_limited: int = 0
    server_errors: int = 0

    @property
    def recoverable(self) -> bool:
        return all(fault.requests is not EVERY_REQUEST for fault in self.faults)


def sometimes(index: int) -> range:
    """Candle requests 2*index+1, +16, +32, ...: no two consecutive, so a re-asked page gets a good answer."""
    return range(2 * index + 1, 10**12, 16)


SCENARIOS = [
    Scenario("none (into an empty store)"),
    Scenario("429 x2 + 500 x2", rate_limited=2, server_errors=2),
    *[Scenario(fault.value, (PageFault(fault, sometimes(0)),)) for fault in Fault],
    Scenario("all together", tuple(PageFault(f, sometimes(i)) for i, f in enumerate(Fault)), 2, 2),
    *[
        Scenario(f"{fault.value}, always", (PageFault(fault, EVERY_REQUEST),))
        for fault in (Fault.MALFORMED_JSON, Fault.HTML_BODY, Fault.EMPTY_PAGE, Fault.PREVIOUS_DAY)
    ],
    Scenario(f"{Fault.SHIFTED_HOUR.value}, always", (PageFault(Fault.SHIFTED_HOUR, EVERY_REQUEST),)),
]


@dataclass(frozen=True)
class Outcome:
    expected_rows: int
    stored_rows: int
    missing: int
    extra: int
    wrong: int
    error: str | None
    unchanged: bool


@pytest.fixture(scope="module")
def exchange_data() -> dict[str, pl.DataFrame]:
    return real_month()


@pytest.fixture(scope="module")
def expected(exchange_data: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """The exchange's unique valid candles of the 30 days, as stored rows."""
    gaps = list(gap_minutes())
    end = day_bounds(DAYS[-1])[1]
    return pl.concat(
        [
            frame.filter(~pl.col("minute").is_in(gaps) & (pl.col("minute") < end)).select(
                pl.lit(symbol).alias("symbol"), *CANDLE_COLUMNS[1:]
            )
            for symbol, frame in exchange_data.items()
        ]
    ).sort("symbol", "minute")


def candle_fn(data: dict[str, pl.DataFrame]):
    def candles(product: str, start: datetime, end: datetime) -> pl.DataFrame:
        return data[product].filter(pl.col("minute").is_between(start, end, closed="left"))

    return candles


def run_ingest(scenario: Scenario, data: dict[str, pl.DataFrame], db_path: Path) -> list[str]:
    """Ingest every symbol's 30 days in one batch each; the one-line errors of the symbols that failed."""
    errors = []
    server = LoopbackExchange(
        candle_fn(data),
        omit_minutes=gap_minutes(),
        faults=scenario.faults,
        rate_limited=scenario.rate_limited,
        server_errors=scenario.server_errors,
    )
    with server:
        source = CcxtCandleSource(api_url=server.url, rate_limit_ms=0, backoff_ms=1, timeout_ms=5000)
        try:
            for symbol in SYMBOLS:
                try:
                    ingest_days(source, db_path, symbol, DAYS, max_invalid_share=0.0)
                except (ExchangeFetchError, InvalidPartitionError, ShrinkRefusedError) as error:
                    errors.append(f"{type(error).__name__}: {error}")
        finally:
            source.close()
    return errors


def run_scenario(
    scenario, data, expected_rows: pl.DataFrame, prefilled: Path | None, db_path: Path
) -> Outcome:
    """Ingest under `scenario` into a copy of `prefilled` (None: an empty store) and compare."""
    if prefilled is not None:
        shutil.copy(prefilled, db_path)
    before = read_candles(prefilled, list(SYMBOLS)) if prefilled else None
    errors = run_ingest(scenario, data, db_path)
    after = read_candles(db_path, list(SYMBOLS))
    stored = after.select(CANDLE_COLUMNS)
    keys = ["symbol", "minute"]
    missing = expected_rows.join(stored, on=keys, how="anti").height
    extra = stored.join(expected_rows, on=keys, how="anti").height
    both = expected_rows.join(stored, on=keys, how="inner", suffix="_stored")
    wrong = both.filter(
        pl.any_horizontal([pl.col(c) != pl.col(f"{c}_stored") for c in CANDLE_COLUMNS[2:]])
    ).height
    return Outcome(
        expected_rows=expected_rows.height,
        stored_rows=stored.height,
        missing=missing,
        extra=extra,
        wrong=wrong,
        error=errors[0] if errors else None,
        unchanged=before is not None and after.equals(before),
    )


def test_fault_matrix(exchange_data, expected, tmp_path: Path) -> None:
    """The first scenario (no fault) fills an empty store; every other one starts from a copy of it."""
    prefilled = tmp_path / "0.duckdb"
    rows = [(SCENARIOS[0], run_scenario(SCENARIOS[0], exchange_data, expected, None, prefilled))]
    for index, scenario in enumerate(SCENARIOS[1:], start=1):
        outcome = run_scenario(scenario, exchange_data, expected, prefilled, tmp_path / f"{index}.duckdb")
        rows.append((scenario, outcome))
    print_matrix(rows)
    for scenario, outcome in rows:
        if scenario.recoverable:
            assert outcome.error is None, f"{scenario.name}: {outcome.error}"
            assert (outcome.missing, outcome.extra, outcome.wrong) == (0, 0, 0), scenario.name
            assert not outcome.unchanged, f"{scenario.name}: the days were not rewritten"
        else:
            assert outcome.error is not None, f"{scenario.name}: a permanent fault must fail the ingest"
            assert outcome.unchanged, f"{scenario.name}: stored rows changed although the ingest failed"


def print_matrix(rows: list[tuple[Scenario, Outcome]]) -> None:
    header = ("fault", "days", "expected rows", "stored rows", "missing/extra/wrong", "outcome")
    lines = [
        (
            scenario.name,
            f"{len(DAYS)} x {len(SYMBOLS)}",
            f"{o.expected_rows:,}",
            f"{o.stored_rows:,}",
            f"{o.missing}/{o.extra}/{o.wrong}",
            "stored, exact"
            if o.error is None
            else f"failed, stored rows unchanged={o.unchanged}: {o.error[:110]}",
        )
        for scenario, o in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    print()
    for line in [header, tuple("-" * w for w in widths), *lines]:
        print(" | ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)))


def _short(error: str) -> str:
    """The error class and what went wrong, without the range it names."""
    kind, _, message = error.partition(": ")
    return f"{kind}: ...{message[-90:]}" if len(message) > 90 else error
