"""The step executor of the code location, chosen by `TA_EXECUTOR` (see docs/operations.md, "Executors").

- `in_process`: every step in the run's own process, one after another (debugging, tiny runs).
- `multiprocess` (default): each step in a child process on the run's host, at most 4 at once, trainings
  limited to `TRAINING_SLOTS`, step retries honoured.
- `dask`: each step as a task on an existing Dask cluster at `TA_DASK_SCHEDULER`; workers are separate
  processes, possibly on other machines (they need this package, the same environment variables and access
  to the Dagster instance and the DuckDB file; see docs/operations.md, "Running on several machines").
"""

from __future__ import annotations

import dagster as dg

from trading_assets.settings import Settings

#: Steps of one run that the multiprocess executor runs at once.
MAX_CONCURRENT_STEPS = 4


def executor_from_settings(settings: Settings) -> dg.ExecutorDefinition:
    """The executor named by `settings.executor`, configured for this project."""
    if settings.executor == "in_process":
        return dg.in_process_executor
    if settings.executor == "multiprocess":
        return _multiprocess_executor()
    if settings.executor == "dask":
        return _dask_executor(settings.dask_scheduler)
    raise ValueError(f"TA_EXECUTOR={settings.executor!r}: expected one of in_process, multiprocess, dask")


def _multiprocess_executor() -> dg.ExecutorDefinition:
    # Imported here: the models module pulls in torch, which a Dask worker loading only the market-data
    # assets does not need.
    from trading_assets.defs.assets.models import TRAINING_TAG
    from trading_assets.ml.training_run import TRAINING_SLOTS

    return dg.multiprocess_executor.configured(
        {
            "max_concurrent": MAX_CONCURRENT_STEPS,
            "tag_concurrency_limits": [{"key": TRAINING_TAG, "limit": TRAINING_SLOTS}],
            "retries": {"enabled": {}},
        }
    )


def _dask_executor(address: str | None) -> dg.ExecutorDefinition:
    if not address:
        raise ValueError(
            "TA_EXECUTOR=dask needs the address of a running Dask scheduler in TA_DASK_SCHEDULER, "
            "e.g. TA_DASK_SCHEDULER=tcp://127.0.0.1:8786 (start one with `dask scheduler`)"
        )
    try:
        import dagster_dask  # noqa: F401  (the extra; the module below builds on it)

        from trading_assets.defs.dask_executor import run_scoped_dask_executor
    except ImportError as error:
        raise ImportError(
            "TA_EXECUTOR=dask needs dagster-dask and distributed: install the `dask` extra "
            "(pip install -e '.[dask]')"
        ) from error
    return run_scoped_dask_executor.configured({"cluster": {"existing": {"address": address}}})
