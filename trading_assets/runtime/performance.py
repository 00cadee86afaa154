"""Realised performance of the dry-run: recorded signals joined with the candles that arrived later.

A signal recorded for minute t predicts whether the close rises from t to t + horizon (the models'
label). Once the candle of t + horizon is in the store, the signal has an outcome. For each member and the
ensemble, over a rolling window: realised accuracy, expected calibration error (15 equal-width bins, as in
the gates), and the number of outcomes. A minute scored several times counts once (its latest record).
No Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from trading_assets.ml.metrics import expected_calibration_error
from trading_assets.runtime.dryrun import SCORED, signals_source
from trading_assets.store.duckdb_store import Store, relation_to_polars, run_read, table_exists

#: One row per member of the latest record of each minute (a member the latest record lacks stays absent).
_OUTCOMES_SQL = """
WITH latest AS (
    SELECT * FROM {signals}
    WHERE symbol = $symbol AND minute >= $since
    QUALIFY recorded_at = max(recorded_at) OVER (PARTITION BY symbol, minute)
        AND row_number() OVER (PARTITION BY symbol, minute, member ORDER BY recorded_at DESC) = 1
)
SELECT s.minute, s.member, s.probability, s.signal, CAST(later.close > now_candle.close AS DOUBLE) AS up
FROM latest s
JOIN candles now_candle ON now_candle.symbol = s.symbol AND now_candle.minute = s.minute
JOIN candles later ON later.symbol = s.symbol AND later.minute = s.minute + to_minutes($horizon)
ORDER BY s.minute, s.member
"""


@dataclass(frozen=True)
class ScoredPerformance:
    """Realised figures of one member (or the ensemble) over the window."""

    scored: str
    outcomes: int
    accuracy: float | None
    calibration_error: float | None


def signal_outcomes(db_path: Store, symbol: str, since: datetime, horizon: int = 1) -> pl.DataFrame:
    """Signals of `symbol` from `since` on whose outcome candle has arrived: one row per minute with
    `minute`, `signal`, `up` (1.0 / 0.0) and a probability column per member that scored it."""

    def read(connection) -> pl.DataFrame:
        if not (table_exists(connection, "signals") and table_exists(connection, "candles")):
            return pl.DataFrame()
        signals, source_parameters = signals_source(connection)
        parameters = {"symbol": symbol, "since": since, "horizon": horizon, **source_parameters}
        return relation_to_polars(connection.sql(_OUTCOMES_SQL.format(signals=signals), params=parameters))

    rows = run_read(db_path, read)
    if rows.height == 0:
        return pl.DataFrame()
    return rows.pivot(on="member", index=["minute", "signal", "up"], values="probability").sort("minute")


def summarise(outcomes: pl.DataFrame) -> list[ScoredPerformance]:
    """Accuracy and calibration error of every member and the ensemble over these outcomes."""
    results = []
    for scored in SCORED:
        rows = outcomes.filter(pl.col(scored).is_not_null()) if scored in outcomes.columns else pl.DataFrame()
        if rows.height == 0:
            results.append(ScoredPerformance(scored, 0, None, None))
            continue
        probs, up = rows[scored].to_numpy(), rows["up"].to_numpy()
        accuracy = float(np.mean((probs > 0.5) == (up > 0.5)))
        results.append(
            ScoredPerformance(scored, rows.height, accuracy, expected_calibration_error(probs, up))
        )
    return results


def live_performance(
    db_path: Store, symbol: str, now: datetime, window_hours: float = 24.0, horizon: int = 1
) -> tuple[pl.DataFrame, list[ScoredPerformance]]:
    """The outcomes of the last `window_hours` before `now` and their per-member summary."""
    outcomes = signal_outcomes(db_path, symbol, now - timedelta(hours=window_hours), horizon)
    return outcomes, summarise(outcomes)
