"""`trading-assets demo`: the whole chain, offline, into the project's persistent Dagster instance.

candles -> features -> the three models per symbol -> gates -> promotion -> ensemble -> a short dry-run.
Each stage is a Dagster run in DAGSTER_HOME (default <project>/dagster_home), launched through the code
location of workspace.yaml exactly as the UI and the daemon launch runs (`trading_assets.demo.runs`), so
every run can be re-executed from the UI and shows on the Overview timeline.

The terminal gets one line per stage and, at the end, one table per symbol (`trading_assets.demo.report`);
Dagster's event stream and every process's output go to a log file in DAGSTER_HOME, whose path is printed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from trading_assets.ml.model_types import MODEL_TYPES
from trading_assets.settings import PROJECT_ROOT, Settings, export_dagster_home

if TYPE_CHECKING:
    from trading_assets.demo.report import DemoConsole, SymbolSummary
    from trading_assets.demo.runs import CodeLocationRuns

#: Exit codes: every stage ran (whatever the gates decided) / a stage errored / bad arguments.
EXIT_OK, EXIT_STAGE_ERROR, EXIT_BAD_ARGUMENTS = 0, 1, 2


class DemoRefused(ValueError):
    """An argument the demo cannot run with (the message names it and says why)."""


def demo_days(days: int, end_day: date | None = None) -> tuple[date, date]:
    """`days` complete UTC days ending at `end_day` (default: yesterday, the last complete day): (first, last)."""
    last = end_day or datetime.now(UTC).date() - timedelta(days=1)
    return last - timedelta(days=days - 1), last


def check_arguments(
    days: int, epochs: int, iterations: int, sleep_seconds: float, end_day: date | None, today: date
) -> None:
    """Raise DemoRefused naming the first argument that makes no sense."""
    if days < 1:
        raise DemoRefused(f"--days {days} refused: the demo needs at least 1 day")
    if epochs < 1:
        raise DemoRefused(f"--epochs {epochs} refused: training needs at least 1 epoch")
    if iterations < 0:
        raise DemoRefused(f"--iterations {iterations} refused: dry-run iterations must be 0 or more")
    if sleep_seconds < 0:
        raise DemoRefused(f"--sleep-seconds {sleep_seconds:g} refused: a pause cannot be negative")
    yesterday = today - timedelta(days=1)
    if end_day is not None and end_day > yesterday:
        raise DemoRefused(
            f"--end-day {end_day} refused: the last complete UTC day is {yesterday} (today is {today})"
        )


def replay_minutes(last_day: date, count: int) -> list[datetime]:
    """The moments at which the dry-run scores: the last `count` minutes of `last_day`, one minute apart.

    The runtime scores the last complete minute before the moment it is given, so the demo's dry-run
    prints `count` consecutive minutes, the same ones on every run with the same end day.
    """
    midnight = datetime.combine(last_day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return [midnight - timedelta(minutes=count - 1 - index) for index in range(count)]


#: Walk-forward folds of the demo's gates (the least the policy allows; scheduled retrains default to 4).
DEMO_FOLDS = 2


def run_demo(
    settings: Settings,
    days: int = 14,
    epochs: int = 2,
    iterations: int = 3,
    sleep_seconds: float = 2.0,
    end_day: date | None = None,
) -> int:
    """Run the demo; the exit code (EXIT_OK, EXIT_STAGE_ERROR or EXIT_BAD_ARGUMENTS)."""
    try:
        check_arguments(days, epochs, iterations, sleep_seconds, end_day, datetime.now(UTC).date())
    except DemoRefused as refusal:
        print(f"trading-assets demo: {refusal}", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    home = settings.dagster_home
    export_dagster_home(home)
    settings = _history_from_the_first_stored_day(settings, demo_days(days, end_day)[0])
    # 14 days hold 2 walk-forward folds of a day and a half: the demo's policy unless TA_FOLDS says otherwise
    os.environ.setdefault("TA_FOLDS", str(DEMO_FOLDS))
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / f"demo-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.log"
    with _output_to_log(log_path) as terminal:
        from trading_assets.demo.report import DemoConsole

        console = DemoConsole(terminal)
        console.line(f"Dagster's event log and all process output: {log_path}")
        try:
            return _run_stages(console, settings, days, epochs, iterations, sleep_seconds, end_day)
        except Exception as error:  # noqa: BLE001 (one line on the terminal, the traceback in the log)
            traceback.print_exc()
            console.line(f"demo stopped: {type(error).__name__}: {error} (traceback in {log_path})")
            return EXIT_STAGE_ERROR


def _run_stages(
    console: DemoConsole,
    settings: Settings,
    days: int,
    epochs: int,
    iterations: int,
    sleep_seconds: float,
    end_day: date | None,
) -> int:
    """Data, then per symbol models and ensemble, as Dagster runs; the dry-run; the summary tables. The exit
    code: EXIT_STAGE_ERROR when a stage or the dry-run errored."""
    import dagster as dg

    from trading_assets.demo.runs import CodeLocationRuns

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    first, last = demo_days(days, end_day)
    console.line(
        f"trading-assets demo: source={settings.source_options.source} (predictability {settings.source_options.synthetic_predictability}), "
        f"symbols={', '.join(settings.symbols)}, {first} .. {last}, gates on {os.environ['TA_FOLDS']} "
        f"walk-forward folds at {settings.costs_in_force().fee_bps:g} bps fees"
    )
    instance = dg.DagsterInstance.get()
    with CodeLocationRuns(instance, PROJECT_ROOT / "workspace.yaml") as runs:
        if not _run_data_stages(console, runs, settings, first, last):
            return EXIT_STAGE_ERROR
        model_config = {"epochs": epochs, "samples_per_epoch": 3000, "train_start": first.isoformat()}
        errored = False
        summaries = []
        for symbol in settings.symbols:
            summary, symbol_errored = _run_symbol_stages(console, runs, settings, symbol, model_config)
            errored = errored or symbol_errored
            summaries.append(summary)
    dry_run_ok = _dry_run(console, settings, last, iterations, sleep_seconds)
    console.line(
        f"Signals: `signals` table of {settings.store_location}. UI: DAGSTER_HOME={settings.dagster_home} "
        f"TA_HISTORY_START={settings.history_start} .venv/bin/dagster dev -w workspace.yaml "
        "(http://127.0.0.1:3000)"
    )
    for summary in summaries:
        console.summary_table(summary)
    return EXIT_STAGE_ERROR if errored or not dry_run_ok else EXIT_OK


def _run_data_stages(
    console: DemoConsole, runs: CodeLocationRuns, settings: Settings, first: date, last: date
) -> bool:
    """Candles, then features, of every symbol from `first` to `last`; False when a stage errored. Candles
    of one extra day first, so the first day's features have their full lookback."""
    from trading_assets.defs.partitions import partition_range_tags

    data_range = {
        "raw_candles": partition_range_tags(first - timedelta(days=1), last, settings.symbols),
        "features": partition_range_tags(first, last, settings.symbols),
    }
    for asset, tags in data_range.items():
        stage = console.stage(asset, runs, [asset], tags=tags)
        if stage.errors:
            return False
    return True


