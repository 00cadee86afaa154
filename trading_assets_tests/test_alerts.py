import socket
from pathlib import Path

import pytest

from trading_assets.alerts import Alert, AlertLog
from trading_assets_tests.webhook_receiver import WebhookReceiver


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_alert_is_raised_once_even_after_a_restart(tmp_path: Path) -> None:
    alert = Alert(key="check:x:1", kind="check_failed", text="check failed")
    assert AlertLog(tmp_path).raise_alert(alert, to_webhook=False)
    assert not AlertLog(tmp_path).raise_alert(alert, to_webhook=False)
    assert [a.key for a in AlertLog(tmp_path).pending()] == []
    assert (tmp_path / "alerts.jsonl").read_text().count("check:x:1") == 1


def test_webhook_gets_slack_compatible_json_with_retries(tmp_path: Path) -> None:
    log = AlertLog(tmp_path)
    log.raise_alert(Alert(key="a", kind="check_failed", text="gate failed"), to_webhook=True)
    with WebhookReceiver() as receiver:
        receiver.fail_next = 2
        report = log.deliver_outbox(receiver.url, attempts=3, backoff_s=0.01)
    assert (report.delivered, report.pending) == (1, 0)
    [payload] = receiver.received
    assert payload["text"] == "gate failed" and payload["alert"]["key"] == "a"


def test_a_receiver_that_is_down_keeps_the_alert_for_later(tmp_path: Path) -> None:
    log = AlertLog(tmp_path)
    log.raise_alert(Alert(key="b", kind="run_failed", text="run failed"), to_webhook=True)
    port = free_port()
    down = log.deliver_outbox(f"http://127.0.0.1:{port}/hook", attempts=2, timeout_s=1, backoff_s=0.01)
    assert (down.delivered, down.pending) == (0, 1) and "Connection refused" in down.last_error
    log.raise_alert(Alert(key="c", kind="run_failed", text="another"), to_webhook=True)
    with WebhookReceiver(port=port) as receiver:
        up = log.deliver_outbox(receiver.url, backoff_s=0.01)
    assert (up.delivered, up.pending) == (2, 0)
    assert [p["alert"]["key"] for p in receiver.received] == ["b", "c"]
    assert log.pending() == []


def test_a_redirect_is_a_failed_delivery_and_the_alert_waits_in_the_outbox(tmp_path: Path) -> None:
    log = AlertLog(tmp_path)
    log.raise_alert(Alert(key="d", kind="check_failed", text="gate failed"), to_webhook=True)
    with WebhookReceiver() as elsewhere, WebhookReceiver() as receiver:
        receiver.redirect_to = elsewhere.url
        report = log.deliver_outbox(receiver.url, attempts=2, backoff_s=0.01)
        assert (report.delivered, report.pending) == (0, 1)
        assert report.last_error == f"HTTP 307: redirect to {elsewhere.url} not followed"
        assert elsewhere.received == [] and receiver.received == []
        receiver.redirect_to = None  # the receiver stops redirecting: the next call delivers
        assert log.deliver_outbox(receiver.url, backoff_s=0.01).delivered == 1
    assert [p["alert"]["key"] for p in receiver.received] == ["d"]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "data:,hello", "ftp://127.0.0.1/hook", "http://"])
def test_only_http_webhooks_are_posted_to(tmp_path: Path, url: str) -> None:
    log = AlertLog(tmp_path)
    log.raise_alert(Alert(key="e", kind="check_failed", text="gate failed"), to_webhook=True)
    with pytest.raises(ValueError, match="only http:// or https:// URLs"):
        log.deliver_outbox(url)
    assert [a.key for a in log.pending()] == ["e"]


def test_credentials_in_urls_never_reach_the_alert_log(tmp_path: Path) -> None:
    log = AlertLog(tmp_path)
    failure = "ExchangeFetchError: GET https://trader:hunter2@proxy.example/candles answered 500"
    log.raise_alert(
        Alert(key="f", kind="run_failed", text=failure, details={"tags": {"url": "http://u:pw@h/"}}),
        to_webhook=True,
    )
    stored = (tmp_path / "alerts.jsonl").read_text() + (tmp_path / "webhook_outbox.jsonl").read_text()
    assert "hunter2" not in stored and "pw@" not in stored
    [alert] = log.alerts()
    assert alert.text == "ExchangeFetchError: GET https://***@proxy.example/candles answered 500"
    assert alert.details == {"tags": {"url": "http://***@h/"}}


def test_an_alert_is_a_summary_under_2_kb_without_inline_images(tmp_path) -> None:
    """A check description may embed a chart (tens of kB of base64): the alert keeps a pointer instead."""
    import base64
    import json as json_module

    from trading_assets.alerts import Alert, AlertLog

    chart = "![coverage per day](data:image/png;base64," + base64.b64encode(b"x" * 20_000).decode() + ")"
    alert = Alert("k1", "check_failed", f"freshness of raw_candles failed\n{chart}", {"description": chart})
    log = AlertLog(tmp_path)
    assert log.raise_alert(alert, to_webhook=True)
    [stored] = log.alerts()
    assert "data:image" not in stored.text and "[chart: coverage per day]" in stored.text
    assert len(json_module.dumps({"text": stored.text, "alert": stored.__dict__})) < 2048
    long = Alert("k2", "check_failed", "y" * 5000)
    log.raise_alert(long, to_webhook=False)
    assert len(log.alerts()[-1].text) <= 1000 and log.alerts()[-1].text.endswith("(cut; see the UI)")
