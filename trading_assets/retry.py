"""The one retry loop: the store's lock and commit conflicts, the lake's attach race, ccxt's requests and the
alert webhook all retry through `retry`.

A call that raises is retried while `retryable(error)` holds and the budget lasts (`attempts` calls in all,
and/or until `deadline_s` seconds after the first call), sleeping `wait(n)` seconds after the n-th failed
call (n from 0). When retrying stops, `give_up(error, calls)` names the error to raise (default: the error
itself), and it is raised outside the `except` block: nothing is chained to it implicitly, so an error
whose text must not leave (ccxt's quote the URL with its password) can be replaced by a redacted one
without riding along as `__context__`. A `give_up` that wants a chain sets `__cause__` itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def retry(
    call: Callable[[int], T],
    *,
    wait: Callable[[int], float],
    retryable: Callable[[Exception], bool] = lambda _error: True,
    attempts: int | None = None,
    deadline_s: float | None = None,
    give_up: Callable[[Exception, int], BaseException] = lambda error, _calls: error,
    on_retry: Callable[[], None] = lambda: None,
) -> T:
    """`call(n)`'s result for the first call n (from 0) that returns; see the module for the rest.
    `on_retry` runs before each sleep (a counter of retries)."""
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    calls = 0
    while True:
        failure: BaseException | None = None
        try:
            return call(calls)
        except Exception as error:  # noqa: BLE001 (`retryable` and `give_up` decide)
            calls += 1
            out_of_calls = attempts is not None and calls >= attempts
            out_of_time = deadline is not None and time.monotonic() >= deadline
            if not retryable(error) or out_of_calls or out_of_time:
                failure = give_up(error, calls)
        if failure is not None:
            raise failure  # outside the handler: no implicit __context__
        on_retry()
        time.sleep(wait(calls - 1))
