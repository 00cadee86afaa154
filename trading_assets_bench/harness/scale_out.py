"""The scale-out on one machine, as on several: PostgreSQL, a Dask scheduler and workers that share nothing else.

Used by `trading-assets bench backfill --store ducklake` and by the end-to-end test
(trading_assets_tests/e2e/test_scale_out.py), so it imports no test framework. `scale_out(...)` sets up what
docs/scale-out.md describes, every process on 127.0.0.1:

- **PostgreSQL** (a server the caller started, `harness.postgres`): one database for the Dagster instance
  (runs, events, schedules), one for the DuckLake catalog.
- **Shared storage**: the lake's data path and the models directory, under ``<root>/shared/``. Nothing else
  is shared.
- **A Dask scheduler and N workers** (`harness.dask_cluster`), each worker a separate process with its own
  working directory, temporary directory, DAGSTER_HOME and TA_DATA_DIR under ``<root>/dask/<worker>/``.
  Workers preload the code location (`trading_assets.definitions`), as long-running workers have it loaded.
- **The code location's host** (``<root>/orchestrator/``): its own DAGSTER_HOME (deploy/scale-out/dagster.yaml),
  data directory and working directory. Runs are launched there with Dagster's own command,
  ``dagster asset materialize -m trading_assets.definitions --select ... --partition-range ...``, one process
  per run that orchestrates it (as a run launcher's run worker does) and sends its steps to the Dask cluster
  (`TA_EXECUTOR=dask`).

`ScaleOut.backfill` backfills raw_candles and features of every symbol over a range of days: one run per
symbol (what a single-run backfill of the two assets makes), all launched at once. `embedded_backfill` runs
the same commands into an embedded DuckDB file (in-process executor), and `compare_stores` compares the two
(symbol, day) slice by slice.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from trading_assets.settings import PROJECT_ROOT
from trading_assets.store.duckdb_store import LakeStore, Store, query
from trading_assets_bench.harness.dask_cluster import DaskCluster, dask_cluster, start_process
from trading_assets_bench.harness.postgres import PostgresServer, create_database

if TYPE_CHECKING:
    import dagster as dg

#: The instance configuration every host of the scale-out uses (PostgreSQL storage, per-host local files).
INSTANCE_TEMPLATE = PROJECT_ROOT / "deploy" / "scale-out" / "dagster.yaml"
DAGSTER_CLI = Path(sys.executable).with_name("dagster")
#: The code location, as `dagster asset materialize -m` names it.
CODE_LOCATION_MODULE = "trading_assets.definitions"
TABLES = ("candles", "features")
#: The columns that record when a row was written: they differ between any two backfills.
CLOCK_COLUMNS = ("ingested_at", "computed_at")
RUN_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class RunOutcome:
    """One `dagster asset materialize` command: what it ran and how it ended."""

    name: str
    returncode: int
    seconds: float
    log: Path


@dataclass(frozen=True)
class BackfillOutcome:
    """The runs of one backfill (one per symbol, launched at once) and the wall seconds until all ended."""

    runs: list[RunOutcome]
    seconds: float

    @property
    def succeeded(self) -> bool:
        return all(run.returncode == 0 for run in self.runs)


@dataclass
class ScaleOut:
    """A running scale-out (see the module docstring); made by `scale_out`."""

    root: Path
    server: PostgresServer
    cluster: DaskCluster
    symbols: tuple[str, ...]
    history_start: date
    dagster_db: str
    lake_db: str
    #: The environment every process of the scale-out shares (settings, PostgreSQL, the scheduler).
    env: dict[str, str] = field(repr=False)

    @property
    def home(self) -> Path:
        """The DAGSTER_HOME of the code location's host (where runs are launched)."""
        return self.root / "orchestrator" / "dagster_home"

    @property
    def lake(self) -> LakeStore:
        """The lake as this process opens it (the DSN with the password; the processes use PGPASSWORD)."""
        return LakeStore(self.server.dsn_for(self.lake_db), self.env["TA_LAKE_DATA_PATH"])

    def materialize(
        self,
        name: str,
        select: str,
        *,
        partition: str | None = None,
        partition_range: tuple[str, str] | None = None,
        run_config: Mapping[str, object] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `dagster asset materialize` on the code location's host; its output goes to logs/<name>.log."""
        command = [str(DAGSTER_CLI), "asset", "materialize", "-m", CODE_LOCATION_MODULE, "--select", select]
        if partition is not None:
            command += ["--partition", partition]
        if partition_range is not None:
            command += ["--partition-range", "...".join(partition_range)]
        if run_config is not None:
            command += ["--config-json", json.dumps(run_config)]
        return start_process(
            command,
            self.root / "logs" / f"{name}.log",
            self.orchestrator_env(),
            self.root / "orchestrator" / "work",
        )

    def orchestrator_env(self) -> dict[str, str]:
        host = self.root / "orchestrator"
        return {
            **self.env,
            "DAGSTER_HOME": str(self.home),
            "TA_DATA_DIR": str(host / "data"),
            "TMPDIR": str(host / "tmp"),
        }

    def backfill(self, first: date, last: date, label: str = "backfill") -> BackfillOutcome:
        """raw_candles + features of every symbol for first..last: one run per symbol, all at once; waits."""
        started = time.perf_counter()
        return self.wait(self.start_backfill(first, last, label), started)

    def start_backfill(
        self, first: date, last: date, label: str = "backfill"
    ) -> dict[str, subprocess.Popen[bytes]]:
        """Launch the backfill's runs (one `dagster asset materialize` per symbol) and return at once."""
        return {
            f"{label}-{symbol}": self.materialize(
                f"{label}-{symbol}",
                "raw_candles,features",
                partition_range=(f"{first.isoformat()}|{symbol}", f"{last.isoformat()}|{symbol}"),
            )
            for symbol in self.symbols
        }

    def wait(self, processes: Mapping[str, subprocess.Popen[bytes]], started: float) -> BackfillOutcome:
        """Wait for commands started by `materialize`/`start_backfill` (seconds counted from `started`)."""
        return _wait_all(processes, self.root / "logs", started)

    @contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        """The Dagster instance (PostgreSQL) as this process opens it, to read runs and events."""
        import dagster as dg

        with (
            _environment(self.orchestrator_env()),
            dg.DagsterInstance.from_config(str(self.home)) as instance,
        ):
            yield instance

    def runs(self, since: float = 0.0) -> list[RunSteps]:
        """The runs created at or after `since` (epoch seconds), oldest first, with the pids their steps
        started in (a step a worker died in and Dask ran again elsewhere: two pids)."""
        import dagster as dg

        found = []
        with self.instance() as instance:
            for record in reversed(instance.get_run_records()):
                if record.create_timestamp.timestamp() < since:
                    continue
                run = record.dagster_run
                steps: dict[str, list[int]] = {}
                for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START):
                    steps.setdefault(str(entry.step_key), []).append(int(entry.dagster_event.pid))
                partition = run.tags.get("dagster/asset_partition_range_start") or run.tags.get(
                    "dagster/partition", ""
                )
                stats = instance.get_run_stats(run.run_id)
                timeline = {
                    "run": (stats.start_time, stats.end_time),
                    **{
                        step.step_key: (step.start_time, step.end_time)
                        for step in instance.get_run_step_stats(run.run_id)
                    },
                }
                found.append(
                    RunSteps(run.run_id, partition.split("|")[-1], run.status.value, steps, timeline)
                )
        return found


