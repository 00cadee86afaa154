"""Every Dagster run and step process imports the code location: it must not pull in what only a training
(torch) or the synthetic market (scipy.signal) needs (docs/backfill-speed.md)."""

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
