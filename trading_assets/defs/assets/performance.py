"""`live_performance`: how the dry-run's recorded signals fared against the candles that arrived later."""

from dataclasses import asdict
from datetime import UTC, datetime

import dagster as dg
import polars as pl

from trading_assets.defs.automation import LIVE_PERFORMANCE_FOLLOWS_CANDLES
from trading_assets.defs.metadata import ASSET_OWNERS, markdown_table
from trading_assets.defs.partitions import Partitions
from trading_assets.defs.resources import DuckDBStoreResource
from trading_assets.runtime.performance import ScoredPerformance, live_performance
from trading_assets.settings import Settings
from trading_assets.store.duckdb_store import StoreMissingError

LIVE_PERFORMANCE = dg.AssetKey("live_performance")


class LivePerformanceConfig(dg.Config):
    """Rolling window and the accuracy below which the `live_accuracy` check warns."""

    window_hours: float = 24.0
    horizon: int = 1
    min_outcomes: int = 30
    min_accuracy: float  # default: the settings' accuracy gate
    as_of: str | None = None  # ISO timestamp closing the window; default now

    def window_end(self) -> datetime:
        return datetime.fromisoformat(self.as_of).astimezone(UTC) if self.as_of else datetime.now(UTC)


def build_live_performance_asset(settings: Settings, partitions: Partitions) -> dg.AssetsDefinition:
    """`live_performance` per symbol; its check's accuracy gate defaults to the settings' gate."""

    class LiveRunConfig(LivePerformanceConfig):
        min_accuracy: float = settings.policy.min_accuracy

    @dg.asset(
        key=LIVE_PERFORMANCE,
        description="Realised accuracy, calibration error and count of the dry-run's signals, per member and "
        "for the ensemble, over a rolling window (signals joined with the candles that arrived later).",
        group_name="observation",
        partitions_def=partitions.symbol,
        deps=[
            dg.AssetDep("ensemble"),
            dg.AssetDep(
                "raw_candles",
                partition_mapping=dg.MultiToSingleDimensionPartitionMapping(
                    partition_dimension_name="symbol"
                ),
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                "live_accuracy",
                asset=LIVE_PERFORMANCE,
                description="Warns when a member's or the ensemble's realised accuracy over at least "
                "min_outcomes outcomes is below the gate; with fewer it passes, waiting for N outcomes.",
                blocking=False,
                partitions_def=partitions.symbol,
            )
        ],
        automation_condition=LIVE_PERFORMANCE_FOLLOWS_CANDLES,
        kinds={"duckdb"},
        owners=ASSET_OWNERS,
    )
    def live_performance_asset(
        context: dg.AssetExecutionContext, config: LiveRunConfig, store: DuckDBStoreResource
    ):
        yield from _live_performance(context, config, store)

    return live_performance_asset


def _live_performance(
    context: dg.AssetExecutionContext, config: LivePerformanceConfig, store: DuckDBStoreResource
):
    symbol = context.partition_key
    end = config.window_end()
    try:
        outcomes, summary = live_performance(store.db_path, symbol, end, config.window_hours, config.horizon)
    except StoreMissingError as error:
        raise dg.Failure(description=f"{symbol}: {error}") from error
    yield dg.MaterializeResult(
        asset_key=LIVE_PERFORMANCE,
        metadata={
            "window_end": end.isoformat(),
            "window_hours": config.window_hours,
            "outcomes": outcomes.height,
            "status": NO_OUTCOMES_YET if outcomes.height == 0 else f"{outcomes.height} outcomes",
            "ensemble_accuracy": _value(summary, "ensemble", "accuracy"),
            "ensemble_calibration_error": _value(summary, "ensemble", "calibration_error"),
            "by_member": markdown_table(_summary_table(summary)),
        },
    )
    yield _live_accuracy_check(summary, config)


def _value(summary: list[ScoredPerformance], scored: str, field: str) -> dg.MetadataValue:
    value = next(getattr(s, field) for s in summary if s.scored == scored)
    return dg.MetadataValue.float(value) if value is not None else dg.MetadataValue.null()


def _summary_table(summary: list[ScoredPerformance]) -> pl.DataFrame:
    return pl.DataFrame([asdict(s) for s in summary])


#: What the materialization's `status` says while no recorded signal has its outcome candle yet.
NO_OUTCOMES_YET = "no outcomes yet"


def _live_accuracy_check(
    summary: list[ScoredPerformance], config: LivePerformanceConfig
) -> dg.AssetCheckResult:
    """Warns only on a real shortfall: a member (or the ensemble) with at least `min_outcomes` outcomes whose
    realised accuracy is below the gate. Until one has that many, nothing is judged and the check passes
    saying "waiting for N outcomes" (N: how many more the best-observed one needs), so a fresh deployment
    raises neither a warning nor an alert. The description says why (alerts quote it)."""
    judged = [s for s in summary if s.outcomes >= config.min_outcomes]
    below = [s for s in judged if s.accuracy is not None and s.accuracy < config.min_accuracy]
    most_outcomes = max((s.outcomes for s in summary), default=0)
    waiting_for = max(config.min_outcomes - most_outcomes, 0) if not judged else 0
    if below:
        reason = f"realised accuracy below {config.min_accuracy}: " + ", ".join(
            f"{s.scored} {s.accuracy:.3f} over {s.outcomes} outcomes" for s in below
        )
    elif waiting_for:
        seen = "none in the window yet" if most_outcomes == 0 else f"{most_outcomes} so far"
        reason = (
            f"waiting for {waiting_for} outcomes: {config.min_outcomes} are needed to judge a member, "
            f"{seen}; nothing judged"
        )
    else:
        reason = f"{len(judged)} of {len(summary)} scored with >= {config.min_outcomes} outcomes; none below"
    return dg.AssetCheckResult(
        asset_key=LIVE_PERFORMANCE,
        check_name="live_accuracy",
        passed=not below,
        severity=dg.AssetCheckSeverity.WARN,
        description=reason,
        metadata={
            "status": "below the gate" if below else ("waiting" if waiting_for else "judged"),
            "waiting_for_outcomes": waiting_for,
            "min_accuracy": config.min_accuracy,
            "min_outcomes": config.min_outcomes,
            "below_gate": dg.MetadataValue.json([s.scored for s in below]),
            **{f"{s.scored}_accuracy": s.accuracy for s in judged},
            **{f"{s.scored}_outcomes": s.outcomes for s in summary},
        },
    )
