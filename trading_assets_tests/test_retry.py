"""The one retry loop: budget by calls or by time, waits between calls, and the error it ends with."""

from __future__ import annotations

import time

import pytest

from trading_assets import retry as module
from trading_assets.retry import retry


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(module.time, "sleep", slept.append)
    return slept


def failing(times: int, error: type[Exception] = OSError):
    """A call that raises `error` its first `times` calls, then returns the call's number."""

    def call(attempt: int) -> int:
        if attempt < times:
            raise error(f"call {attempt}")
        return attempt

    return call


def test_a_call_is_retried_until_it_returns_with_the_waits_asked(sleeps: list[float]) -> None:
    retried = []
    result = retry(failing(3), wait=lambda n: 0.1 * 2**n, attempts=5, on_retry=lambda: retried.append(1))
    assert result == 3 and sleeps == [0.1, 0.2, 0.4] and len(retried) == 3


def test_out_of_calls_the_give_up_error_is_raised_and_chains_nothing(sleeps: list[float]) -> None:
    def give_up(error: Exception, calls: int) -> BaseException:
        return RuntimeError(f"gave up after {calls} calls: {error}")

    with pytest.raises(RuntimeError, match="gave up after 3 calls: call 2") as raised:
        retry(failing(10), wait=lambda n: 0.0, attempts=3, give_up=give_up)
    assert raised.value.__context__ is None and raised.value.__cause__ is None
    assert len(sleeps) == 2


def test_an_error_that_is_not_retryable_ends_at_once_as_it_is(sleeps: list[float]) -> None:
    with pytest.raises(ValueError, match="call 0"):
        retry(failing(10, ValueError), wait=lambda n: 1.0, retryable=lambda e: isinstance(e, OSError))
    assert sleeps == []


def test_a_deadline_bounds_the_time_spent_retrying() -> None:
    started = time.monotonic()
    with pytest.raises(OSError):
        retry(failing(10**9), wait=lambda n: 0.01, deadline_s=0.2)
    assert 0.2 <= time.monotonic() - started < 2.0
