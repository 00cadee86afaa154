"""The fault matrix: real candles through real ccxt from a loopback exchange that misbehaves.

30 days x 3 symbols of real Binance 1-minute candles (../shared/data/real-1m, moved to start at a UTC
midnight) with a few genuine gaps are served by the loopback exchange with each fault class alone and
all together, and ingested with the core functions into a store that already holds the correct rows.
A recoverable fault (it goes away when the page is asked again) must end with exactly the exchange's
unique valid candles stored (0 missing, 0 extra, 0 wrong) and rewritten; a fault that never goes away
must fail the ingest and leave the stored rows byte-identical. `pytest -s` prints the matrix.

Both page conventions: the matrix runs once against an exchange that answers [start, end) and again, over
the recoverable faults and the permanent misplaced answers, against one that answers [start, end] (the
candle at the request's end included, `LoopbackExchange(end_inclusive=True)`); the gap minutes sit on page
edges, so end-inclusive pages with gaps carry the candle one past their window.

Content faults (a same-count answer with wrong values: one page of prices x100 or /100 from the exchange;
files in cents, shifted by a day, in naive New York wall-clock time) must either store exactly the right
rows or fail in one line with the stored days byte-identical; a wrong day that nothing was stored for must
fail the blocking plausibility checks (`test_files_fault_matrix`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from trading_assets.market.candles import InvalidPartitionError, day_bounds
from trading_assets.market.ccxt_source import CcxtCandleSource, ExchangeFetchError
from trading_assets.market.files_source import FilesSource, NaiveTimesError
from trading_assets.market.ingest import ingest_days
from trading_assets.market.integrity import RevisionRefusedError, median_shift, price_jumps
from trading_assets.store.duckdb_store import ShrinkRefusedError, read_candles, run_write
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


Data = dict[str, pl.DataFrame]


@dataclass(frozen=True)
class Scenario:
    name: str
    faults: tuple[PageFault, ...] = ()
    rate_limited: int = 0
    server_errors: int = 0
    #: what the exchange serves instead of the real candles (a content fault: every request, every time)
    served: Callable[[Data], Data] | None = None
    #: the start of the one-line error a permanent fault must fail with (None: any)
    error: str | None = None
    #: the exchange answers [start, end] (includes the candle at the request's end) instead of [start, end)
    end_inclusive: bool = False

    @property
    def recoverable(self) -> bool:
        return self.served is None and all(fault.requests is not EVERY_REQUEST for fault in self.faults)


#: The stored day whose page the content faults spoil, and the page: minutes 05:00 .. 09:59.
PAGE_DAY = DAYS[3]
PAGE = (day_bounds(PAGE_DAY)[0] + timedelta(hours=5), day_bounds(PAGE_DAY)[0] + timedelta(hours=10))


def scale_prices(factor: float, start: datetime, end: datetime) -> Callable[[Data], Data]:
    """Every symbol's open/high/low/close in [start, end) times `factor`."""
    inside = pl.col("minute").is_between(start, end, closed="left")

    def served(data: Data) -> Data:
        return {
            symbol: frame.with_columns(
                [pl.when(inside).then(pl.col(c) * factor).otherwise(pl.col(c)).alias(c) for c in PRICES]
            )
            for symbol, frame in data.items()
        }

    return served


PRICES = ["open", "high", "low", "close"]


def sometimes(index: int) -> range:
    """Candle requests 2*index+1, +16, +32, ...: no two consecutive, so a re-asked page gets a good answer."""
    return range(2 * index + 1, 10**12, 16)


def every_second(index: int = 0, kinds: int = 1) -> range:
    """Every second candle request (1, 3, 5, ...); of `kinds` faults taking turns, the `index`th's share."""
    return range(2 * index + 1, 10**12, 2 * kinds)


