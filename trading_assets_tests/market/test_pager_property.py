"""Property: whatever sequence of answers the exchange gives, the stored day is exactly its unique valid
candles, or the ingest fails and the stored day is untouched; for an exchange that includes the candle at a
request's end and for one that does not."""

from __future__ import annotations

import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trading_assets.market.candles import InvalidPartitionError, day_bounds
from trading_assets.market.ccxt_source import CcxtCandleSource, ExchangeFetchError
from trading_assets.market.ingest import ingest_day
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.store.duckdb_store import ShrinkRefusedError, StoreMissingError, read_candles
from trading_assets_bench.harness.loopback_exchange import Fault, LoopbackExchange, PageFault

DAY = date(2024, 3, 5)
START, END = day_bounds(DAY)
SYMBOL = "BTC-USD"
COLUMNS = ["minute", "open", "high", "low", "close", "volume"]
_MARKET = SyntheticSource(seed=11)


def day_candles(symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
    return _MARKET.fetch(SYMBOL, start, end)


# The answer to each candle request in turn: None is a correct answer, a Fault a faulty one. A faulty
# answer is followed by a correct one: a wrong answer repeated identically cannot be told from the truth.
answers = st.lists(
    st.one_of(st.just([None]), st.sampled_from(list(Fault)).map(lambda f: [f, None])), max_size=12
).map(lambda pairs: [answer for pair in pairs for answer in pair])
# Minutes the exchange has no trade for (its own gaps): single minutes and runs.
gaps = st.lists(
    st.tuples(st.integers(0, 1439), st.integers(1, 320)).map(lambda g: range(g[0], min(1440, g[0] + g[1]))),
    max_size=4,
)
page_limits = st.sampled_from([300, 97, 7])


@pytest.mark.parametrize("end_inclusive", [False, True], ids=["end-exclusive", "end-inclusive"])
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(answers=answers, gaps=gaps, page_limit=page_limits, prefilled=st.booleans())
def test_stored_rows_are_the_unique_valid_candles_of_the_day_for_any_page_sequence(
    answers: list[Fault | None], gaps: list[range], page_limit: int, prefilled: bool, end_inclusive: bool
) -> None:
    missing = {START + timedelta(minutes=m) for run in gaps for m in run}
    expected = day_candles(SYMBOL, START, END).filter(~pl.col("minute").is_in(list(missing)))
    faults = [PageFault(fault, frozenset({ordinal})) for ordinal, fault in enumerate(answers) if fault]
    with tempfile.TemporaryDirectory() as directory:
        db_path = Path(directory) / "store.duckdb"
        if prefilled:
            with LoopbackExchange(day_candles, omit_minutes=missing, end_inclusive=end_inclusive) as server:
                ingest_day(_source(server, page_limit), db_path, SYMBOL, DAY, 0.0)
        before = stored(db_path)
        exchange = LoopbackExchange(
            day_candles, omit_minutes=missing, faults=faults, end_inclusive=end_inclusive
        )
        with exchange as server:
            source = _source(server, page_limit)
            try:
                ingest_day(source, db_path, SYMBOL, DAY, max_invalid_share=0.0)
                failed = None
            except (ExchangeFetchError, InvalidPartitionError, ShrinkRefusedError) as error:
                failed = f"{type(error).__name__}: {error}"
            finally:
                source.close()
        after = stored(db_path)
        if failed:
            assert after is None if before is None else after.equals(before)
        # every faulty answer is followed by a correct one, and the gaps leave most of the day: recoverable
        assert failed is None, failed
        assert after is not None and after.select(COLUMNS).equals(expected)
        assert source.last_fetch.uncovered_minutes(START, END) == 0


def stored(db_path: Path) -> pl.DataFrame | None:
    """The stored rows of SYMBOL, or None when there are none."""
    try:
        rows = read_candles(db_path, [SYMBOL])
    except StoreMissingError:
        return None
    return rows if rows.height else None


def _source(server: LoopbackExchange, page_limit: int) -> CcxtCandleSource:
    return CcxtCandleSource(
        api_url=server.url, rate_limit_ms=0, backoff_ms=0, timeout_ms=5000, page_limit=page_limit
    )
