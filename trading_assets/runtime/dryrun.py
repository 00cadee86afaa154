"""The dry-run runtime: fetch the latest candles, compute features with the feature store's code, score
every promoted member and the ensemble, record signals. It never places orders. No Dagster.

Members are resolved through the promoted registry at every tick (symbol, type -> the version in service),
so a promotion or rollback is served from the next tick on; each signal records the versions that scored
it. A symbol whose ensemble cannot be served (a member refused: damaged, of another symbol, unpromoted,
non-finite, temperature <= 0) is skipped for that tick with one line naming the file; the other symbols go
on scoring.

Signals are stored one row per scored member and one for the ensemble (`member` = a model type or
"ensemble"), so the table names no model type. Each row of a tick carries the tick's ensemble signal,
latency and member versions. A DuckDB file written before (one wide row per tick with a `p_<type>`
column per type) is migrated in place by the first write: inside the write's transaction the old table is
unpivoted into the new `signals` table (a column of a former type name gets today's name) and dropped.
Until then readers see the old table through the same unpivot (`signals_source`).
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
from trading_assets.ml.backtest import DEFAULT_POLICY, SignalPolicy
from trading_assets.ml.model_types import ALIASES, MODEL_TYPES
from trading_assets.promotion.ensemble import ENSEMBLE, EnsembleScorer, score_latest, seq_len_of
from trading_assets.store.duckdb_store import Store, as_store, run_write, table_exists

#: what a signal row can score: every model type, then the ensemble
SCORED = (*MODEL_TYPES, ENSEMBLE)
SIGNALS_DDL = """
CREATE TABLE IF NOT EXISTS signals (
    symbol VARCHAR NOT NULL,
    minute TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    mode VARCHAR NOT NULL,
    member VARCHAR NOT NULL,
    probability DOUBLE NOT NULL,
    signal VARCHAR NOT NULL,
    latency_ms DOUBLE NOT NULL,
    members VARCHAR NOT NULL,
    schema_hash VARCHAR NOT NULL
)
"""
#: The rows of a wide signals table (before one row per member): one per non-null `p_<name>` column, the
#: member named by today's name. Parameters: $former and $today, the alias table as two lists.
_WIDE_AS_ROWS = """
SELECT * EXCLUDE (column_name),
       coalesce(list_extract($today, list_position($former, substr(column_name, 3))), substr(column_name, 3))
           AS member
FROM (UNPIVOT {table} ON COLUMNS('^p_') INTO NAME column_name VALUE probability)
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
        db_path: Store,
        models_dir: Path,
        symbols: Sequence[str],
        history_start: date,
        thresholds: SignalPolicy = DEFAULT_POLICY,
        allow_short: bool = False,
    ) -> None:
        """`allow_short`: the costs' setting; on a spot venue (False) a short call is "flat", as the economics
        gate judged it."""
        self.source = source
        self.db_path = as_store(db_path)
        self.history_start = history_start
        self.thresholds = thresholds
        self.allow_short = allow_short
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
        self.held[symbol] = self.thresholds.signal(
            probabilities[ENSEMBLE], self.held.get(symbol, "flat"), self.allow_short
        )
        return Signal(
            symbol=symbol,
            minute=latest,
            probabilities=probabilities,
            signal=self.held[symbol],
            latency_ms=(time.perf_counter() - started) * 1000,
            members=",".join(f"{m.model_type}:{m.version}" for m in members),
        )


def record_signals(db_path: Store, signals: Sequence[Signal], recorded_at: datetime) -> None:
    """Append signals to the DuckDB `signals` table (one row per member and one for the ensemble) in one
    transaction, migrating a wide table of an earlier version first."""
    if not signals:
        return
    rows = [(s, member, p) for s in signals for member, p in s.probabilities.items()]
    frame = pl.DataFrame(
        {
            "symbol": [s.symbol for s, _, _ in rows],
            "minute": [s.minute for s, _, _ in rows],
            "recorded_at": [recorded_at] * len(rows),
            "mode": ["dryrun"] * len(rows),
            "member": [member for _, member, _ in rows],
            "probability": [p for _, _, p in rows],
            "signal": [s.signal for s, _, _ in rows],
            "latency_ms": [s.latency_ms for s, _, _ in rows],
            "members": [s.members for s, _, _ in rows],
            "schema_hash": [schema_hash()] * len(rows),
        },
        schema_overrides={"probability": pl.Float64},
    ).to_arrow()

    def append(connection) -> None:
        migrate_wide_signals(connection)
        connection.register("new_signals", frame)
        connection.execute("INSERT INTO signals BY NAME SELECT * FROM new_signals")
        connection.unregister("new_signals")

    run_write(db_path, append, ddl=[SIGNALS_DDL])


def _is_wide(connection) -> bool:
    columns = connection.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'signals'"
    ).fetchall()
    return ("p_ensemble",) in columns


def _alias_parameters() -> dict[str, list[str]]:
    return {"former": list(ALIASES), "today": list(ALIASES.values())}


def signals_source(connection) -> tuple[str, dict[str, list[str]]]:
    """What a reader selects from for one row per member: the `signals` table, or (not yet migrated) the
    rows of the wide table, with the parameters that SQL needs. The table must exist."""
    if _is_wide(connection):
        return f"({_WIDE_AS_ROWS.format(table='signals')})", _alias_parameters()
    return "signals", {}


def migrate_wide_signals(connection) -> None:
    """Turn a wide `signals` table (a `p_<type>` column per type) into one row per member, in place, inside
    the caller's transaction. Nothing happens when the table is absent or already has a row per member."""
    if not (table_exists(connection, "signals") and _is_wide(connection)):
        return
    connection.execute("ALTER TABLE signals RENAME TO signals_wide")
    connection.execute(SIGNALS_DDL)
    rows = _WIDE_AS_ROWS.format(table="signals_wide")
    connection.execute(f"INSERT INTO signals BY NAME {rows}", _alias_parameters())
    connection.execute("DROP TABLE signals_wide")


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

    def __init__(self, db_path: Store) -> None:
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
    header = f"{'symbol':<10} {'minute (UTC)':<17} " + " ".join(f"{t:>11}" for t in SCORED)
    header += f" {'signal':>7} {'latency':>9}"
    lines = [f"-- dry-run iteration {iteration} (no orders placed) --", header]
    for s in signals:
        cells = " ".join(
            f"{s.probabilities[t]:>11.4f}" if t in s.probabilities else f"{'-':>11}" for t in SCORED
        )
        lines.append(f"{s.symbol:<10} {s.minute:%Y-%m-%d %H:%M} {cells} {s.signal:>7} {s.latency_ms:>7.1f}ms")
    return "\n".join(lines)
