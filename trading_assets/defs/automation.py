"""Declarative automation: what materializes on its own, and when.

- `features` follow new `raw_candles` of any day (the daily schedule writes yesterday's candles, a backfill
  older days; the features of each such day follow) once the candles' blocking checks passed.
- The models retrain on a cadence (`TA_RETRAIN_CRON`, default weekly, Monday 03:00 UTC) after new features
  arrived since the last tick, and only while no blocking check of their features has failed.
- Promotion follows a model materialization whose blocking gates passed; the ensemble follows promotions,
  whatever members are promoted; live performance is measured again when new candles arrive.

The automation sensor below runs by default, so `dagster dev` (webserver + daemon) applies all of this.
"""

import dagster as dg

AC = dg.AutomationCondition

#: No partition of any dependency has a failed blocking check. `all_deps_blocking_checks_passed()` alone
#: is satisfied when ONE of a dependency's mapped partitions passed (features read two candle days).
NO_UPSTREAM_BLOCKING_CHECK_FAILED = ~AC.any_deps_match(
    AC.any_checks_match(AC.check_failed(), blocking_only=True)
).with_label("no_upstream_blocking_check_failed")

#: Features of any (symbol, day) follow new candles of that day or the day before (its lookback), once the
#: candles' blocking checks passed: the latest day after the daily schedule, and older days as a backfill
#: writes them. `eager()` would consider only the latest day; this is eager without that restriction.
FEATURES_FOLLOW_CANDLES = (
    AC.any_deps_updated().since_last_handled()
    & ~AC.any_deps_missing()
    & ~AC.any_deps_in_progress()
    & ~AC.in_progress()
    & AC.all_deps_blocking_checks_passed()
    & NO_UPSTREAM_BLOCKING_CHECK_FAILED
).with_label("features_follow_checked_candles")

#: Promotion follows a model whose blocking gates passed (and never one whose gates failed).
PROMOTE_AFTER_PASSING_GATES = (AC.eager() & AC.all_deps_blocking_checks_passed()).with_label(
    "promote_after_passing_gates"
)


def _follows_any_update(label: str) -> dg.AutomationCondition:
    """After any dependency updated (unlike `eager()`, without waiting for every dependency to exist, and a
    missing target alone never triggers it)."""
    return (
        AC.any_deps_updated().since_last_handled() & ~AC.any_deps_in_progress() & ~AC.in_progress()
    ).with_label(label)


#: The ensemble follows any promotion, whatever members are promoted (with none it has nothing to combine).
ENSEMBLE_FOLLOWS_PROMOTIONS = _follows_any_update("ensemble_follows_promotions")

#: Live performance is re-measured when new candles (the outcomes of recorded signals) or a new ensemble arrive.
LIVE_PERFORMANCE_FOLLOWS_CANDLES = _follows_any_update("live_performance_follows_candles")


def retrain_on_cadence(cron_schedule: str) -> dg.AutomationCondition:
    """Retrain after each tick of `cron_schedule` (UTC) once features updated since that tick, only when
    the features' blocking checks passed and none of them failed."""
    return (
        AC.on_cron(cron_schedule, "UTC")
        & AC.all_deps_blocking_checks_passed()
        & NO_UPSTREAM_BLOCKING_CHECK_FAILED
    ).with_label(f"retrain_on_cadence({cron_schedule})")


automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Applies the assets' automation conditions (features follow candles, weekly retraining, "
    "promotion after passing gates, ensemble after promotion).",
)
