"""What the demo shows on the terminal: one line per stage (a live progress display while it runs, when
the terminal is interactive) and one summary table per symbol, built from the runs' check evaluations and
materialization metadata: whatever checks the models have, each is a column.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from dagster import DagsterRunStatus
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from trading_assets.demo.runs import CodeLocationRuns, RunOutcome
from trading_assets.ml.fit import EpochProgress

#: Width of the output when it is not a terminal (a file, a pipe, a test): wide enough for the tables.
FILE_WIDTH = 160


@dataclass(frozen=True)
class CheckCell:
    passed: bool
    blocking: bool
    measured: float | None


@dataclass(frozen=True)
class ModelRow:
    model_type: str
    metrics: dict[str, float | None]
    evidence: dict[str, str]  # TEXT_COLUMNS: the walk-forward folds' accuracies, the strongest rival
    checks: dict[str, CheckCell]
    promoted: bool
    weight: float | None


@dataclass(frozen=True)
class SymbolSummary:
    symbol: str
    run_id: str
    check_names: list[str]
    rows: list[ModelRow]


#: Summary columns: header -> how to read it from the model's materialization metadata.
METRIC_COLUMNS: dict[str, Callable[[Mapping[str, Any]], float | None]] = {
    "accuracy": lambda metadata: _number(metadata.get("test_accuracy")),
    "base rate": lambda metadata: _number(metadata.get("base_rate")),
    "AUC": lambda metadata: _number(metadata.get("test_roc_auc")),
    "ECE": lambda metadata: _number(metadata.get("test_ece")),
    "backtest net": lambda metadata: _number(metadata.get("backtest_return")),
}


#: Text columns: header -> the model's materialization metadata entry shown as it is.
TEXT_COLUMNS: dict[str, str] = {"folds (accuracy)": "fold_accuracies", "strongest rival": "strongest_rival"}


def parse_epoch_progress(message: str) -> tuple[str, dict[str, float]] | None:
    """(model type, {epoch, max_epochs, loss, val_loss, eta_s, ...}) from a model asset's progress log
    line (`EpochProgress.log_line`), or None for any other line."""
    parsed = EpochProgress.from_log_line(message)
    if parsed is None:
        return None
    model_type, progress = parsed
    return model_type, {name: float(value) for name, value in asdict(progress).items()}


def symbol_summary(
    symbol: str, model_types: Sequence[str], outcome: RunOutcome, models_dir: Path
) -> SymbolSummary:
    """One row per model type from the run's materializations and check evaluations, the promotion it
    made and the weight of the model type in the symbol's ensemble."""
    weights = _ensemble_weights(models_dir, symbol)
    check_names: list[str] = []
    rows = []
    for model_type in model_types:
        asset = f"{model_type}_model"
        metadata = outcome.materialized.get(asset, {})
        checks = {}
        for evaluation in outcome.checks_of(asset):
            if evaluation.check_name not in check_names:
                check_names.append(evaluation.check_name)
            checks[evaluation.check_name] = CheckCell(
                evaluation.passed, bool(evaluation.blocking), _number(evaluation.metadata.get("measured"))
            )
        rows.append(
            ModelRow(
                model_type,
                {header: read(metadata) for header, read in METRIC_COLUMNS.items()},
                {header: _text(metadata.get(key)) for header, key in TEXT_COLUMNS.items()},
                checks,
                promoted=f"promoted_{asset}" in outcome.materialized,
                weight=weights.get(model_type),
            )
        )
    return SymbolSummary(symbol, outcome.run_id, check_names, rows)


def _ensemble_weights(models_dir: Path, symbol: str) -> dict[str, float]:
    from trading_assets.promotion.ensemble import NoPromotedMembers, read_ensemble

    try:
        return read_ensemble(models_dir, symbol).weights
    except (NoPromotedMembers, FileNotFoundError):
        return {}


def _text(value: Any) -> str:
    value = getattr(value, "value", value)
    return "-" if value is None else str(value).removeprefix("rule ")