@dataclass(frozen=True)
class RunSteps:
    """A run of the scale-out: its symbol (from its partitions), status and where its steps ran."""

    run_id: str
    symbol: str
    status: str
    #: Step key -> pid of each start of the step (a worker's task process).
    steps: dict[str, list[int]]
    #: "run" and each step key -> (start, end) in epoch seconds (None where it did not start or end).
    timeline: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)


@contextmanager
def scale_out(
    root: Path,
    server: PostgresServer,
    n_workers: int,
    symbols: Sequence[str],
    history_start: date,
    extra_env: Mapping[str, str] | None = None,
    name: str = "ta",
) -> Iterator[ScaleOut]:
    """Set up a scale-out under `root` on `server` (two new databases `<name>_dagster`, `<name>_lake`) with
    `n_workers` Dask workers; stop the cluster when the block exits (the caller owns the server)."""
    dagster_db, lake_db = f"{name}_dagster", f"{name}_lake"
    create_database(server, dagster_db)
    create_database(server, lake_db)
    shared = root / "shared"
    for directory in (shared / "lake", shared / "models", root / "logs"):
        directory.mkdir(parents=True, exist_ok=True)
    for sub in ("dagster_home", "work", "tmp", "data"):
        (root / "orchestrator" / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy(INSTANCE_TEMPLATE, root / "orchestrator" / "dagster_home" / "dagster.yaml")
    env = {
        **_without_settings(os.environ),
        "TA_STORE": "ducklake",
        # The catalog DSN without the password: libpq (in DuckDB's postgres extension) reads PGPASSWORD.
        "TA_LAKE_CATALOG": server.dsn_for(lake_db, with_password=False),
        "PGPASSWORD": server.password,
        "TA_LAKE_DATA_PATH": str(shared / "lake"),
        "TA_MODELS_DIR": str(shared / "models"),
        "TA_SOURCE": "synthetic",
        "TA_SYMBOLS": ",".join(symbols),
        "TA_HISTORY_START": history_start.isoformat(),
        "TA_EXECUTOR": "dask",
        **server.env(),
        "TA_PG_DB": dagster_db,
        **(extra_env or {}),
    }

    def worker_env(worker: str, directory: Path) -> dict[str, str]:
        home = directory / "dagster_home"
        home.mkdir(exist_ok=True)
        shutil.copy(INSTANCE_TEMPLATE, home / "dagster.yaml")
        return {"DAGSTER_HOME": str(home), "TA_DATA_DIR": str(directory / "data")}

    with dask_cluster(
        root / "dask",
        env=env,
        base_env=_without_settings(os.environ),
        n_workers=n_workers,
        worker_env=worker_env,
        preload=[CODE_LOCATION_MODULE],
    ) as cluster:
        env["TA_DASK_SCHEDULER"] = cluster.address
        yield ScaleOut(root, server, cluster, tuple(symbols), history_start, dagster_db, lake_db, env)


def embedded_backfill(
    root: Path, symbols: Sequence[str], history_start: date, first: date, last: date
) -> tuple[Path, BackfillOutcome]:
    """The same backfill (the same commands, one run per symbol, at once) into an embedded DuckDB file, steps
    in the run's process (in_process executor), a SQLite instance; the file and the outcome."""
    home, data = root / "dagster_home", root / "data"
    for directory in (home, data, root / "logs", root / "work"):
        directory.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    db_path = data / "embedded.duckdb"
    env = {
        **_without_settings(os.environ),
        "DAGSTER_HOME": str(home),
        "TA_DATA_DIR": str(data),
        "TA_DUCKDB_PATH": str(db_path),
        "TA_MODELS_DIR": str(root / "models"),
        "TA_STORE": "duckdb",
        "TA_SOURCE": "synthetic",
        "TA_SYMBOLS": ",".join(symbols),
        "TA_HISTORY_START": history_start.isoformat(),
        "TA_EXECUTOR": "in_process",
    }
    # Create the SQLite instance once here: commands that create it at the same moment race on its schema.
    import dagster as dg

    with _environment(env), dg.DagsterInstance.from_config(str(home)):
        pass
    started = time.perf_counter()
    processes = {}
    for symbol in symbols:
        command = [str(DAGSTER_CLI), "asset", "materialize", "-m", CODE_LOCATION_MODULE]
        command += ["--select", "raw_candles,features", "--partition-range"]
        command += [f"{first.isoformat()}|{symbol}...{last.isoformat()}|{symbol}"]
        processes[f"embedded-{symbol}"] = start_process(
            command, root / "logs" / f"embedded-{symbol}.log", env, root / "work"
        )
    return db_path, _wait_all(processes, root / "logs", started)


@dataclass(frozen=True)
class StoreComparison:
    """A lake against the embedded file, (table, symbol, day) slice by slice."""

    #: Rows in the lake (candles + features) within the compared days.
    rows: int
    #: Slices the embedded file holds that the lake lacks rows of ("features BTC-USD 2024-03-01").
    lost: list[str]
    #: Slices present in both whose rows differ (any column but the write clock).
    differing: list[str]
    #: Rows beyond the first of each (table, symbol, minute) in the lake.
    duplicate_rows: int
    #: Slices compared (tables x symbols x days) and the rows of each table in the embedded file.
    slices: int
    embedded_rows: dict[str, int]

    @property
    def matches(self) -> bool:
        return (
            not self.lost
            and not self.differing
            and self.duplicate_rows == 0
            and self.rows == sum(self.embedded_rows.values())
        )


def compare_stores(
    lake: Store, embedded: Path, symbols: Sequence[str], first: date, last: date
) -> StoreComparison:
    """Every (table, symbol, day) slice of first..last: the lake's rows against the embedded file's."""
    import polars as pl

    days = [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
    lost: list[str] = []
    differing: list[str] = []
    duplicates = rows = 0
    embedded_rows: dict[str, int] = {}
    for table in TABLES:
        frames = []
        for store in (lake, embedded):
            frame = query(store, f"SELECT * FROM {table} ORDER BY symbol, minute")
            frame = frame.drop([c for c in CLOCK_COLUMNS if c in frame.columns])
            frame = frame.with_columns(pl.col("minute").dt.convert_time_zone("UTC").dt.date().alias("_day"))
            frames.append(
                frame.filter(pl.col("_day").is_between(first, last) & pl.col("symbol").is_in(symbols))
            )
        in_lake, in_file = frames
        rows += in_lake.height
        embedded_rows[table] = in_file.height
        duplicates += in_lake.height - in_lake.select(["symbol", "minute"]).n_unique()
        lake_slices = in_lake.partition_by(["symbol", "_day"], as_dict=True)
        file_slices = in_file.partition_by(["symbol", "_day"], as_dict=True)
        for symbol in symbols:
            for day in days:
                expected, stored = file_slices.get((symbol, day)), lake_slices.get((symbol, day))
                name = f"{table} {symbol} {day.isoformat()}"
                if expected is None:
                    if stored is not None:
                        differing.append(name)
                    continue
                if stored is None or stored.height < expected.height:
                    lost.append(name)
                elif not stored.equals(expected):
                    differing.append(name)
    return StoreComparison(
        rows, lost, differing, duplicates, len(TABLES) * len(symbols) * len(days), embedded_rows
    )


def _wait_all(
    processes: Mapping[str, subprocess.Popen[bytes]], logs: Path, started: float
) -> BackfillOutcome:
    """Wait for every command (killing those still running after RUN_TIMEOUT_S); their outcomes."""
    ended: dict[str, float] = {}
    try:
        while len(ended) < len(processes):
            for name, process in processes.items():
                if name not in ended and process.poll() is not None:
                    ended[name] = time.perf_counter() - started
            if time.perf_counter() - started > RUN_TIMEOUT_S:
                break
            time.sleep(0.05)
    finally:
        for process in processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    seconds = time.perf_counter() - started
    return BackfillOutcome(
        [
            RunOutcome(name, process.returncode, round(ended.get(name, seconds), 2), logs / f"{name}.log")
            for name, process in processes.items()
        ],
        seconds,
    )


def _without_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without the project's and Dagster's settings (each process gets its own)."""
    return {key: value for key, value in environ.items() if not key.startswith(("TA_", "DAGSTER_", "PG"))}


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """os.environ with `values` set for the block (Dagster resolves the instance's env: settings at load)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
