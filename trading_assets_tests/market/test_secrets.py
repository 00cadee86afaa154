"""The exchange URL's password (`TA_CCXT_API_URL=http://user:password@host`) appears in no error, log,
runtime output, compute log or run storage, for every ccxt exchange.

A canary password rides in the URL of a loopback exchange through ccxt's `coinbase` and `coinbaseexchange`
(their candle requests fail with 500s) and `binance` and `kraken` (the loopback exchange 404s market
listings, so their `load_markets` fails, the path that leaked: ccxt quotes the full URL in its message and
chains requests' errors that quote it too). Checked: the core source's error (text, repr, traceback, the
error as Dagster records it), logs and captured output; the dry-run runtime's report; a `raw_candles`
materialization on a real instance in a temporary DAGSTER_HOME (every file under it: run index, run and
event databases, compute logs); and, end to end, the `trading-assets demo` command (stdout, stderr, its log
file, DAGSTER_HOME and the data directory).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest
from dagster._utils.error import serializable_error_info_from_exc_info

from trading_assets.defs.resources import DuckDBStoreResource, MarketDataResource
from trading_assets.market.ccxt_source import CcxtCandleSource, ExchangeFetchError
from trading_assets.market.synthetic import SyntheticSource
from trading_assets.runtime.dryrun import DryRunRuntime, run_iterations
from trading_assets.settings import CCXT_API_URL_ENV, load_settings
from trading_assets.urls import redact, url_secrets
from trading_assets_bench.harness.loopback_exchange import LoopbackExchange

CANARY = "cAnArY-pw-5e3f1d"
EXCHANGES = ("coinbase", "coinbaseexchange", "binance", "kraken")
#: ccxt quotes the URL (redacted: `http://***@127.0.0.1:...`) in these exchanges' messages
QUOTES_THE_URL = {"binance"}
DAY = date(2024, 3, 5)
SYMBOL = "BTC-USD"
PROJECT = Path(__file__).resolve().parents[2]
_MARKET = SyntheticSource(seed=3)


@pytest.fixture
def exchange() -> Iterator[LoopbackExchange]:
    """A loopback exchange whose candle requests all fail with 500 (market listings are 404s anyway)."""
    with LoopbackExchange(_MARKET.fetch, server_errors=10**6) as server:
        yield server


def canary_url(server: LoopbackExchange) -> str:
    return server.url.replace("http://", f"http://trader:{CANARY}@")


def leaks(texts: dict[str, str | bytes]) -> list[str]:
    """The names of the texts that hold the canary."""
    return [
        name
        for name, text in texts.items()
        if (CANARY.encode() in text if isinstance(text, bytes) else CANARY in text)
    ]


def files_under(*roots: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for root in roots for path in root.rglob("*") if path.is_file()}


def fetch_error(server: LoopbackExchange, exchange_id: str) -> ExchangeFetchError:
    source = CcxtCandleSource(
        exchange_id, api_url=canary_url(server), max_retries=1, rate_limit_ms=0, backoff_ms=1, timeout_ms=2000
    )
    start = datetime.combine(DAY, datetime.min.time(), UTC)
    try:
        with pytest.raises(ExchangeFetchError) as raised:
            source.fetch(SYMBOL, start, start + timedelta(hours=1))
    finally:
        source.close()
    return raised.value


@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_the_source_error_chains_nothing_and_never_holds_the_password(
    exchange: LoopbackExchange,
    exchange_id: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    with caplog.at_level(logging.DEBUG):
        error = fetch_error(exchange, exchange_id)
    out, err = capfd.readouterr()

    assert exchange.requests, "the canary URL must have been used"
    assert error.__cause__ is None and error.__context__ is None
    recorded = serializable_error_info_from_exc_info((type(error), error, error.__traceback__))
    texts = {
        "message": str(error),
        "repr": repr(error),
        "traceback": "".join(traceback.format_exception(error)),
        "as Dagster records it": recorded.to_string(),
        "logs": caplog.text,
        "stdout": out,
        "stderr": err,
    }
    assert leaks(texts) == []
    assert str(error).startswith(f"{exchange_id}: fetching {SYMBOL} candles")
    if exchange_id in QUOTES_THE_URL:
        assert "http://***@127.0.0.1:" in str(error), "the test must see the URL ccxt quotes"


@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_the_dry_run_runtime_reports_the_failure_without_the_password(
    exchange: LoopbackExchange, exchange_id: str, tmp_path: Path
) -> None:
    source = CcxtCandleSource(exchange_id, api_url=canary_url(exchange), max_retries=0, rate_limit_ms=0)
    runtime = DryRunRuntime(
        source, tmp_path / "store.duckdb", tmp_path / "models", [SYMBOL], date(2024, 1, 1)
    )
    # a promoted member is not what this test is about: one that needs 60 minutes, never scored
    runtime.scorers[SYMBOL].members = lambda: [SimpleNamespace(model=SimpleNamespace(seq_len=60))]
    lines: list[str] = []
    try:
        run_iterations(runtime, iterations=1, sleep_seconds=0, report=lines.append)
    finally:
        source.close()

    assert leaks({"report": "\n".join(lines)}) == []
    skipped = f"{SYMBOL} skipped: ExchangeFetchError: {exchange_id}: fetching"
    assert any(skipped in line for line in lines), lines


@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_a_failed_raw_candles_run_leaves_the_password_nowhere_in_dagster_home(
    exchange: LoopbackExchange,
    exchange_id: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from trading_assets_tests.defs.code_location import raw_candles

    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("TA_SOURCE", "ccxt")
    monkeypatch.setenv("TA_CCXT_EXCHANGE", exchange_id)
    monkeypatch.setenv(CCXT_API_URL_ENV, canary_url(exchange))
    monkeypatch.setenv("TA_CCXT_MAX_RETRIES", "0")
    resources = {
        "market_data": MarketDataResource.from_settings(load_settings()),
        "store": DuckDBStoreResource(path=str(tmp_path / "store.duckdb")),
    }
    with caplog.at_level(logging.DEBUG), dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            [raw_candles],
            partition_key=f"{DAY}|{SYMBOL}",
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )
        [failure] = result.get_step_failure_events()
    out, err = capfd.readouterr()

    assert not result.success and exchange.requests
    recorded = failure.event_specific_data.error.to_string()
    stored = files_under(home)
    assert leaks({**stored, "logs": caplog.text, "stdout": out, "stderr": err, "event": recorded}) == []
    assert f"ExchangeFetchError: {exchange_id}: fetching {SYMBOL} candles" in recorded
    assert any("compute_logs" in name for name in stored), "the step's output must have been captured"
    if exchange_id in QUOTES_THE_URL:
        assert any(b"http://***@127.0.0.1:" in data for data in stored.values())


@pytest.mark.e2e  # the demo command through the code location, one run per exchange (about 45 s each)
@pytest.mark.parametrize("exchange_id", EXCHANGES)
def test_the_cli_leaves_the_password_nowhere(
    exchange: LoopbackExchange, exchange_id: str, tmp_path: Path
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "TA_DATA_DIR": str(tmp_path / "data"),
        "TA_MODELS_DIR": str(tmp_path / "models"),
        "TA_SYMBOLS": SYMBOL,
        "TA_SOURCE": "ccxt",
        "TA_CCXT_EXCHANGE": exchange_id,
        CCXT_API_URL_ENV: canary_url(exchange),
        "TA_CCXT_MAX_RETRIES": "0",
    }
    cli = Path(sys.executable).with_name("trading-assets")
    result = subprocess.run(
        [str(cli), "demo", "--days", "1", "--end-day", str(DAY), "--iterations", "0", "--sleep-seconds", "0"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "raw_candles" in result.stdout and exchange.requests, result.stdout
    stored = files_under(home, tmp_path / "data")
    assert leaks({**stored, "stdout": result.stdout, "stderr": result.stderr}) == []
    log = next(data for name, data in stored.items() if name.endswith(".log") and "demo-" in name)
    assert f"ExchangeFetchError: {exchange_id}: fetching {SYMBOL} candles".encode() in log


def test_redact_hides_url_credentials_and_named_secrets_wherever_they_appear() -> None:
    url = "https://trader:p%40ss-w0rd@proxy.example:8443/api"
    secrets = url_secrets(url)

    assert set(secrets) == {"p%40ss-w0rd", "p@ss-w0rd"}
    text = f"GET {url}/x failed; auth p@ss-w0rd; quoted 'p%40ss-w0rd'; key abc"
    assert (
        redact(text, secrets)
        == "GET https://***@proxy.example:8443/api/x failed; auth ***; quoted '***'; key abc"
    )
    assert redact("token ab used", ["ab"]) == "token ab used", "too short to be searched for as text"
    assert url_secrets("https://proxy.example/") == () and url_secrets(None) == ()
