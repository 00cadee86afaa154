"""The scale-out for real: a Dask scheduler and workers that share only PostgreSQL and the lake's data path.

Started here, every process on 127.0.0.1 (`trading_assets_bench.harness.scale_out`, docs/scale-out.md): a
PostgreSQL server (two databases: the Dagster instance and the DuckLake catalog), a Dask scheduler and two
workers, each its own process with its own working directory, TMPDIR, DAGSTER_HOME and TA_DATA_DIR; the
code location's host launches runs with `dagster asset materialize` (TA_EXECUTOR=dask, TA_STORE=ducklake).

1. A backfill of raw_candles + features, 3 symbols x 11 days (one run per symbol, all at once), during
   which one worker is killed with SIGKILL (its nanny and its task process, as a machine dies) while it runs
   a step. Whatever that backfill's runs did: no (symbol, minute) is stored twice and no day is stored in
   part.
2. A replacement worker joins and the backfill is run again: it succeeds, its steps run on both live
   workers, and every (table, symbol, day) slice equals the embedded DuckDB file's after the same backfill
   (`dagster asset materialize` into a file): nothing lost, nothing twice, row for row.
3. The worker that wrote one symbol's features leaves (and its local directory is deleted); the logistic
   model of that symbol trains on the other worker, from those features in the lake, and its manifest's
   data snapshot reads back exactly.
4. Everything started is stopped: no process with the scale-out's environment is left, the server's
   directory is gone.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from trading_assets.features.provenance import data_snapshot, read_training_rows
from trading_assets.store.duckdb_store import close_lakes, query
from trading_assets_bench.harness.dagster_server import command_lines, processes_with_env
from trading_assets_bench.harness.scale_out import (
    RunSteps,
    ScaleOut,
    compare_stores,
    embedded_backfill,
    scale_out,
)
from trading_assets_tests.servers.postgres import PostgresServer, postgres_server

pytestmark = pytest.mark.e2e  # PostgreSQL, a Dask scheduler, three workers, a dozen Dagster runs

SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")
#: The history starts on FIRST: its features are computed without a previous day, in both stores alike.
FIRST = date(2024, 3, 1)
LAST = FIRST + timedelta(days=10)
DAYS = (LAST - FIRST).days + 1
MINUTES = 1440
VICTIM = "worker-0"
#: Training settings (the environment of every process; a cheap logistic model judged on 2 folds).
TRAINING_ENV = {"TA_FOLDS": "2", "TA_TRAIN_EPOCHS": "2", "TA_TRAIN_SAMPLES_PER_EPOCH": "256"}


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with postgres_server(db_name="scale_out") as running:
        yield running
    assert not running.base_dir.exists()


def test_a_backfill_across_workers_survives_a_killed_worker_and_matches_the_embedded_store(
    tmp_path: Path, server: PostgresServer
) -> None:
    lake_data = tmp_path / "site" / "shared" / "lake"
    with scale_out(tmp_path / "site", server, 2, SYMBOLS, FIRST, extra_env=TRAINING_ENV) as site:
        cluster = site.cluster
        assert Path(site.env["TA_LAKE_DATA_PATH"]) == lake_data
        with site.instance() as instance:  # deploy/scale-out/dagster.yaml: PostgreSQL, the pooled event log
            assert type(instance.event_log_storage).__name__ == "PooledPostgresEventLogStorage"
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"

        # 1. The backfill, one worker killed while it runs a step.
        started = time.perf_counter()
        runs = site.start_backfill(FIRST, LAST, label="killed")
        victim_task = _wait_until_running_a_step(site, VICTIM)
        time.sleep(1.0)  # into the step: candles fetched, the slice write under way or done
        cluster.kill_worker(VICTIM)
        killed = site.wait(runs, started)
        assert VICTIM not in cluster.live_workers()
        after_kill = _slice_rows(site)
        assert after_kill["duplicates"] == 0, after_kill
        assert set(after_kill["rows_per_slice"]) <= {MINUTES}, ("a day stored in part", after_kill)

        # 2. A replacement worker; the backfill again.
        cluster.add_worker("worker-2")
        rerun_started = time.time()
        rerun = site.backfill(FIRST, LAST, label="rerun")
        assert rerun.succeeded, (rerun, _logs(rerun), cluster.logs())
        live_pids = cluster.pids_by_name()
        assert set(live_pids) == {"worker-1", "worker-2"}
        rerun_runs = site.runs(since=rerun_started)
        assert sorted(run.symbol for run in rerun_runs) == sorted(SYMBOLS)  # one run per symbol
        assert {run.status for run in rerun_runs} == {"SUCCESS"}
        # Each of these runs of the same job executed its own steps (none was handed another run's result).
        assert all({"raw_candles", "features"} <= set(run.steps) for run in rerun_runs), rerun_runs
        step_pids = {pid for run in rerun_runs for pids in run.steps.values() for pid in pids}
        assert step_pids == set(live_pids.values()), (step_pids, live_pids)  # spread over both workers

        embedded, reference = embedded_backfill(tmp_path / "embedded", SYMBOLS, FIRST, FIRST, LAST)
        assert reference.succeeded, _logs(reference)
        comparison = compare_stores(site.lake, embedded, SYMBOLS, FIRST, LAST)
        assert comparison.lost == [] and comparison.differing == [], comparison
        assert comparison.duplicate_rows == 0
        assert comparison.embedded_rows == {"candles": 3 * DAYS * MINUTES, "features": 3 * DAYS * MINUTES}
        assert comparison.rows == 2 * 3 * DAYS * MINUTES and comparison.matches
        assert comparison.slices == 2 * 3 * DAYS

        # 3. A model trains on one worker from the features another wrote.
        symbol, writer = _a_feature_writer(rerun_runs, live_pids)
        trainer = next(name for name in live_pids if name != writer)
        cluster.stop_worker(writer)
        shutil.rmtree(cluster.directories[writer])
        train_started = time.time()
        command = site.materialize("train", "logistic_model", partition=symbol)
        training = site.wait({"train": command}, time.perf_counter())
        [trained] = site.runs(since=train_started)
        assert trained.symbol == symbol
        assert trained.steps["logistic_model"] == [live_pids[trainer]], (trained, live_pids, _logs(training))
        run_id = trained.run_id
        manifest = _manifest_of(site, run_id)
        record = manifest["data_snapshot"]
        assert (manifest["symbol"], record["backend"], record["rows"]) == (symbol, "ducklake", DAYS * MINUTES)
        assert data_snapshot(read_training_rows(site.lake, manifest)) == record
        # Each host wrote its step logs into its own DAGSTER_HOME: the trainer's holds the training run's.
        assert (cluster.directories[trainer] / "dagster_home" / run_id / "compute_logs").is_dir()
        assert not (site.home / run_id).exists()

        print(
            f"\nscale-out: killed backfill {killed.seconds:.1f} s (victim ran {victim_task}; runs exited "
            f"{[run.returncode for run in killed.runs]}), rerun {rerun.seconds:.1f} s, embedded "
            f"{reference.seconds:.1f} s, training {training.seconds:.1f} s on {trainer} ({symbol}'s features "
            f"by {writer})"
        )
    close_lakes()
    # 4. Nothing left behind: every process of the scale-out had the lake's data path in its environment.
    assert command_lines(processes_with_env("TA_LAKE_DATA_PATH", str(lake_data))) == []


def _wait_until_running_a_step(site: ScaleOut, worker: str, timeout_s: float = 180.0) -> str:
    """The key of the first raw_candles or features task the scheduler has `worker` run."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for key in site.cluster.processing().get(worker, []):
            if ".raw_candles-" in key or ".features-" in key:
                return key
        time.sleep(0.1)
    raise AssertionError(f"{worker} ran no step within {timeout_s} s:\n{site.cluster.logs()}")


