"""No step outlives its run, and nothing a dead or failed run does reaches the store.

Two layers, both set up by `guard_step(context)` at the top of every asset that writes:

- **Parent-death signal.** The multiprocess executor runs each step in a child of the run worker. When the
  worker dies (kill -9, out of memory) the children would live on and finish their work into a run the
  daemon has marked FAILURE, next to the retry doing the same. On Linux the step process asks the kernel
  (`prctl(PR_SET_PDEATHSIG, SIGKILL)`) to be killed the moment its parent goes; if the parent is already
  gone when it asks, it ends itself at once.
- **Run still alive.** The returned check reads the run's status from the instance and raises
  `RunNotActiveError` unless it is STARTED. The core calls it inside each store transaction last before
  the write, before an artifact is written, and at every training progress report; the shell calls it
  before a promotion. It covers what the signal cannot: steps on Dask workers (other processes, other
  hosts) and runs canceled or marked failed while a step was still busy.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable

import dagster as dg

_PR_SET_PDEATHSIG = 1


class RunNotActiveError(RuntimeError):
    """The step's run is no longer STARTED (failed, canceled, its worker died): the step must not write."""


def guard_step(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> Callable[[], None]:
    """Bind this step process to its run worker and return the check that its run is still STARTED."""
    bind_to_parent_process()
    return run_still_active(context.instance, context.run.run_id)


def bind_to_parent_process() -> bool:
    """In a multiprocessing child (a step of the multiprocess executor) on Linux: be killed with SIGKILL when
    the parent process dies. Returns whether the binding is in place (False elsewhere: the run worker
    itself, an in-process run, another OS)."""
    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return False
    if os.getppid() != parent.pid:  # the parent died before the binding: this step is already orphaned
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def run_still_active(instance: dg.DagsterInstance, run_id: str) -> Callable[[], None]:
    """A check that raises `RunNotActiveError` (one line: run, status) unless run `run_id` is STARTED."""

    def check() -> None:
        run = instance.get_run_by_id(run_id)
        status = run.status if run is not None else None
        if status != dg.DagsterRunStatus.STARTED:
            state = status.value if status is not None else "gone from the instance"
            raise RunNotActiveError(f"run {run_id[:8]} is {state}: this step writes nothing more")

    return check