def _run_symbol_stages(
    console: DemoConsole, runs: CodeLocationRuns, settings: Settings, symbol: str, model_config: dict
) -> tuple[SymbolSummary, bool]:
    """The models, gates and promotion of `symbol`, then its ensemble when a model is promoted: (the
    symbol's summary table, whether a stage errored)."""
    from trading_assets.demo.report import symbol_summary
    from trading_assets.promotion.registry import current

    model_assets = [f"{t}_model" for t in MODEL_TYPES] + [f"promoted_{t}_model" for t in MODEL_TYPES]
    models = console.stage(
        f"models + gates + promotion {symbol}",
        runs,
        model_assets,
        tags={"dagster/partition": symbol},
        run_config={"ops": {asset: {"config": model_config} for asset in model_assets}},
    )
    ensemble = None
    if any(current(settings.models_dir, t, symbol) for t in MODEL_TYPES):
        ensemble = console.stage(f"ensemble {symbol}", runs, ["ensemble"], tags={"dagster/partition": symbol})
    else:
        console.line(f"- ensemble {symbol}: skipped, no model of {symbol} is promoted")
    errored = bool(models.errors) or bool(ensemble and ensemble.errors)
    return symbol_summary(symbol, MODEL_TYPES, models, settings.models_dir), errored


def _history_from_the_first_stored_day(settings: Settings, first: date) -> Settings:
    """Unless TA_HISTORY_START is set, the date partitions start at the first day the demo stores (the day
    before `first`: the lookback of its first features), not years of empty history before it. Exported, so
    the code location the runs go through partitions alike."""
    if "TA_HISTORY_START" in os.environ:
        return settings
    start = first - timedelta(days=1)
    os.environ["TA_HISTORY_START"] = start.isoformat()
    return replace(settings, history_start=start)


def _dry_run(console, settings: Settings, last_day: date, iterations: int, sleep_seconds: float) -> bool:
    """Score the last `iterations` minutes of the demo's last day with each promoted ensemble; False when
    scoring errored."""
    from trading_assets.market.sources import build_source
    from trading_assets.promotion.ensemble import NoPromotedMembers, read_ensemble
    from trading_assets.runtime.dryrun import DryRunRuntime, run_iterations

    deployable = []
    for symbol in settings.symbols:
        with contextlib.suppress(NoPromotedMembers, FileNotFoundError):
            read_ensemble(settings.models_dir, symbol)
            deployable.append(symbol)
    if not deployable or iterations == 0:
        console.line(
            "- dry-run: skipped, " + ("no symbol has an ensemble" if not deployable else "0 iterations")
        )
        return True
    runtime = DryRunRuntime(
        build_source(settings.source_options),
        settings.store_location,
        settings.models_dir,
        deployable,
        settings.history_start,
        allow_short=settings.costs.allow_short,
    )
    moments = iter(replay_minutes(last_day, iterations))
    problems: list[str] = []

    def report(text: str) -> None:
        print(text)  # the full tables go to the log; problems also to the terminal
        if "skipped" in text:
            problems.append(text)
            console.line(text)

    signals = run_iterations(runtime, iterations, sleep_seconds, report=report, clock=lambda: next(moments))
    console.signals_table(signals, f"dry-run: the last {iterations} minutes of {last_day} (no orders placed)")
    return not problems


@contextlib.contextmanager
def _output_to_log(log_path: Path) -> Iterator[TextIO]:
    """Send file descriptors 1 and 2 (this process and every child it starts: code server, run workers)
    to `log_path`; yield a stream to the original terminal. Restores both descriptors on the way out."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    terminal = os.fdopen(os.dup(1), "w", encoding=encoding, errors="replace", buffering=1)
    try:
        with log_path.open("ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield terminal
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for descriptor in saved:
            os.close(descriptor)
        terminal.close()