def _slice_rows(site: ScaleOut) -> dict[str, object]:
    """Rows per stored (table, symbol, day) slice and duplicate (table, symbol, minute) rows in the lake."""
    per_slice: set[int] = set()
    duplicates = 0
    for table in ("candles", "features"):
        try:
            counts = query(
                site.lake,
                f"SELECT symbol, CAST(timezone('UTC', minute) AS DATE) AS day, count(*) AS n, "
                f"count(DISTINCT minute) AS distinct_minutes FROM {table} GROUP BY ALL",
            )
        except FileNotFoundError:  # nothing stored yet (StoreMissingError)
            continue
        per_slice |= set(counts["n"].to_list())
        duplicates += int((counts["n"] - counts["distinct_minutes"]).sum())
    return {"rows_per_slice": sorted(per_slice), "duplicates": duplicates}


def _a_feature_writer(runs: list[RunSteps], pids: dict[str, int]) -> tuple[str, str]:
    """(symbol, worker name) of a symbol whose features step ran once, on a live worker."""
    by_pid = {pid: name for name, pid in pids.items()}
    for run in runs:
        if len(run.steps["features"]) == 1 and run.steps["features"][0] in by_pid:
            return run.symbol, by_pid[run.steps["features"][0]]
    raise AssertionError(f"no features step ran on a live worker: {runs}, {pids}")


def _manifest_of(site: ScaleOut, run_id: str) -> dict:
    """The manifest of the model the run materialized (its path is in the materialization's metadata)."""
    with site.instance() as instance:
        [record] = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
    metadata = record.asset_materialization.metadata
    return json.loads((Path(str(metadata["artifact_path"].value)) / "manifest.json").read_text())


def _logs(outcome) -> str:
    return "\n".join(f"--- {run.name}\n{run.log.read_text(errors='replace')[-3000:]}" for run in outcome.runs)
