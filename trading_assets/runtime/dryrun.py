"""The dry-run runtime: fetch the latest candles, compute features with the feature store's code, score
every promoted member and the ensemble, record signals. It never places orders. No Dagster.

Members are resolved through the promoted registry at every tick (symbol, type -> the version in service),
so a promotion or rollback is served from the next tick on; each signal records the versions that scored
it. A symbol whose ensemble cannot be served (a member refused: damaged, of another symbol, unpromoted,
non-finite, temperature <= 0) is skipped for that tick with one line naming the file; the other symbols go
on scoring.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from trading_assets.features.pipeline import READ_LOOKBACK_MINUTES, compute_features
from trading_assets.features.registry import MODEL_FEATURES, schema_hash
from trading_assets.features.store import feature_matrix
from trading_assets.market.candles import CandleSource
from trading_assets.ml.metrics import DEFAULT_SIGNAL, SignalThresholds
from trading_assets.promotion.ensemble import EnsembleScorer, score_latest, seq_len_of
from trading_assets.store.duckdb_store import run_write

MEMBER_TYPES = ("lstm", "transformer", "sklearn")
SIGNALS_DDL = """
CREATE TABLE IF NOT EXISTS signals (
    symbol VARCHAR NOT NULL,
    minute TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    mode VARCHAR NOT NULL,
    p_lstm DOUBLE,
    p_transformer DOUBLE,
    p_sklearn DOUBLE,
    p_ensemble DOUBLE NOT NULL,
    signal VARCHAR NOT NULL,
    latency_ms DOUBLE NOT NULL,
    members VARCHAR NOT NULL,
    schema_hash VARCHAR NOT NULL
)
"""


class LiveTradingRefused(ValueError):
    """Only the dry-run mode exists: this runtime never places orders."""


@dataclass(frozen=True)
class Signal:
    symbol: str
    minute: datetime
    probabilities: dict[str, float]
    signal: str
    latency_ms: float
    members: str


def check_mode(mode: str) -> None:
    if mode != "dryrun":
        raise LiveTradingRefused(
            f"--mode {mode} refused: this runtime only runs in dryrun mode and never places orders"
        )


class DryRunRuntime:
    """Scores the latest complete minute of each symbol with its promoted ensemble."""

    def __init__(
        self,
        source: CandleSource,
        db_path: Path,
        models_dir: Path,
        symbols: Sequence[str],
        history_start: date,
        thresholds: SignalThresholds = DEFAULT_SIGNAL,
    ) -> None:
        self.source = source
        self.db_path = Path(db_path)
        self.history_start = history_start
        self.thresholds = thresholds
        self.held: dict[str, str] = {}  # the signal of each symbol's last tick (the thresholds' hysteresis)
        self.symbols = list(symbols)
        self.scorers = {
            symbol: EnsembleScorer(models_dir, symbol, list(MODEL_FEATURES), schema_hash())
            for symbol in self.symbols
        }

    def score(self, symbol: str, now: datetime) -> Signal:
        """Features of the minutes up to the last complete one before `now`, scored by the ensemble's
        members as promoted now."""
        started = time.perf_counter()
        members = self.scorers[symbol].members()
        seq_len = seq_len_of(members)
        end = now.replace(second=0, microsecond=0)
        first_scored = end - timedelta(minutes=seq_len)
        candles = self.source.fetch(symbol, first_scored - timedelta(minutes=READ_LOOKBACK_MINUTES), end)
        if candles.height == 0:
            raise LookupError(f"{symbol}: the source returned no candles before {end.isoformat()}")
        latest = candles["minute"].max()
        rows = compute_features(candles, first_scored, latest + timedelta(minutes=1), self.history_start)
        rows = rows.filter(pl.col("minute") <= latest).tail(seq_len)
        probabilities = score_latest(members, feature_matrix(rows).x)
        self.held[symbol] = self.thresholds.signal(probabilities["ensemble"], self.held.get(symbol, "flat"))
        return Signal(
            symbol=symbol,
            minute=latest,
            probabilities=probabilities,
            signal=self.held[symbol],
            latency_ms=(time.perf_counter() - started) * 1000,
            members=",".join(f"{m.model_type}:{m.version}" for m in members),
        )


def record_signals(db_path: Path, signals: Sequence[Signal], recorded_at: datetime) -> None:
    """Append signals to the DuckDB `signals` table in one transaction."""
    if not signals:
        return
    frame = pl.DataFrame(
        {
            "symbol": [s.symbol for s in signals],
            "minute": [s.minute for s in signals],
            "recorded_at": [recorded_at] * len(signals),
            "mode": ["dryrun"] * len(signals),
            **{f"p_{t}": [s.probabilities.get(t) for s in signals] for t in MEMBER_TYPES},
            "p_ensemble": [s.probabilities["ensemble"] for s in signals],
            "signal": [s.signal for s in signals],
            "latency_ms": [s.latency_ms for s in signals],
            "members": [s.members for s in signals],
            "schema_hash": [schema_hash()] * len(signals),
        },
        schema_overrides={f"p_{t}": pl.Float64 for t in MEMBER_TYPES},
    ).to_arrow()

    def append(connection) -> None:
        connection.register("new_signals", frame)
        connection.execute("INSERT INTO signals BY NAME SELECT * FROM new_signals")
        connection.unregister("new_signals")

    run_write(db_path, append, ddl=[SIGNALS_DDL])


def run_iterations(
    runtime: DryRunRuntime,
    iterations: int,
    sleep_seconds: float,
    report: Callable[[str], None] = print,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Signal]:
    """The loop: each iteration scores every symbol; a symbol that fails (source error, a member refused)
    is reported in one line and skipped for that iteration, and the loop goes on."""
    recorded: list[Signal] = []
    with SignalRecorder(runtime.db_path) as recorder:
        for iteration in range(1, iterations + 1):
            now = clock()
            signals = []
            for symbol in runtime.symbols:
                try:
                    signals.append(runtime.score(symbol, now))
                except Exception as error:  # noqa: BLE001 (one symbol's failure must not stop the loop)
                    report(f"iteration {iteration}: {symbol} skipped: {type(error).__name__}: {error}")
            recorder.submit(signals, now)
            report(format_table(iteration, signals))
            recorded.extend(signals)
            if iteration < iterations:
                time.sleep(sleep_seconds)
    return recorded


class SignalRecorder:
    """Appends signals to DuckDB on a background thread, off the scoring path (opening the DuckDB file
    alone takes tens of milliseconds). One write in flight: `submit` first waits for the previous one and
    re-raises its error; leaving the context waits for the last."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="signal-recorder")
        self._pending: Future[None] | None = None

    def submit(self, signals: Sequence[Signal], recorded_at: datetime) -> None:
        self.wait()
        self._pending = self._writer.submit(record_signals, self.db_path, list(signals), recorded_at)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> SignalRecorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.wait()
        finally:
            self._writer.shutdown()


def format_table(iteration: int, signals: Sequence[Signal]) -> str:
    header = f"{'symbol':<10} {'minute (UTC)':<17} " + " ".join(
        f"{t:>11}" for t in (*MEMBER_TYPES, "ensemble")
    )
    header += f" {'signal':>7} {'latency':>9}"
    lines = [f"-- dry-run iteration {iteration} (no orders placed) --", header]
    for s in signals:
        cells = " ".join(
            f"{s.probabilities[t]:>11.4f}" if t in s.probabilities else f"{'-':>11}"
            for t in (*MEMBER_TYPES, "ensemble")
        )
        lines.append(f"{s.symbol:<10} {s.minute:%Y-%m-%d %H:%M} {cells} {s.signal:>7} {s.latency_ms:>7.1f}ms")
    return "\n".join(lines)
