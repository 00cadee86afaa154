"""Sensors that turn failed check evaluations and failed runs into alerts (log, JSONL, webhook)."""

import dagster as dg

from trading_assets.alerts import Alert, AlertLog, redacted
from trading_assets.defs.dagster_private import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
    SerializableErrorInfo,
)
from trading_assets.defs.jobs import ATTEMPT_TAG, BLOCKING_CHECK_FAILED, DAILY_ATTEMPTS, DAILY_TAG
from trading_assets.settings import Settings

#: Failed executions per check looked at each tick; older ones were alerted on earlier ticks.
RECENT_FAILURES_PER_CHECK = 100


def check_alert(record: AssetCheckExecutionRecord) -> Alert:
    """The alert for one failed check execution; its key names the execution, so it is raised once.

    A gate (a check whose metadata has `measured` and `threshold`) says what was measured against what:
    `ERROR: check accuracy_gate on lstm_model [BTC-USD] failed in run 1a2b3c4d: measured 0.5120 vs
    threshold 0.6800 (5000 samples)`; other checks give their description, if any, and their simple metadata."""
    evaluation = (
        record.event.dagster_event.event_specific_data
        if record.event and record.event.dagster_event
        else None
    )
    severity = evaluation.severity.value if evaluation else "ERROR"
    metadata = {
        key: getattr(value, "value", value)
        for key, value in (evaluation.metadata if evaluation else {}).items()
    }
    simple = {key: value for key, value in metadata.items() if isinstance(value, int | float | str | bool)}
    asset = record.key.asset_key.to_user_string()
    where = f" [{record.partition}]" if record.partition else ""
    reason = _measured_against_threshold(simple)
    if evaluation and evaluation.description and "measured" not in simple:  # a data check says why itself
        reason = f"{evaluation.description} ({reason})"
    return Alert(
        key=f"check:{asset}:{record.key.name}:{record.id}",
        kind="check_failed",
        text=f"{severity}: check {record.key.name} on {asset}{where} failed in run {record.run_id[:8]}: "
        + reason,
        details={
            "asset": asset,
            "check": record.key.name,
            "partition": record.partition,
            "severity": severity,
            "run_id": record.run_id,
            "metadata": simple,
        },
    )


def _measured_against_threshold(metadata: dict[str, object]) -> str:
    measured, threshold = metadata.get("measured"), metadata.get("threshold")
    if isinstance(measured, int | float) and isinstance(threshold, int | float):
        samples = f" ({metadata['samples']} samples)" if "samples" in metadata else ""
        return f"measured {measured:.4f} vs threshold {threshold:.4f}{samples}"
    return ", ".join(f"{key}={value}" for key, value in list(metadata.items())[:6])


def run_failure_alert(instance: dg.DagsterInstance, run: dg.DagsterRun, message: str) -> Alert | None:
    """The alert for a failed run, or None when every failed step failed only on blocking checks: each
    failed check already raised its own alert (`check_failure_alerts`), so the run is not alerted twice.
    Otherwise the alert names the failed steps with their errors, and any failed blocking checks. Every
    attempt of one scheduled (symbol, day) shares one alert key: the first failure raises it, a failing
    retry does not raise it again."""
    events = instance.all_logs(
        run.run_id, of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.ASSET_CHECK_EVALUATION}
    )
    failed_steps: list[str] = []
    failed_checks: list[str] = []
    for record in events:
        event = record.dagster_event
        data = event.event_specific_data
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            if not data.passed and data.severity == dg.AssetCheckSeverity.ERROR:
                where = f" [{data.partition}]" if data.partition else ""
                failed_checks.append(f"{data.check_name} on {data.asset_key.to_user_string()}{where}")
        elif data.error is None or data.error.cls_name != BLOCKING_CHECK_FAILED:
            failed_steps.append(f"{event.step_key}: {_root_cause(data.error)}")
    if failed_checks and not failed_steps:
        return None
    because = "; ".join(failed_steps) or message
    gates = f" (failed blocking checks: {', '.join(failed_checks)})" if failed_checks else ""
    daily = run.tags.get(DAILY_TAG)
    retried = (
        f" [{daily}, attempt {run.tags.get(ATTEMPT_TAG, '1')} of {DAILY_ATTEMPTS}; retried by "
        "retry_failed_daily_runs, alerted once]"
        if daily and failed_steps
        else ""
    )
    return Alert(
        key=f"daily:{daily}" if daily else f"run:{run.run_id}",
        kind="run_failed",
        text=f"ERROR: run {run.run_id[:8]} of {run.job_name} failed: {because}{gates}{retried}",
        details={
            "run_id": run.run_id,
            "job": run.job_name,
            "failed_steps": failed_steps,
            "failed_checks": failed_checks,
            "tags": dict(run.tags),
        },
    )


def _raise(
    context: dg.SensorEvaluationContext | dg.RunFailureSensorContext,
    log: AlertLog,
    alert: Alert,
    webhook_url: str | None,
) -> bool:
    """Record `alert` once (credentials redacted) and log it; True when it was new."""
    alert = redacted(alert)
    if not log.raise_alert(alert, to_webhook=bool(webhook_url)):
        return False
    context.log.warning(f"ALERT {alert.text}")
    return True


def _root_cause(error: SerializableErrorInfo | None) -> str:
    """The first line of the innermost error (the user's exception rather than Dagster's wrapper)."""
    if error is None:
        return "no error recorded"
    while error.cause is not None:
        error = error.cause
    return (error.message.strip().splitlines() or [error.cls_name or "error"])[0]


def _deliver(
    context: dg.SensorEvaluationContext | dg.RunFailureSensorContext, log: AlertLog, url: str | None
) -> None:
    if not url:
        return
    report = log.deliver_outbox(url)
    if report.pending:
        context.log.warning(
            f"webhook: {report.delivered} delivered, {report.pending} kept for retry ({report.last_error})"
        )


def build_alert_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    """`check_failure_alerts` and `run_failure_alerts`, writing to the settings' alerts directory and webhook."""
    alerts_dir, webhook_url = settings.alerts_dir, settings.alert_webhook_url

    @dg.sensor(
        name="check_failure_alerts",
        description="One alert per failed asset-check evaluation (gates and data quality): log, JSONL, webhook.",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def check_failure_alerts(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        log = AlertLog(alerts_dir)
        storage = context.instance.event_log_storage
        raised = 0
        for check_key in context.repository_def.asset_graph.asset_check_keys:
            failures = storage.get_asset_check_execution_history(
                check_key, limit=RECENT_FAILURES_PER_CHECK, status={AssetCheckExecutionRecordStatus.FAILED}
            )
            for record in failures:
                raised += _raise(context, log, check_alert(record), webhook_url)
        _deliver(context, log, webhook_url)
        return dg.SkipReason(f"{raised} new alert(s)")

    @dg.run_failure_sensor(
        name="run_failure_alerts",
        description="One alert per failed run through the same sinks as the check alerts, naming the failed "
        "steps; none for a run whose steps failed only on blocking checks (each check raised its own alert).",
        default_status=dg.DefaultSensorStatus.RUNNING,
        monitor_all_code_locations=False,
    )
    def run_failure_alerts(context: dg.RunFailureSensorContext) -> None:
        log = AlertLog(alerts_dir)
        alert = run_failure_alert(context.instance, context.dagster_run, context.failure_event.message or "")
        if alert is not None:
            _raise(context, log, alert, webhook_url)
        _deliver(context, log, webhook_url)

    return [check_failure_alerts, run_failure_alerts]
