"""Sensors that turn failed check evaluations and failed runs into alerts (log, JSONL, webhook)."""

import dagster as dg
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)

from trading_assets.alerts import Alert, AlertLog
from trading_assets.settings import load_settings

#: Failed executions per check looked at each tick; older ones were alerted on earlier ticks.
RECENT_FAILURES_PER_CHECK = 100


def check_alert(record: AssetCheckExecutionRecord) -> Alert:
    """The alert for one failed check execution; its key names the execution, so it is raised once."""
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
    summary = ", ".join(f"{key}={value}" for key, value in list(simple.items())[:6])
    return Alert(
        key=f"check:{asset}:{record.key.name}:{record.id}",
        kind="check_failed",
        text=f"{severity}: check {record.key.name} on {asset}{where} failed in run {record.run_id[:8]}: {summary}",
        details={
            "asset": asset,
            "check": record.key.name,
            "partition": record.partition,
            "severity": severity,
            "run_id": record.run_id,
            "metadata": simple,
        },
    )


def _deliver(context: dg.SensorEvaluationContext | dg.RunFailureSensorContext, log: AlertLog) -> None:
    url = load_settings().alert_webhook_url
    if not url:
        return
    report = log.deliver_outbox(url)
    if report.pending:
        context.log.warning(
            f"webhook: {report.delivered} delivered, {report.pending} kept for retry ({report.last_error})"
        )


@dg.sensor(
    name="check_failure_alerts",
    description="One alert per failed asset-check evaluation (gates and data quality): log, JSONL, webhook.",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def check_failure_alerts(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    settings = load_settings()
    log = AlertLog(settings.alerts_dir)
    storage = context.instance.event_log_storage
    raised = 0
    for check_key in context.repository_def.asset_graph.asset_check_keys:
        failures = storage.get_asset_check_execution_history(
            check_key, limit=RECENT_FAILURES_PER_CHECK, status={AssetCheckExecutionRecordStatus.FAILED}
        )
        for record in failures:
            alert = check_alert(record)
            if log.raise_alert(alert, to_webhook=bool(settings.alert_webhook_url)):
                context.log.warning(f"ALERT {alert.text}")
                raised += 1
    _deliver(context, log)
    return dg.SkipReason(f"{raised} new alert(s)")


@dg.run_failure_sensor(
    name="run_failure_alerts",
    description="One alert per failed run through the same sinks as the check alerts.",
    default_status=dg.DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=False,
)
def run_failure_alerts(context: dg.RunFailureSensorContext) -> None:
    settings = load_settings()
    log = AlertLog(settings.alerts_dir)
    run = context.dagster_run
    alert = Alert(
        key=f"run:{run.run_id}",
        kind="run_failed",
        text=f"ERROR: run {run.run_id[:8]} of {run.job_name} failed: {context.failure_event.message}",
        details={"run_id": run.run_id, "job": run.job_name, "tags": dict(run.tags)},
    )
    if log.raise_alert(alert, to_webhook=bool(settings.alert_webhook_url)):
        context.log.warning(f"ALERT {alert.text}")
    _deliver(context, log)
