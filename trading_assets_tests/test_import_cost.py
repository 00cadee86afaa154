"""Every Dagster run and step process imports the code location: it must not pull in what only a training
(torch) or the synthetic market (scipy.signal) needs, and it sizes polars' thread pool
(docs/backfill-speed.md)."""

import os
import subprocess
import sys

HEAVY = ("torch", "scipy.signal", "sklearn")


def test_the_code_location_loads_without_torch_sklearn_or_scipy_signal() -> None:
    code = (
        "import sys, warnings; warnings.simplefilter('ignore'); import trading_assets.definitions; "
        f"print(','.join(name for name in {HEAVY!r} if name in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == ""


def _polars_threads(environment: dict[str, str]) -> int:
    code = (
        "import warnings; warnings.simplefilter('ignore'); import trading_assets.definitions, polars; "
        "print(polars.thread_pool_size())"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environment
    )
    return int(loaded.stdout)


def test_the_code_location_gives_polars_a_quarter_of_the_cores_unless_told_otherwise() -> None:
    environment = {name: value for name, value in os.environ.items() if name != "POLARS_MAX_THREADS"}
    assert _polars_threads(environment) == max(1, len(os.sched_getaffinity(0)) // 4)
    assert _polars_threads({**environment, "POLARS_MAX_THREADS": "3"}) == 3
