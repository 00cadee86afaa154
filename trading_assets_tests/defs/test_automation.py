"""The automation conditions of the code location, evaluated in-process across simulated time.

Materializations and check results are recorded as runless events on a real (temporary) instance; each
tick passes the previous tick's cursor, as the automation sensor does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from trading_assets.definitions import defs
from trading_assets.defs.checks import TargetMaterialization
from trading_assets.defs.partitions import partition_range_tags
from trading_assets.defs.resources import ModelStoreResource
from trading_assets.ml.gates import GATES
from trading_assets.settings import load_settings

CANDLE_CHECKS = (  # blocking
    "ohlc_consistency",
    "no_duplicate_minutes",
    "stored_rows",
    "price_jumps",
    "median_price_vs_neighbours",
)
FEATURE_CHECKS = ("finite_values", "value_ranges", "stored_rows")  # blocking
SYMBOLS = load_settings().symbols
BTC, ETH, SOL = SYMBOLS[:3]


def day_key(symbol: str, day: datetime) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"symbol": symbol, "date": day.strftime("%Y-%m-%d")})


class Clock:
    """Ticks of the automation sensor at chosen (simulated) times, carrying the cursor."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.cursor = None

    def tick(self, at: datetime) -> dg.EvaluateAutomationConditionsResult:
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=self.instance, evaluation_time=at, cursor=self.cursor
        )
        self.cursor = result.cursor
        return result

    def materialized(self, asset: str, partition: str, checks: dict[str, bool] | None = None) -> None:
        """Record a materialization of `partition` and check results that target it."""
        self.instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=partition))
        latest = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
        ).records[0]
        target = TargetMaterialization(
            storage_id=latest.storage_id, run_id=latest.run_id, timestamp=latest.timestamp
        )
        for name, passed in (checks or {}).items():
            self.instance.report_runless_asset_event(
                dg.AssetCheckEvaluation(
                    asset_key=dg.AssetKey(asset),
                    check_name=name,
                    passed=passed,
                    partition=partition,
                    severity=dg.AssetCheckSeverity.ERROR,
                    blocking=True,
                    target_materialization_data=target,
                )
            )


def requested(result: dg.EvaluateAutomationConditionsResult, asset: str) -> set[str]:
    return {str(key) for key in result.get_requested_partitions(dg.AssetKey(asset))}


@pytest.fixture
def clock(dagster_instance: dg.DagsterInstance) -> Clock:
    return Clock(dagster_instance)


def test_features_follow_candles_whose_blocking_checks_passed(clock: Clock) -> None:
    now = datetime.now(UTC).replace(hour=0, minute=20, second=0, microsecond=0)
    yesterday = now - timedelta(days=1)
    assert clock.tick(now).total_requested == 0  # nothing stored yet: nothing to follow
    for symbol in SYMBOLS:
        clock.materialized("raw_candles", str(day_key(symbol, yesterday - timedelta(days=1))))
    clock.materialized("raw_candles", str(day_key(BTC, yesterday)), dict.fromkeys(CANDLE_CHECKS, True))
    clock.materialized(
        "raw_candles",
        str(day_key(ETH, yesterday)),
        {**dict.fromkeys(CANDLE_CHECKS, True), "no_duplicate_minutes": False},
    )
    result = clock.tick(now + timedelta(minutes=1))
    # BTC's new day follows; ETH's candles failed a blocking check; SOL has no new day; the day before
    # yesterday does not follow: its own lookback day (three days ago) is missing.
    assert requested(result, "features") == {str(day_key(BTC, yesterday))}
    assert clock.tick(now + timedelta(minutes=2)).total_requested == 0  # handled: not requested twice


def test_features_follow_checked_candles_of_older_days_too(clock: Clock) -> None:
    """A backfill of old candle days: every day whose candles (and lookback day's) are in and checked."""
    now = datetime.now(UTC).replace(hour=0, minute=20, second=0, microsecond=0)
    clock.tick(now)
    passed = dict.fromkeys(CANDLE_CHECKS, True)
    old_days = [now - timedelta(days=back) for back in (12, 11, 10)]
    for day in old_days:
        clock.materialized("raw_candles", str(day_key(BTC, day)), passed)
        clock.materialized(
            "raw_candles", str(day_key(ETH, day)), {**passed, "ohlc_consistency": day != old_days[1]}
        )
    result = clock.tick(now + timedelta(minutes=1))
    # BTC: both later days follow (the first has no lookback day stored); ETH: the day whose candles failed
    # a check is needed by both later days, so neither follows.
    assert requested(result, "features") == {str(day_key(BTC, day)) for day in old_days[1:]}
    assert clock.tick(now + timedelta(minutes=2)).total_requested == 0