#: Permanent answers with candles of another window: refused in both conventions.
MISPLACED_ALWAYS = [
    Scenario(f"{fault.value}, always", (PageFault(fault, EVERY_REQUEST),))
    for fault in (Fault.PREVIOUS_DAY, Fault.SHIFTED_HOUR)
]
EVERY_SECOND_REQUEST = [
    *[
        Scenario(f"{fault.value} on every second request", (PageFault(fault, every_second()),))
        for fault in (Fault.EMPTY_PAGE, Fault.MALFORMED_JSON, Fault.DUPLICATE_ROW, Fault.PREVIOUS_DAY)
    ],
    Scenario(
        "all kinds in turn on every second request",
        tuple(PageFault(f, every_second(i, len(Fault))) for i, f in enumerate(Fault)),
    ),
]
SCENARIOS = [
    Scenario("none (into an empty store)"),
    Scenario("429 x2 + 500 x2", rate_limited=2, server_errors=2),
    *[Scenario(fault.value, (PageFault(fault, sometimes(0)),)) for fault in Fault],
    Scenario("all together", tuple(PageFault(f, sometimes(i)) for i, f in enumerate(Fault)), 2, 2),
    *EVERY_SECOND_REQUEST,
    *[
        Scenario(f"{fault.value}, always", (PageFault(fault, EVERY_REQUEST),))
        for fault in (Fault.MALFORMED_JSON, Fault.HTML_BODY, Fault.EMPTY_PAGE)
    ],
    *MISPLACED_ALWAYS,
    *[
        Scenario(
            f"prices {label} on one page (300 min) of a stored day, always",
            served=scale_prices(factor, *PAGE),
            error=f"RevisionRefusedError: refusing to revise candles of BTC-USDT: {PAGE_DAY} 300 of 1440 "
            f"stored minutes changed, largest relative change {relative:g} (open x{factor:g}) at "
            f"{PAGE[0].isoformat()}: stored o/h/l/c/v",
        )
        for label, factor, relative in (("x100", 100.0, 99.0), ("/100", 0.01, 0.99))
    ],
]
#: The second pass, against an exchange that includes the candle at the request's end: every recoverable
#: fault and the misplaced answers (the content faults do not depend on the page convention).
END_INCLUSIVE_SCENARIOS = [
    Scenario("end-inclusive pages with gaps", end_inclusive=True),
    *[
        replace(scenario, name=f"{scenario.name}, end-inclusive", end_inclusive=True)
        for scenario in SCENARIOS[1:]
        if scenario.recoverable or scenario in MISPLACED_ALWAYS
    ],
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
        candle_fn(scenario.served(data) if scenario.served else data),
        omit_minutes=gap_minutes(),
        faults=scenario.faults,
        rate_limited=scenario.rate_limited,
        server_errors=scenario.server_errors,
        end_inclusive=scenario.end_inclusive,
    )
    with server:
        source = CcxtCandleSource(api_url=server.url, rate_limit_ms=0, backoff_ms=1, timeout_ms=5000)
        try:
            for symbol in SYMBOLS:
                try:
                    ingest_days(source, db_path, symbol, DAYS, max_invalid_share=0.0)
                except (
                    ExchangeFetchError,
                    InvalidPartitionError,
                    ShrinkRefusedError,
                    RevisionRefusedError,
                ) as error:
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


@pytest.mark.e2e  # every fault class against a loopback exchange server, 30 days x 3 symbols, two conventions
def test_fault_matrix(exchange_data, expected, tmp_path: Path) -> None:
    """The first scenario (no fault) fills an empty store; every other one starts from a copy of it, the
    end-exclusive ones first, then the end-inclusive ones."""
    prefilled = tmp_path / "0.duckdb"
    rows = [(SCENARIOS[0], run_scenario(SCENARIOS[0], exchange_data, expected, None, prefilled))]
    for index, scenario in enumerate([*SCENARIOS[1:], *END_INCLUSIVE_SCENARIOS], start=1):
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
            assert "\n" not in outcome.error, f"{scenario.name}: not one line: {outcome.error}"
            if scenario.error:
                assert outcome.error.startswith(scenario.error), outcome.error


