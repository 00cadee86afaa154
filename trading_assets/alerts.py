"""Alerts: an append-only JSONL log and an optional Slack-compatible webhook, with an outbox.

Every alert has a stable `key` (for a failed check: the check and its execution record; for a failed
run: the run id). `AlertLog.raise_alert` appends an alert to `alerts.jsonl` only if its key is not there
yet, so an alert is raised once even when the sensor that raises it restarts or re-reads old events.
Alerts meant for the webhook also go to `webhook_outbox.jsonl`; `deliver_outbox` posts them as JSON
(`{"text": ..., "alert": {...}}`), retrying with backoff, and keeps whatever could not be delivered for
the next call. A receiver that is down never loses an alert and never raises out of `deliver_outbox`.
Only http(s) URLs are posted to, and redirects are not followed: a redirect is a failed delivery (the
alert stays in the outbox), so an alert never lands on a host nobody configured. Credentials inside URLs
are redacted from every alert before it is recorded. No Dagster here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from trading_assets.atomic import write_text_atomically
from trading_assets.retry import retry
from trading_assets.urls import redact, redact_values, require_http_url

ALERTS_FILE = "alerts.jsonl"
OUTBOX_FILE = "webhook_outbox.jsonl"
LOCK_FILE = ".alerts.lock"


@dataclass(frozen=True)
class Alert:
    key: str
    kind: str
    text: str
    details: dict[str, object] = field(default_factory=dict)
    raised_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())


@dataclass(frozen=True)
class DeliveryReport:
    delivered: int
    pending: int
    last_error: str | None


class AlertLog:
    """Alerts under `directory`: the append-only log and the webhook outbox."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.log_path = self.directory / ALERTS_FILE
        self.outbox_path = self.directory / OUTBOX_FILE

    def alerts(self) -> list[Alert]:
        """Every alert raised so far, oldest first."""
        return _read_alerts(self.log_path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise writers (two sensors may raise alerts at once) with an advisory file lock."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / LOCK_FILE).open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def raise_alert(self, alert: Alert, to_webhook: bool) -> bool:
        """Record `alert` (credentials in URLs redacted) unless its key was raised before; True when new."""
        alert = bounded(redacted(alert))
        with self._locked():
            if alert.key in {known.key for known in self.alerts()}:
                return False
            line = json.dumps(asdict(alert), sort_keys=True) + "\n"
            if to_webhook:
                _append(self.outbox_path, line)
            _append(self.log_path, line)
            return True

    def pending(self) -> list[Alert]:
        return _read_alerts(self.outbox_path)

    def deliver_outbox(
        self, url: str, attempts: int = 3, timeout_s: float = 5.0, backoff_s: float = 0.2
    ) -> DeliveryReport:
        """POST every pending alert to `url`; keep the ones that fail for the next call.

        A `url` that is not http(s) raises ValueError before anything is posted."""
        require_http_url("webhook URL", url)
        delivered: set[str] = set()
        last_error = None
        for alert in self.pending():
            error = _post_with_retries(url, alert, attempts, timeout_s, backoff_s)
            if error is None:
                delivered.add(alert.key)
            else:
                last_error = error
        with self._locked():
            # Re-read: alerts raised while posting stay in the outbox.
            still_pending = [alert for alert in self.pending() if alert.key not in delivered]
            if delivered:
                _rewrite(self.outbox_path, still_pending)
        return DeliveryReport(len(delivered), len(still_pending), last_error)


def redacted(alert: Alert) -> Alert:
    """`alert` with the credentials of every URL in its text and details replaced by `***`."""
    return replace(alert, text=redact(alert.text), details=redact_values(alert.details))


#: An alert is a summary with a pointer, never the metadata itself: at most this many characters of text, each
#: detail at most `_MAX_DETAIL_CHARS`, and images (a chart embedded in a check's description) left out.
MAX_ALERT_TEXT_CHARS = 1_000
_MAX_DETAIL_CHARS = 200
_INLINE_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")


def bounded(alert: Alert) -> Alert:
    """`alert` short enough for a chat message (under 2 kB as JSON): inline images become `[chart: name]`,
    long texts are cut with a note."""
    details = {key: _short(value, _MAX_DETAIL_CHARS) for key, value in alert.details.items()}
    return replace(alert, text=_short(alert.text, MAX_ALERT_TEXT_CHARS), details=details)


def _short(value: object, limit: int) -> object:
    if not isinstance(value, str):
        return value
    text = _INLINE_IMAGE.sub(lambda match: f"[chart: {match.group(1) or 'image'}]", value)
    return text if len(text) <= limit else text[: limit - 20] + " … (cut; see the UI)"


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Turns a 3xx answer into an HTTPError instead of following it to wherever it points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201 (urllib's API)
        return None


#: Posts without following redirects (http and https only: the URL was checked before).
_OPENER = urllib.request.build_opener(_RefuseRedirects)


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def _read_alerts(path: Path) -> list[Alert]:
    if not path.exists():
        return []
    alerts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            alerts.append(Alert(**json.loads(line)))
        except (json.JSONDecodeError, TypeError) as error:
            raise ValueError(f"{path}, line {number}: not an alert record ({error})") from error
    return alerts


def _rewrite(path: Path, alerts: list[Alert]) -> None:
    """Replace the outbox atomically (temporary file, then rename)."""
    write_text_atomically(path, "".join(json.dumps(asdict(alert), sort_keys=True) + "\n" for alert in alerts))


class _Undelivered(Exception):
    """One post that did not deliver (its text says why); retried by `_post_with_retries`."""


def _post_with_retries(
    url: str, alert: Alert, attempts: int, timeout_s: float, backoff_s: float
) -> str | None:
    """None when delivered, otherwise the last error as text (credentials redacted)."""
    body = json.dumps({"text": alert.text, "alert": asdict(alert)}).encode()

    def post(_attempt: int) -> None:
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        error = _post_once(request, timeout_s)
        if error is not None:
            raise _Undelivered(error)

    try:
        retry(
            post,
            wait=lambda n: backoff_s * 2**n,
            retryable=lambda error: isinstance(error, _Undelivered),
            attempts=attempts,
        )
    except _Undelivered as undelivered:
        return redact(str(undelivered))
    return None


def _post_once(request: urllib.request.Request, timeout_s: float) -> str | None:
    """None on a 2xx answer; otherwise what went wrong. A redirect is not followed and counts as failed."""
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            return None if 200 <= response.status < 300 else f"HTTP {response.status}"
    except urllib.error.HTTPError as failure:
        with failure:
            if 300 <= failure.code < 400:
                return f"HTTP {failure.code}: redirect to {failure.headers.get('Location')} not followed"
            return f"HTTP {failure.code}"
    except (urllib.error.URLError, OSError) as failure:
        return f"{type(failure).__name__}: {failure}"
