"""PNG charts for the Dagster UI: each `*_png` function returns PNG bytes (matplotlib, Agg backend).

`markdown_image` (in `trading_assets.defs.metadata`) embeds them in Markdown metadata. Each chart is
1,000 x 500 px (10 x 5 inches at 100 dpi) with fonts of 11 pt and more, titled with what it is about (a
model chart: symbol, model type and version, `model_subject`); time axes are dates (UTC), returns are in %.
The PNGs are written with an adaptive palette of 128 colours (no channel off by more than about 14 of 255 on
these flat-colour charts; a quarter to a third of an RGB PNG) because metadata lives base64 in the event
log: 13-30 KB each. Each `*_figure`
function returns the matplotlib figure the `*_png` function renders (tests read its axes). No Dagster.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import wraps
from typing import ParamSpec

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no display: render to memory only

import matplotlib.dates as mdates  # noqa: E402 (the backend is chosen before pyplot loads)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator, PercentFormatter  # noqa: E402
from PIL import Image  # noqa: E402 (Pillow: a dependency of matplotlib)

SIZE_INCHES = (10.0, 5.0)
DPI = 100  # 1,000 x 500 px
#: Font sizes in points: nothing smaller than 11 pt.
STYLE = {
    "font.size": 12,
    "axes.titlesize": 14,
    "axes.labelsize": 12,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "legend.fontsize": 11,
}
#: Colours of the PNG palette (adaptive, octree): enough for the anti-aliased edges of a few line colours.
PALETTE_COLOURS = 128
#: Characters per line of a note under a title (about the width of a chart at the title's size).
NOTE_WIDTH = 90
#: What the coverage chart labels a day of which no minute is stored.
MISSING_LABEL = "missing (no candle stored)"


_P = ParamSpec("_P")


def _styled(build: Callable[_P, Figure]) -> Callable[_P, Figure]:
    """Build the figure under `STYLE` (matplotlib reads the font sizes when each text is created)."""

    @wraps(build)
    def styled(*args: _P.args, **kwargs: _P.kwargs) -> Figure:
        with plt.rc_context(STYLE):
            return build(*args, **kwargs)

    return styled


def model_subject(symbol: str, model_type: str, version: str) -> str:
    """What a model chart's title starts with: `BTC-USD · lstm · 20240214T101500123456Z`."""
    return f"{symbol} · {model_type} · {version}"


@_styled
def learning_curve_figure(curve: Sequence[dict[str, float]], subject: str = "") -> Figure:
    """Training and validation loss per epoch (rows with `epoch`, `loss`, `val_loss`, and optionally
    `val_accuracy` on a second axis); whole epochs on the x axis."""
    figure, axes = _figure(_title(subject, "Learning curve"))
    epochs = [row["epoch"] for row in curve]
    axes.plot(epochs, [row["loss"] for row in curve], marker="o", label="train loss")
    axes.plot(epochs, [row["val_loss"] for row in curve], marker="o", label="validation loss")
    _whole_epochs(axes, epochs)
    axes.set_xlabel("epoch")
    axes.set_ylabel("binary cross-entropy loss")
    handles, labels = axes.get_legend_handles_labels()
    if curve and "val_accuracy" in curve[0]:
        accuracy = axes.twinx()
        accuracy.plot(
            epochs,
            [100 * row["val_accuracy"] for row in curve],
            color="tab:green",
            ls="--",
            marker=".",
            label="validation accuracy",
        )
        accuracy.yaxis.set_major_formatter(PercentFormatter())
        accuracy.set_ylabel("validation accuracy")
        accuracy.tick_params(labelsize=STYLE["ytick.labelsize"])
        more_handles, more_labels = accuracy.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    axes.legend(handles, labels, loc="best")
    return figure


def learning_curve_png(curve: Sequence[dict[str, float]], subject: str = "") -> bytes:
    return render(learning_curve_figure(curve, subject))


@_styled
def reliability_diagram_figure(table: Sequence[dict[str, float]], subject: str = "") -> Figure:
    """Observed frequency against mean predicted probability per bin (rows as `ml.metrics.reliability_table`
    gives them), the diagonal for perfect calibration, marker size by count."""
    figure, axes = _figure(_title(subject, "Reliability of the calibrated walk-forward predictions"))
    axes.plot([0, 100], [0, 100], color="grey", ls=":", label="perfect calibration")
    counts = [row["count"] for row in table]
    largest = max(counts, default=1) or 1
    axes.scatter(
        [100 * row["mean_predicted"] for row in table],
        [100 * row["observed_frequency"] for row in table],
        s=[30 + 270 * count / largest for count in counts],
        label="bins (area: samples)",
    )
    axes.set_xlim(0, 100)
    axes.set_ylim(0, 100)
    for axis in (axes.xaxis, axes.yaxis):
        axis.set_major_formatter(PercentFormatter(decimals=0))
    axes.set_xlabel("mean predicted P(up)")
    axes.set_ylabel("observed share of up moves")
    axes.legend(loc="upper left")
    return figure