def print_matrix(rows: list[tuple[Scenario, Outcome]]) -> None:
    header = ("fault", "pages", "days", "expected rows", "stored rows", "missing/extra/wrong", "outcome")
    lines = [
        (
            scenario.name,
            "[start, end]" if scenario.end_inclusive else "[start, end)",
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


# --- content faults of the files source -------------------------------------------------------------

NEW_YORK = "America/New_York"
#: The days the files scenarios store and re-ingest (the files hold the whole month).
FILE_DAYS = DAYS[:8]
#: The day a scenario removes from the prefilled store and then ingests alone (a new day next to stored ones).
NEW_DAY = FILE_DAYS[4]


@dataclass(frozen=True)
class FilesScenario:
    """Files written from the real month by `write`, ingested over `days` with the source's `timezone`.

    `expect`: "exact" (the expected rows stored, rewritten), an error class name (the ingest fails in one
    line starting with it and the stored rows stay byte-identical), or "implausible" (stored, and the
    blocking plausibility checks fail naming the day's first minute).
    """

    name: str
    write: Callable[[Data, Path], None]
    expect: str
    days: tuple[date, ...] = tuple(FILE_DAYS)
    timezone: str | None = None
    #: remove NEW_DAY from the prefilled store first
    new_day: bool = False


def write_files(transform: Callable[[pl.DataFrame], pl.DataFrame] = lambda f: f, suffix: str = ".feather"):
    """freqtrade's layout: `BTC_USDT-1m.feather` with a `date` column, one file per symbol."""

    def write(data: Data, directory: Path) -> None:
        for symbol, frame in data.items():
            path = directory / f"{symbol.replace('-', '_')}-1m{suffix}"
            out = transform(frame).rename({"minute": "date"})
            out.write_csv(path) if suffix == ".csv" else out.write_ipc(path)

    return write


def in_cents(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns([pl.col(c) * 100 for c in PRICES])


def shifted_a_day(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("minute") + timedelta(days=1))


def new_york_wall_clock(frame: pl.DataFrame) -> pl.DataFrame:
    """Times as naive New York wall-clock strings, as a spreadsheet export would write them."""
    local = pl.col("minute").dt.convert_time_zone(NEW_YORK).dt.to_string("%Y-%m-%d %H:%M:%S")
    return frame.with_columns(local)


FILES_SCENARIOS = [
    FilesScenario("the same files again", write_files(), "exact"),
    FilesScenario("prices in cents (x100), same row count", write_files(in_cents), "RevisionRefusedError"),
    FilesScenario(
        "file shifted by +1 day, the days it covers",
        write_files(shifted_a_day),
        "RevisionRefusedError",
        days=tuple(FILE_DAYS[1:]),
    ),
    FilesScenario("file shifted by +1 day, all days", write_files(shifted_a_day), "FileSpanError"),
    FilesScenario(
        "naive New York times, no zone set", write_files(new_york_wall_clock, ".csv"), "NaiveTimesError"
    ),
    FilesScenario(
        "naive New York times, zone America/New_York",
        write_files(new_york_wall_clock, ".csv"),
        "exact",
        timezone=NEW_YORK,
    ),
    FilesScenario(
        "naive New York times, zone UTC (wrong), same row count",
        write_files(new_york_wall_clock, ".csv"),
        "RevisionRefusedError",
        timezone="UTC",
    ),
    FilesScenario(
        "a new day in cents between stored days",
        write_files(in_cents),
        "implausible",
        days=(NEW_DAY,),
        new_day=True,
    ),
]


@dataclass(frozen=True)
class FilesOutcome:
    missing: int
    extra: int
    wrong: int
    error: str | None
    unchanged: bool
    #: "symbol day check: minute" of every failed plausibility check over the ingested days
    implausible: list[str]


def plausibility_failures(db_path: Path, days: tuple[date, ...]) -> list[str]:
    failures = []
    stored = read_candles(db_path, list(SYMBOLS))
    for symbol in SYMBOLS:
        candles = stored.filter(pl.col("symbol") == symbol)
        for day in days:
            jumps, shift = price_jumps(candles, day), median_shift(candles, day)
            failures += [f"{symbol} {day} price_jumps: {jump.minute.isoformat()}" for jump in jumps.jumps]
            if not shift.passed:
                failures.append(
                    f"{symbol} {day} median_price_vs_neighbours: {shift.example_minute.isoformat()}"
                )
    return failures


def run_files_scenario(scenario: FilesScenario, data: Data, prefilled: Path, tmp_path: Path) -> FilesOutcome:
    directory = tmp_path / "files"
    directory.mkdir()
    scenario.write(data, directory)
    db_path = tmp_path / "store.duckdb"
    shutil.copy(prefilled, db_path)
    if scenario.new_day:
        run_write(
            db_path,
            lambda c: c.execute(
                "DELETE FROM candles WHERE minute >= ? AND minute < ?", list(day_bounds(NEW_DAY))
            ),
        )
    before = read_candles(db_path, list(SYMBOLS))
    source = FilesSource(directory, timezone=scenario.timezone)
    errors = []
    for symbol in SYMBOLS:
        try:
            ingest_days(source, db_path, symbol, list(scenario.days), max_invalid_share=0.0)
        except (InvalidPartitionError, ShrinkRefusedError, RevisionRefusedError, NaiveTimesError) as error:
            errors.append(f"{type(error).__name__}: {error}")
    after = read_candles(db_path, list(SYMBOLS))
    in_days = pl.col("minute").dt.date().is_in(list(scenario.days))
    expected = files_expected(data).filter(in_days)
    stored = after.select(CANDLE_COLUMNS).filter(in_days)
    keys = ["symbol", "minute"]
    both = expected.join(stored, on=keys, how="inner", suffix="_stored")
    return FilesOutcome(
        missing=expected.join(stored, on=keys, how="anti").height,
        extra=stored.join(expected, on=keys, how="anti").height,
        wrong=both.filter(
            pl.any_horizontal([pl.col(c) != pl.col(f"{c}_stored") for c in CANDLE_COLUMNS[2:]])
        ).height,
        error=errors[0] if errors else None,
        unchanged=after.equals(before),
        implausible=plausibility_failures(db_path, scenario.days),
    )


def files_expected(data: Data) -> pl.DataFrame:
    return pl.concat(
        [frame.select(pl.lit(symbol).alias("symbol"), *CANDLE_COLUMNS[1:]) for symbol, frame in data.items()]
    ).sort("symbol", "minute")


def test_files_fault_matrix(exchange_data, tmp_path: Path) -> None:
    """A store filled from the real files, then each content fault of a file alone."""
    correct = tmp_path / "correct"
    correct.mkdir()
    write_files()(exchange_data, correct)
    prefilled = tmp_path / "prefilled.duckdb"
    for symbol in SYMBOLS:
        ingest_days(FilesSource(correct), prefilled, symbol, FILE_DAYS, max_invalid_share=0.0)
    rows = []
    for index, scenario in enumerate(FILES_SCENARIOS):
        (tmp_path / str(index)).mkdir()
        rows.append((scenario, run_files_scenario(scenario, exchange_data, prefilled, tmp_path / str(index))))
    print_files_matrix(rows)
    for scenario, outcome in rows:
        if scenario.expect == "exact":
            assert outcome.error is None, f"{scenario.name}: {outcome.error}"
            assert (outcome.missing, outcome.extra, outcome.wrong) == (0, 0, 0), scenario.name
            assert not outcome.unchanged and not outcome.implausible, scenario.name
        elif scenario.expect == "implausible":
            assert outcome.error is None, f"{scenario.name}: {outcome.error}"
            first_minute = day_bounds(NEW_DAY)[0].isoformat()
            for symbol in SYMBOLS:
                assert f"{symbol} {NEW_DAY} price_jumps: {first_minute}" in outcome.implausible
                assert f"{symbol} {NEW_DAY} median_price_vs_neighbours: {first_minute}" in outcome.implausible
        else:
            assert outcome.error is not None and outcome.error.startswith(f"{scenario.expect}: "), (
                outcome.error
            )
            assert "\n" not in outcome.error, outcome.error
            assert outcome.unchanged, f"{scenario.name}: stored rows changed although the ingest failed"


def print_files_matrix(rows: list[tuple[FilesScenario, FilesOutcome]]) -> None:
    header = ("file fault", "days", "missing/extra/wrong", "outcome")
    lines = []
    for scenario, o in rows:
        if o.error:
            outcome = f"failed, stored rows unchanged={o.unchanged}: {o.error[:150]}"
        else:
            outcome = (
                "stored, exact"
                if not o.implausible
                else f"stored; checks fail: {'; '.join(o.implausible[:2])}"
            )
        lines.append(
            (
                scenario.name,
                f"{len(scenario.days)} x {len(SYMBOLS)}",
                f"{o.missing}/{o.extra}/{o.wrong}",
                outcome,
            )
        )
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    print()
    for line in [header, tuple("-" * w for w in widths), *lines]:
        print(" | ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)))
