"""The benchmarks behind `trading-assets bench NAME` (one module per benchmark, each with
`add_arguments(parser)` and `run(args) -> dict`), kept out of the shipped `trading_assets` package.

The CLI imports a benchmark only when asked, from the source checkout (not part of the wheel); its own
dependencies come with the `bench` extra (`pip install -e '.[bench]'`, part of `.[dev]`; `bench backfill --store ducklake` also needs
the `postgres` and `dask` extras and PostgreSQL's server binaries). `harness/` holds the offline stand-ins the
benchmarks and the tests share: a loopback exchange, a `dagster dev` driver, a PostgreSQL server, a Dask
cluster and the scale-out built from them.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class BenchmarkRefused(Exception):
    """A benchmark that cannot run as asked; the CLI prints the message as one line and exits 2."""


@contextmanager
def scratch_directory(prefix: str, keep: bool) -> Iterator[Path]:
    """A temporary directory for one benchmark run, removed afterwards unless `keep` (then its path is printed).
    Meanwhile SIGTERM (a CI timeout, a kill) unwinds like Ctrl-C, so the servers started inside stop too."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    previous = signal.signal(signal.SIGTERM, _raise_system_exit)
    try:
        yield root
    finally:
        signal.signal(signal.SIGTERM, previous)
        if keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def _raise_system_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)
