"""Asset jobs, the daily schedule and the sensor that retries its failed runs.

One symbol never stops the others: the schedule launches one run per symbol (a header-only BTC file fails
BTC's run; ETH's and SOL's candles are stored, checked and feature-built in theirs). A daily run that
failed in a step (the source answered nothing usable, a file was missing or invalid, a fetch gave up) is
launched again by `retry_failed_daily_runs` after `DAILY_RETRY_AFTER`, up to `DAILY_ATTEMPTS` attempts in
all; every attempt carries the same `DAILY_TAG`, so the failure alert is raised once per symbol and day
(`trading_assets.defs.sensors`). A run that failed only on blocking checks is not retried: its candles
are stored and judged implausible, which a re-fetch would not change (rewriting needs `allow_revision`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from trading_assets.settings import Settings

#: Tag of every attempt of one scheduled (symbol, day): its partition key, e.g. "2024-03-01|BTC-USD".
DAILY_TAG = "trading_assets/daily"
#: Tag with the attempt number (1 for the scheduled run).
ATTEMPT_TAG = "trading_assets/attempt"
#: Attempts of a (symbol, day) in all, the scheduled run included.
DAILY_ATTEMPTS = 3
#: How long after a failed attempt the next one is launched (a late file, an exchange outage).
DAILY_RETRY_AFTER = timedelta(minutes=30)
#: How far back the retry sensor looks for failed daily runs.
RETRY_LOOKBACK = timedelta(days=2)
#: The error class of a step that failed only because one of its blocking checks failed.
BLOCKING_CHECK_FAILED = "DagsterAssetCheckFailedError"

daily_market_data_job = dg.define_asset_job(
    "daily_market_data",
    selection=dg.AssetSelection.assets("raw_candles", "features"),
    description="Candles (and what follows them per day) for one or more (symbol, day) partitions.",
)


def daily_run_request(symbol: str, day: date, attempt: int = 1) -> dg.RunRequest:
    """The run of one symbol's candles and features on `day`; attempt > 1 is a retry."""
    key = f"{day.isoformat()}|{symbol}"
    suffix = "" if attempt == 1 else f"-attempt-{attempt}"
    return dg.RunRequest(
        run_key=f"daily-{key}{suffix}",
        partition_key=key,
        tags={DAILY_TAG: key, ATTEMPT_TAG: str(attempt)},
    )


def build_daily_candles_schedule(settings: Settings) -> dg.ScheduleDefinition:
    """The daily runs of yesterday's candles, one per configured symbol."""
    symbols = settings.symbols

    @dg.schedule(
        job=daily_market_data_job,
        cron_schedule="15 0 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Shortly after midnight UTC: yesterday's candles and features, one run per symbol (one "
        "symbol's failure never stops the others; failed runs are retried by retry_failed_daily_runs).",
    )
    def daily_candles_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        scheduled = context.scheduled_execution_time or datetime.now(UTC)
        yesterday = (scheduled - timedelta(days=1)).date()
        return [daily_run_request(symbol, yesterday) for symbol in symbols]

    return daily_candles_schedule


def retry_requests(instance: dg.DagsterInstance, now: datetime) -> list[dg.RunRequest]:
    """The next attempt of each scheduled (symbol, day) whose latest attempt failed in a step at least
    `DAILY_RETRY_AFTER` before `now`, with attempts left."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            job_name=daily_market_data_job.name, created_after=now - RETRY_LOOKBACK - DAILY_RETRY_AFTER
        )
    )
    latest: dict[str, dg.DagsterRun] = {}
    for run in runs:
        key = run.tags.get(DAILY_TAG)
        if key is not None and _attempt(run) > _attempt(latest.get(key)):
            latest[key] = run
    requests = []
    for key, run in sorted(latest.items()):
        if _due_for_retry(instance, run, now):
            day, symbol = key.split("|", 1)
            requests.append(daily_run_request(symbol, date.fromisoformat(day), _attempt(run) + 1))
    return requests


def _attempt(run: dg.DagsterRun | None) -> int:
    return int(run.tags.get(ATTEMPT_TAG, "1")) if run is not None else 0


def _due_for_retry(instance: dg.DagsterInstance, run: dg.DagsterRun, now: datetime) -> bool:
    if run.status != dg.DagsterRunStatus.FAILURE or _attempt(run) >= DAILY_ATTEMPTS:
        return False
    record = instance.get_run_record_by_id(run.run_id)
    ended = record.end_time if record is not None else None
    if ended is None or now.timestamp() - ended < DAILY_RETRY_AFTER.total_seconds():
        return False
    return not failed_only_on_blocking_checks(instance, run.run_id)


def failed_only_on_blocking_checks(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether every failed step of the run failed only because a blocking check failed."""
    errors = _step_failure_classes(
        instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)  # type: ignore[arg-type]
    )
    return bool(errors) and all(name == BLOCKING_CHECK_FAILED for name in errors)


def _step_failure_classes(records: Iterable[dg.EventLogEntry]) -> list[str | None]:
    classes = []
    for record in records:
        error = record.dagster_event.event_specific_data.error if record.dagster_event else None
        classes.append(error.cls_name if error is not None else None)
    return classes


retry_failed_daily_runs = dg.SensorDefinition(
    name="retry_failed_daily_runs",
    evaluation_fn=lambda context: (
        retry_requests(context.instance, datetime.now(UTC))
        or dg.SkipReason("no failed daily run is due for a retry")
    ),
    job=daily_market_data_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Launches the next attempt of a daily (symbol, day) run that failed in a step, "
    f"{int(DAILY_RETRY_AFTER.total_seconds() // 60)} minutes after it ended, up to {DAILY_ATTEMPTS} "
    "attempts; a run that failed only on blocking checks is left to an operator.",
)
