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
from pathlib import Path

import numpy as np
import polars as pl

from trading_assets.ml.metrics import expected_calibration_error
from trading_assets.runtime.dryrun import MEMBER_TYPES
from trading_assets.store.duckdb_store import relation_to_polars, run_read, table_exists

SCORED = (*MEMBER_TYPES, "ensemble")

_OUTCOMES_SQL = """
WITH latest AS (
    SELECT * FROM signals
    WHERE symbol = $symbol AND minute >= $since
    QUALIFY row_number() OVER (PARTITION BY symbol, minute ORDER BY recorded_at DESC) = 1
)
SELECT s.minute, s.p_lstm, s.p_transformer, s.p_sklearn, s.p_ensemble, s.signal,
       CAST(later.close > now_candle.close AS DOUBLE) AS up
FROM latest s
JOIN candles now_candle ON now_candle.symbol = s.symbol AND now_candle.minute = s.minute
JOIN candles later ON later.symbol = s.symbol AND later.minute = s.minute + to_minutes($horizon)
ORDER BY s.minute
"""


@dataclass(frozen=True)
class ScoredPerformance:
    """Realised figures of one member (or the ensemble) over the window."""

    scored: str
    outcomes: int
    accuracy: float | None
    calibration_error: float | None


def signal_outcomes(db_path: Path, symbol: str, since: datetime, horizon: int = 1) -> pl.DataFrame:
    """Signals of `symbol` from `since` on whose outcome candle has arrived, with `up` (1.0 / 0.0)."""

    def read(connection) -> pl.DataFrame:
        if not (table_exists(connection, "signals") and table_exists(connection, "candles")):
            return pl.DataFrame()
        parameters = {"symbol": symbol, "since": since, "horizon": horizon}
        return relation_to_polars(connection.sql(_OUTCOMES_SQL, params=parameters))

    return run_read(db_path, read)


def summarise(outcomes: pl.DataFrame) -> list[ScoredPerformance]:
    """Accuracy and calibration error of every member and the ensemble over these outcomes."""
    results = []
    for scored in SCORED:
        column = f"p_{scored}"
        rows = outcomes.filter(pl.col(column).is_not_null()) if column in outcomes.columns else pl.DataFrame()
        if rows.height == 0:
            results.append(ScoredPerformance(scored, 0, None, None))
            continue
        probs, up = rows[column].to_numpy(), rows["up"].to_numpy()
        accuracy = float(np.mean((probs > 0.5) == (up > 0.5)))
        results.append(
            ScoredPerformance(scored, rows.height, accuracy, expected_calibration_error(probs, up))
        )
    return results


def live_performance(
    db_path: Path, symbol: str, now: datetime, window_hours: float = 24.0, horizon: int = 1
) -> tuple[pl.DataFrame, list[ScoredPerformance]]:
    """The outcomes of the last `window_hours` before `now` and their per-member summary."""
    outcomes = signal_outcomes(db_path, symbol, now - timedelta(hours=window_hours), horizon)
    return outcomes, summarise(outcomes)