def reliability_diagram_png(table: Sequence[dict[str, float]], subject: str = "") -> bytes:
    return render(reliability_diagram_figure(table, subject))


@_styled
def equity_curve_figure(
    times: Sequence[datetime],
    strategy: Sequence[float],
    buy_and_hold: Sequence[float],
    costs_note: str = "",
    subject: str = "",
) -> Figure:
    """Return since the start of the evaluation, in % ((equity - 1) x 100), of the runtime's signal after
    costs and of buy-and-hold, over the times (UTC) of the curves' points. `costs_note` goes under the
    title (e.g. the costs per side and the Sharpe ratio or why it is withheld)."""
    if not len(times) == len(strategy) == len(buy_and_hold):
        raise ValueError(
            f"times, strategy, buy_and_hold differ in length: {len(times)}, {len(strategy)}, "
            f"{len(buy_and_hold)}"
        )
    title = _title(subject, "Walk-forward backtest vs buy and hold")
    figure, axes = _figure("\n".join([title, *textwrap.wrap(costs_note, NOTE_WIDTH)]))
    x = [_naive_utc(moment) for moment in times]
    for curve, label in ((strategy, "signal strategy, after costs"), (buy_and_hold, "buy and hold")):
        axes.plot(x, 100 * (np.asarray(curve, dtype=np.float64) - 1.0), label=label)
    axes.axhline(0.0, color="grey", lw=0.8, ls=":")
    _date_axis(axes)
    axes.yaxis.set_major_formatter(PercentFormatter(decimals=1))
    axes.set_xlabel("time (UTC)")
    axes.set_ylabel("return since start")
    axes.legend(loc="best")
    return figure


def equity_curve_png(
    times: Sequence[datetime],
    strategy: Sequence[float],
    buy_and_hold: Sequence[float],
    costs_note: str = "",
    subject: str = "",
) -> bytes:
    return render(equity_curve_figure(times, strategy, buy_and_hold, costs_note, subject))


@_styled
def candle_coverage_figure(
    days: Sequence[date],
    coverage: Sequence[float],
    min_coverage: float,
    subject: str = "",
    highlight: Collection[date] = (),
) -> Figure:
    """Share of each day's 1,440 minutes present in the store, with the coverage check's threshold. A day
    with nothing stored is a red hatched full-height bar labelled missing (a 0 % bar would be invisible);
    days in `highlight` (a run's days) are drawn solid, the others (stored neighbours) lighter."""
    figure, axes = _figure(_title(subject, "raw_candles: share of each day's 1,440 minutes stored"))
    shares = [100 * share for share in coverage]
    missing = [day for day, share in zip(days, coverage, strict=True) if share <= 0]
    present = [(day, share) for day, share in zip(days, shares, strict=True) if share > 0]
    colors = [
        (0.84, 0.15, 0.16, 1.0) if share < 100 * min_coverage else (0.12, 0.47, 0.71, 1.0)
        for _, share in present
    ]
    alphas = [1.0 if not highlight or day in highlight else 0.45 for day, _ in present]
    axes.bar(
        [_naive_day(day) for day, _ in present],
        [share for _, share in present],
        color=[(*color[:3], alpha) for color, alpha in zip(colors, alphas, strict=True)],
        width=0.8,
    )
    if missing:
        axes.bar(
            [_naive_day(day) for day in missing],
            [100.0] * len(missing),
            width=0.8,
            color=(0.84, 0.15, 0.16, 0.15),
            edgecolor="tab:red",
            hatch="///",
            label=MISSING_LABEL,
        )
    axes.axhline(
        100 * min_coverage, color="black", ls="--", lw=1.0, label=f"threshold {100 * min_coverage:g} %"
    )
    axes.set_ylim(0, 130)  # room above the bars for the legend
    axes.set_yticks(range(0, 101, 20))
    axes.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    axes.set_ylabel("minutes stored")
    _date_axis(axes, days=len(days))
    handles, labels = axes.get_legend_handles_labels()
    handles.append(Patch(color="tab:blue", label=f"at or above {100 * min_coverage:g} %"))
    handles.append(Patch(color="tab:red", label=f"below {100 * min_coverage:g} %"))
    if highlight and len(highlight) < len(days):
        handles.append(Patch(color="tab:blue", alpha=0.45, label="stored neighbour (not in this run)"))
    axes.legend(handles=handles, loc="upper center", ncol=3, framealpha=0.9)
    return figure


