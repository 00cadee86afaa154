"""The benchmarks behind `trading-assets bench NAME` (one module per benchmark, each with
`add_arguments(parser)` and `run(args) -> dict`), kept out of the shipped `trading_assets` package.

The CLI imports a benchmark only when asked. Installed with the package; its own dependencies come with the
`bench` extra (`pip install -e '.[bench]'`, part of `.[dev]`; `bench backfill --store ducklake` also needs
the `postgres` and `dask` extras and PostgreSQL's server binaries). `harness/` holds the offline stand-ins the
benchmarks and the tests share: a loopback exchange, a `dagster dev` driver, a PostgreSQL server, a Dask
cluster and the scale-out built from them.
"""


class BenchmarkRefused(Exception):
    """A benchmark that cannot run as asked; the CLI prints the message as one line and exits 2."""