def _number(value: Any) -> float | None:
    value = getattr(value, "value", value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def summary_table(summary: SymbolSummary) -> Table:
    """Rows: models. Columns: metrics, one per check the run evaluated, promoted, ensemble weight. Headers
    wrap on narrow terminals; cells keep their full width."""
    blocking = {
        name: any(row.checks[name].blocking for row in summary.rows if name in row.checks)
        for name in summary.check_names
    }
    check_headers = [
        name.removesuffix("_gate").replace("_", " ") + ("" if blocking[name] else "*")
        for name in summary.check_names
    ]
    headers = ["model", *METRIC_COLUMNS, *TEXT_COLUMNS, *check_headers, "promoted", "weight"]
    rows = [
        [
            row.model_type,
            *(_format_metric(header, row.metrics[header]) for header in METRIC_COLUMNS),
            *(row.evidence[header] for header in TEXT_COLUMNS),
            *(_format_check(row.checks.get(name)) for name in summary.check_names),
            "yes" if row.promoted else "no",
            f"{row.weight:.2f}" if row.weight is not None else "-",
        ]
        for row in summary.rows
    ]
    table = Table(
        title=f"{summary.symbol}, run {summary.run_id[:8]}: pooled walk-forward metrics, backtest after "
        "costs, gates (✗ failed: measured value)",
        caption="* warns, does not block promotion" if not all(blocking.values()) else None,
        caption_justify="left",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for index, header in enumerate(headers):
        numeric = 0 < index <= len(METRIC_COLUMNS) or header == "weight"
        widest_cell = max((len(row[index]) for row in rows), default=1)
        table.add_column(header, justify="right" if numeric else "left", min_width=widest_cell)
    for row in rows:
        table.add_row(*row)
    return table


def _format_metric(header: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:+.2%}" if header.startswith("backtest") else f"{value:.3f}"


def _format_check(cell: CheckCell | None) -> str:
    if cell is None:
        return "-"
    if cell.passed:
        return "✓"
    return "✗ " + (f"{cell.measured:.3f}" if cell.measured is not None else "")


class DemoConsole:
    """The terminal of the demo: plain lines, a stage display while a run goes, tables."""

    def __init__(self, terminal: TextIO) -> None:
        interactive = terminal.isatty()
        self.console = Console(
            file=terminal, highlight=False, width=None if interactive else FILE_WIDTH, soft_wrap=False
        )

    def line(self, text: str) -> None:
        self.console.print(text, markup=False, soft_wrap=True)

    def stage(
        self,
        label: str,
        runs: CodeLocationRuns,
        assets: Sequence[str],
        tags: Mapping[str, str] | None = None,
        run_config: Mapping[str, Any] | None = None,
    ) -> RunOutcome:
        """Launch one run and show it until it ends (epoch, loss, val loss and ETA of each training on an
        interactive terminal); then one line: the verdict, elapsed time, checks passed, errors."""
        run_id = runs.launch(assets, tags, run_config)
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(bar_width=20),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
        )
        interactive = self.console.is_terminal
        with Progress(*columns, console=self.console, transient=True, disable=not interactive) as progress:
            progress.add_task(f"{label} (run {run_id[:8]})", total=None, detail="")
            trainings: dict[str, TaskID] = {}

            def show(message: str) -> None:
                parsed = parse_epoch_progress(message)
                if parsed is None:
                    return
                model_type, fields = parsed
                if model_type not in trainings:
                    trainings[model_type] = progress.add_task(
                        f"  {model_type}", total=fields["max_epochs"], detail=""
                    )
                progress.update(
                    trainings[model_type],
                    completed=fields["epoch"],
                    detail=f"epoch {fields['epoch']:.0f}/{fields['max_epochs']:.0f} loss "
                    f"{fields.get('loss', float('nan')):.4f} val loss {fields.get('val_loss', float('nan')):.4f} "
                    f"ETA {fields.get('eta_s', 0):.0f} s",
                )

            outcome = runs.wait(run_id, show)
        self.line(stage_line(label, outcome))
        for error in outcome.errors[:3]:
            self.line(f"    {error}")
        return outcome

    def summary_table(self, summary: SymbolSummary) -> None:
        """The table at its natural width, even on a narrower terminal (which then wraps its lines): a
        cut cell would hide a gate's value."""
        table = summary_table(summary)
        wide = self.console.options.update(width=FILE_WIDTH)
        natural = Measurement.get(self.console, wide, table).maximum
        console = self.console
        if natural > console.width:
            console = Console(
                file=console.file, highlight=False, width=natural, color_system=console.color_system
            )
        console.print(table)

    def signals_table(self, signals: Sequence[Any], title: str) -> None:
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        members = sorted({name for s in signals for name in s.probabilities} - {"ensemble"})
        for header in ("minute (UTC)", "symbol", *members, "ensemble", "signal", "latency"):
            table.add_column(
                header, justify="left" if header in ("minute (UTC)", "symbol", "signal") else "right"
            )
        for s in signals:
            probabilities = [
                f"{s.probabilities[name]:.4f}" if name in s.probabilities else "-"
                for name in (*members, "ensemble")
            ]
            table.add_row(
                f"{s.minute:%Y-%m-%d %H:%M}", s.symbol, *probabilities, s.signal, f"{s.latency_ms:.0f} ms"
            )
        self.console.print(table)


def stage_line(label: str, outcome: RunOutcome) -> str:
    """One line for a finished stage: ✓ when it ran (gates may still have failed), ✗ when it errored."""
    evaluations = outcome.evaluations
    failed = Counter(f"{e.asset_key.to_user_string()}:{e.check_name}" for e in evaluations if not e.passed)
    text = (
        f"{'✗' if outcome.errors else '✓'} {label}: run {outcome.run_id[:8]} {_verdict(outcome)} "
        f"in {outcome.seconds:.0f} s; {len(evaluations) - sum(failed.values())}/{len(evaluations)} checks passed"
    )
    if failed:
        text += "; failed: " + ", ".join(
            name if count == 1 else f"{name} ×{count}" for name, count in failed.items()
        )
    return text


def _verdict(outcome: RunOutcome) -> str:
    if outcome.errors:
        return "failed"
    if outcome.status == DagsterRunStatus.SUCCESS:
        return "succeeded"
    return "stopped by failed blocking checks"
