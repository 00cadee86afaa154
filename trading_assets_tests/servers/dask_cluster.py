"""A real Dask cluster on loopback for tests: the benchmark harness's cluster
(trading_assets_bench/harness/dask_cluster.py: one scheduler and N workers, each its own OS process with its
own working, temporary and Dask directories, stopped on exit).

Usage::

    with dask_cluster(tmp_path / "dask", env={"TA_DUCKDB_PATH": ...}) as cluster:
        ...  # cluster.address, e.g. "tcp://127.0.0.1:40123"; cluster.worker_pids
"""

from __future__ import annotations

from trading_assets_bench.harness.dask_cluster import (
    DASK_CLI,
    REPO_ROOT,
    DaskCluster,
    dask_cluster,
    stop_processes,
)

__all__ = ["DASK_CLI", "REPO_ROOT", "DaskCluster", "dask_cluster", "stop_processes"]