def candle_coverage_png(
    days: Sequence[date],
    coverage: Sequence[float],
    min_coverage: float,
    subject: str = "",
    highlight: Collection[date] = (),
) -> bytes:
    return render(candle_coverage_figure(days, coverage, min_coverage, subject, highlight))


@dataclass(frozen=True)
class VersionCurves:
    """What the comparison chart overlays for one model version: its validation loss per epoch and its
    walk-forward return after costs over time."""

    label: str
    epochs: Sequence[int]
    val_loss: Sequence[float]
    times: Sequence[datetime]
    equity: Sequence[float]


@_styled
def version_comparison_figure(versions: Sequence[VersionCurves], subject: str = "") -> Figure:
    """Two panels side by side: the learning curves (validation loss per whole epoch) and the walk-forward
    equity curves (return after costs, %, over UTC dates) of each version, one colour per version."""
    figure, (learning, equity) = plt.subplots(1, 2, figsize=SIZE_INCHES, dpi=DPI)
    figure.suptitle(_title(subject, "versions side by side: learning and walk-forward return after costs"))
    for version in versions:
        learning.plot(version.epochs, version.val_loss, marker="o", label=version.label)
        x = [_naive_utc(moment) for moment in version.times]
        equity.plot(x, 100 * (np.asarray(version.equity, dtype=np.float64) - 1.0), label=version.label)
    _whole_epochs(learning, sorted({epoch for version in versions for epoch in version.epochs}))
    learning.set_xlabel("epoch")
    learning.set_ylabel("validation loss (BCE)")
    equity.axhline(0.0, color="grey", lw=0.8, ls=":")
    _date_axis(equity)
    equity.yaxis.set_major_formatter(PercentFormatter(decimals=1))
    equity.set_xlabel("time (UTC)")
    equity.set_ylabel("return since start")
    for axes in (learning, equity):
        axes.grid(alpha=0.3)
    equity.legend(loc="best", fontsize=STYLE["legend.fontsize"])
    return figure


def version_comparison_png(versions: Sequence[VersionCurves], subject: str = "") -> bytes:
    return render(version_comparison_figure(versions, subject))


def render(figure: Figure) -> bytes:
    """The figure as a palette PNG (`PALETTE_COLOURS` colours); the figure is closed."""
    with plt.rc_context(STYLE):  # tick labels are made when the figure is drawn
        figure.tight_layout()
        figure.canvas.draw()
        rgba = np.asarray(figure.canvas.buffer_rgba())
    plt.close(figure)
    image = (
        Image.fromarray(rgba)
        .convert("RGB")
        .quantize(colors=PALETTE_COLOURS, method=Image.Quantize.FASTOCTREE)
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _title(subject: str, what: str) -> str:
    """`what` the chart shows, under the line naming what it is about (symbol, model, version) if given."""
    return f"{subject}\n{what}" if subject else what


def _figure(title: str) -> tuple[Figure, plt.Axes]:
    figure, axes = plt.subplots(figsize=SIZE_INCHES, dpi=DPI)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.tick_params(labelsize=STYLE["xtick.labelsize"])  # also for ticks made after the style is gone
    return figure, axes


def _whole_epochs(axes: plt.Axes, epochs: Sequence[int]) -> None:
    """Ticks on whole epochs only: each epoch while there are few, else integer steps; one epoch is centred."""
    if len(epochs) == 1:
        axes.set_xlim(epochs[0] - 1, epochs[0] + 1)
    if len(epochs) <= 12:
        axes.set_xticks(sorted(set(epochs)))
    else:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def _date_axis(axes: plt.Axes, days: int | None = None) -> None:
    """Dates (UTC) on the x axis, labelled concisely (year and month once, then days or hours)."""
    locator = mdates.AutoDateLocator(minticks=4, maxticks=12)
    if days is not None:  # one bar per day: ticks on whole days only
        locator = mdates.DayLocator(interval=max(1, round(days / 10)))
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _naive_utc(moment: datetime) -> datetime:
    """A datetime matplotlib draws as UTC wall time (aware values are converted, naive ones are UTC)."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment


def _naive_day(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)