def next_retrain_tick(after: datetime) -> datetime:
    """The default cadence's next tick (Monday 03:00 UTC) after `after`."""
    assert load_settings().retrain_cron == "0 3 * * 1"
    monday = (after + timedelta(days=(7 - after.weekday()) % 7)).replace(
        hour=3, minute=0, second=0, microsecond=0
    )
    return monday if monday > after else monday + timedelta(days=7)


def test_models_retrain_weekly_after_new_checked_features(clock: Clock) -> None:
    tick = next_retrain_tick(datetime.now(UTC))
    day = tick - timedelta(days=1)
    clock.tick(tick - timedelta(minutes=10))
    for symbol in (BTC, ETH):
        clock.materialized(
            "features", str(day_key(symbol, day - timedelta(days=1))), dict.fromkeys(FEATURE_CHECKS, True)
        )
    assert requested(clock.tick(tick - timedelta(minutes=5)), "lstm_model") == set()  # before the tick
    # After the tick: new features since the tick are still needed.
    assert requested(clock.tick(tick + timedelta(minutes=1)), "lstm_model") == set()
    clock.materialized("features", str(day_key(BTC, day)), dict.fromkeys(FEATURE_CHECKS, True))
    clock.materialized(
        "features", str(day_key(ETH, day)), {**dict.fromkeys(FEATURE_CHECKS, True), "value_ranges": False}
    )
    result = clock.tick(tick + timedelta(minutes=2))
    # BTC retrains (every model type); ETH's features failed a blocking check; SOL has no features.
    for model_type in ("lstm", "transformer", "logistic"):
        assert requested(result, f"{model_type}_model") == {BTC}
    assert requested(clock.tick(tick + timedelta(minutes=3)), "lstm_model") == set()  # once per tick
    assert requested(clock.tick(tick + timedelta(days=1)), "lstm_model") == set()  # no cron tick since


def test_promotion_follows_passing_gates_and_the_ensemble_follows_promotion(clock: Clock) -> None:
    now = datetime.now(UTC)
    clock.tick(now)
    clock.materialized("lstm_model", BTC, dict.fromkeys(GATES, True))
    clock.materialized("lstm_model", ETH, {**dict.fromkeys(GATES, True), "accuracy_gate": False})
    result = clock.tick(now + timedelta(minutes=1))
    assert requested(result, "promoted_lstm_model") == {BTC}  # ETH failed its accuracy gate
    assert requested(result, "promoted_transformer_model") == set()
    # The ensemble follows in the same run as the promotion it depends on; an LSTM-only one is fine.
    assert requested(result, "ensemble") == {BTC}
    assert clock.tick(now + timedelta(minutes=2)).total_requested == 0


def test_a_real_candles_run_makes_its_days_features_follow(
    clock: Clock, dagster_instance: dg.DagsterInstance, resources: dict, tmp_path
) -> None:
    """The per-partition check results of a multi-partition run count as current for automation."""
    now = datetime.now(UTC).replace(hour=0, minute=20, second=0, microsecond=0)
    yesterday = (now - timedelta(days=1)).date()
    clock.tick(now)
    resources = {**resources, "model_store": ModelStoreResource(path=str(tmp_path / "models"))}
    job = dg.Definitions(assets=defs.assets, resources=resources).resolve_implicit_global_asset_job_def()
    run = job.execute_in_process(
        instance=dagster_instance,
        asset_selection=[dg.AssetKey("raw_candles")],
        tags=partition_range_tags(yesterday - timedelta(days=1), yesterday, (BTC,)),
    )
    assert run.success
    result = clock.tick(now + timedelta(minutes=1))
    assert requested(result, "features") == {f"{yesterday.isoformat()}|{BTC}"}
