"""`trading-assets bench backfill --store ducklake --workers N`: the backfill across Dask workers into a DuckLake.

Starts what docs/scale-out.md describes, on 127.0.0.1 (`trading_assets_bench.harness.scale_out`): a PostgreSQL
server (per trial, one database for the Dagster instance and one for the lake's catalog), a Dask scheduler
and the workers, each a process with its own working, temporary, DAGSTER_HOME and data directories, sharing
only PostgreSQL and the lake's data path. A trial backfills raw_candles + features of the synthetic source
for the latest `--days` complete UTC days plus the day before them (where the history starts), one run per
symbol launched at once with `dagster asset materialize` (TA_EXECUTOR=dask, TA_STORE=ducklake), and times it
from the launch of the runs to the end of the last one (the cluster is up and its workers have loaded the
code location before; each run's own start-up, importing the code location, is inside the time).

Trials: 1 worker, then N (with `--repeats R`, alternately R times each; the figures are the medians). Then
the same backfill into an embedded DuckDB file (the same commands, steps in the run's process), and each
trial's lake is compared with it (table, symbol, day) slice by slice: `lost_partitions` (slices the file
holds that the lake lacks rows of), `duplicate_rows` (rows beyond the first of a (table, symbol, minute)),
`matches_embedded` (every slice equal, the write clocks aside). Everything started is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from trading_assets_bench import BenchmarkRefused, scratch_directory
from trading_assets_bench.harness.postgres import PostgresServer, PostgresUnavailableError, postgres_server
from trading_assets_bench.harness.scale_out import (
    BackfillOutcome,
    RunSteps,
    StoreComparison,
    compare_stores,
    embedded_backfill,
    scale_out,
)


def run(args: argparse.Namespace) -> dict[str, object]:
    if args.workers < 1 or args.repeats < 1:
        raise BenchmarkRefused("--workers and --repeats must be at least 1")
    last = datetime.now(UTC).date() - timedelta(days=1)
    first = last - timedelta(days=args.days - 1)
    history_start = first - timedelta(days=1)  # the first day's features read its candles
    try:
        with scratch_directory("bench-backfill-lake-", args.keep) as root:
            return _run(root, history_start, last, tuple(args.symbols), args)
    except PostgresUnavailableError as error:
        raise BenchmarkRefused(str(error)) from None


def _run(
    root: Path, history_start: date, last: date, symbols: tuple[str, ...], args: argparse.Namespace
) -> dict:
    clock = time.perf_counter()

    def progress(line: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - clock:7.1f} s] {line}", file=sys.stderr, flush=True)

    counts = [1, args.workers] if args.workers > 1 else [1]
    trials: list[dict[str, object]] = []
    with postgres_server(db_name="bench", user="ta_bench") as server:
        for repeat in range(args.repeats):
            for workers in counts:
                name = f"w{workers}_r{repeat}"
                progress(f"trial {name}: starting a scheduler and {workers} worker(s)")
                trials.append(_trial(root / name, name, server, workers, symbols, history_start, last))
                progress(f"trial {name}: {trials[-1]['seconds']} s, runs {trials[-1]['run_statuses']}")
        progress("the same backfill into an embedded DuckDB file")
        embedded, reference = embedded_backfill(
            root / "embedded", symbols, history_start, history_start, last
        )
        if not reference.succeeded:
            raise RuntimeError(f"the embedded backfill failed: see {[str(r.log) for r in reference.runs]}")
        for trial in trials:
            comparison = compare_stores(trial.pop("_lake"), embedded, symbols, history_start, last)
            trial.update(_comparison_report(comparison))
            progress(
                f"trial {trial['name']}: {'matches' if comparison.matches else 'DIFFERS FROM'} the embedded store"
            )
    return _report(trials, reference, args, symbols, history_start, last)


def _trial(
    root: Path,
    name: str,
    server: PostgresServer,
    workers: int,
    symbols: tuple[str, ...],
    history_start: date,
    last: date,
) -> dict[str, object]:
    """One backfill on a fresh scale-out (new databases, lake, scheduler and workers): what it measured."""
    started = time.perf_counter()
    with scale_out(root, server, workers, symbols, history_start, name=name) as site:
        startup = time.perf_counter() - started
        load_before = os.getloadavg()
        worker_pids = list(site.cluster.worker_pids.values())
        cpu_before = (_cpu_seconds(worker_pids), _children_cpu_seconds())
        since = time.time()
        outcome = site.backfill(history_start, last)
        load_after = os.getloadavg()
        cpu = {
            "workers": round(_cpu_seconds(worker_pids) - cpu_before[0], 1),
            "run_processes": round(_children_cpu_seconds() - cpu_before[1], 1),
        }
        runs = site.runs(since=since - 1.0)
        names_by_pid = {pid: worker for worker, pid in site.cluster.pids_by_name().items()}
    window = _step_window(runs, since)
    return {
        "name": name,
        "workers": workers,
        "seconds": round(outcome.seconds, 1),
        "succeeded": outcome.succeeded,
        "run_statuses": [run.status for run in runs],
        "startup_seconds": round(startup, 1),
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in load_after],
        "cpu_seconds": cpu,
        **window,
        # The cores the workers got while steps ran (2 cores here, shared with whatever else runs).
        "worker_cores_during_steps": round(cpu["workers"] / window["steps_seconds"], 2)
        if window["steps_seconds"]
        else None,
        "runs": _run_report(outcome, runs, names_by_pid, since),
        "_lake": site.lake,
    }


def _run_report(
    outcome: BackfillOutcome, runs: list[RunSteps], names_by_pid: dict[int, str], launched: float
) -> list[dict]:
    """Each run: its symbol, status, seconds from the launch to its command's exit, and where and when
    (seconds after the launch: [start, end]) the run and each step ran."""
    seconds = {run.name.split("-", 1)[1]: run.seconds for run in outcome.runs}  # "backfill-BTC-USD"

    def offsets(span: tuple[float | None, float | None]) -> list[float | None]:
        return [round(moment - launched, 1) if moment else None for moment in span]

    return [
        {
            "symbol": run.symbol,
            "status": run.status,
            "seconds": seconds.get(run.symbol),
            "steps": {
                step: [names_by_pid.get(pid, str(pid)) for pid in pids]
                for step, pids in sorted(run.steps.items())
            },
            "timeline": {name: offsets(span) for name, span in run.timeline.items()},
        }
        for run in sorted(runs, key=lambda run: run.symbol)
    ]


def _step_window(runs: list[RunSteps], launched: float) -> dict[str, float | None]:
    """When the first step started (seconds after the launch: the runs' own start-up before it) and the
    seconds from the first step's start to the last step's end (the workers' share of the time)."""
    spans = [span for run in runs for name, span in run.timeline.items() if name != "run"]
    starts = [start for start, _ in spans if start]
    ends = [end for _, end in spans if end]
    if not starts or not ends:
        return {"first_step_after_seconds": None, "steps_seconds": None}
    return {
        "first_step_after_seconds": round(min(starts) - launched, 1),
        "steps_seconds": round(max(ends) - min(starts), 1),
    }


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (from /proc; 0 for one that is gone)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _children_cpu_seconds() -> float:
    """CPU seconds of this process's waited-for children: the runs' `dagster asset materialize` processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _comparison_report(comparison: StoreComparison) -> dict[str, object]:
    return {
        "rows": comparison.rows,
        "lost_partitions": len(comparison.lost),
        "duplicate_rows": comparison.duplicate_rows,
        "matches_embedded": comparison.matches,
        "differing_partitions": len(comparison.differing),
        "lost_or_differing_examples": (comparison.lost + comparison.differing)[:10],
    }


def _report(
    trials: list[dict[str, object]],
    reference: BackfillOutcome,
    args: argparse.Namespace,
    symbols: tuple[str, ...],
    history_start: date,
    last: date,
) -> dict[str, object]:
    def median_seconds(workers: int) -> float:
        return statistics.median(float(t["seconds"]) for t in trials if t["workers"] == workers)

    mine = [t for t in trials if t["workers"] == args.workers]
    one, many = median_seconds(1), median_seconds(args.workers)
    candle_days = (last - history_start).days + 1
    return {
        "benchmark": "backfill",
        "store": "ducklake",
        "workers": args.workers,
        "symbols": len(symbols),
        "days": args.days,
        "candle_days": candle_days,
        "first_day": (history_start + timedelta(days=1)).isoformat(),
        "last_day": last.isoformat(),
        "partitions": 2 * len(symbols) * candle_days,
        "repeats": args.repeats,
        # The trials with --workers N (medians over the repeats; the worst of lost/duplicate/matches).
        "seconds": round(many, 1),
        "rows": max(int(t["rows"]) for t in mine),
        "lost_partitions": max(int(t["lost_partitions"]) for t in mine),
        "duplicate_rows": max(int(t["duplicate_rows"]) for t in mine),
        "matches_embedded": all(bool(t["matches_embedded"]) and bool(t["succeeded"]) for t in mine),
        "one_worker_seconds": round(one, 1),
        "speedup_vs_1_worker": round(one / many, 2) if many else None,
        # The same from the first step's start to the last step's end (without the runs' start-up).
        "steps_seconds": _median(trials, args.workers, "steps_seconds"),
        "one_worker_steps_seconds": _median(trials, 1, "steps_seconds"),
        "all_trials_match_embedded": all(
            bool(t["matches_embedded"]) and bool(t["succeeded"]) for t in trials
        ),
        "embedded_seconds": round(reference.seconds, 1),
        "cpus": os.cpu_count(),
        "trials": trials,
    }


def _median(trials: list[dict[str, object]], workers: int, name: str) -> float | None:
    values = [float(t[name]) for t in trials if t["workers"] == workers and t.get(name) is not None]
    return round(statistics.median(values), 1) if values else None
