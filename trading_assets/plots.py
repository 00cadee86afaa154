"""Small PNG charts for the Dagster UI: each function returns PNG bytes (matplotlib, Agg backend).

`markdown_image` (in `trading_assets.defs.metadata`) embeds them in Markdown metadata. Figures are small
(about 5 x 3 inches at 80 dpi, a few tens of KB) because metadata lives in the event log. No Dagster.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no display: render to memory only

import matplotlib.pyplot as plt  # noqa: E402 (the backend is chosen before pyplot loads)
from matplotlib.figure import Figure  # noqa: E402

SIZE_INCHES = (5.0, 3.0)
DPI = 80


def learning_curve_png(curve: Sequence[dict[str, float]]) -> bytes:
    """Training and validation loss per epoch (rows with `epoch`, `loss`, `val_loss`, and optionally
    `val_accuracy` on a second axis)."""
    figure, axes = _figure("Learning curve")
    epochs = [row["epoch"] for row in curve]
    axes.plot(epochs, [row["loss"] for row in curve], marker="o", label="train loss")
    axes.plot(epochs, [row["val_loss"] for row in curve], marker="o", label="val loss")
    axes.set_xlabel("epoch")
    axes.set_ylabel("BCE loss")
    if curve and "val_accuracy" in curve[0]:
        accuracy = axes.twinx()
        accuracy.plot(
            epochs, [row["val_accuracy"] for row in curve], color="tab:green", ls="--", label="val acc"
        )
        accuracy.set_ylabel("val accuracy")
        accuracy.legend(loc="upper right", fontsize="small")
    axes.legend(loc="upper left", fontsize="small")
    return _png(figure)


def reliability_diagram_png(table: Sequence[dict[str, float]]) -> bytes:
    """Observed frequency against mean predicted probability per bin (rows as `ml.metrics.reliability_table`
    gives them), the diagonal for perfect calibration, marker size by count."""
    figure, axes = _figure("Reliability (calibrated test)")
    axes.plot([0, 1], [0, 1], color="grey", ls=":", label="perfect")
    counts = [row["count"] for row in table]
    largest = max(counts, default=1)
    axes.scatter(
        [row["mean_predicted"] for row in table],
        [row["observed_frequency"] for row in table],
        s=[20 + 180 * count / largest for count in counts],
        label="bins (size: count)",
    )
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("mean predicted P(up)")
    axes.set_ylabel("observed frequency of up")
    axes.legend(loc="upper left", fontsize="small")
    return _png(figure)


def equity_curve_png(strategy: Sequence[float], buy_and_hold: Sequence[float], fee_bps: float) -> bytes:
    """Growth of 1 over the test part (curves evenly thinned): the runtime's signal after fees and slippage
    against buy-and-hold."""
    figure, axes = _figure(f"Test backtest after {fee_bps:g} bps costs per trade")
    for curve, label in ((strategy, "signal strategy"), (buy_and_hold, "buy and hold")):
        axes.plot(np.linspace(0.0, 100.0, len(curve)), curve, label=label)
    axes.axhline(1.0, color="grey", lw=0.8, ls=":")
    axes.set_xlabel("share of the test part (%)")
    axes.set_ylabel("equity (start = 1)")
    axes.legend(loc="best", fontsize="small")
    return _png(figure)


def candle_coverage_png(days: Sequence[date], coverage: Sequence[float], min_coverage: float) -> bytes:
    """Share of each day's 1,440 minutes present in the store, with the coverage check's threshold."""
    figure, axes = _figure("raw_candles coverage per day")
    colors = ["tab:red" if share < min_coverage else "tab:blue" for share in coverage]
    axes.bar(list(days), [100 * share for share in coverage], color=colors, width=0.8)
    axes.axhline(
        100 * min_coverage, color="grey", ls="--", lw=0.8, label=f"threshold {100 * min_coverage:g}%"
    )
    axes.set_ylim(0, 105)
    axes.set_ylabel("minutes present (%)")
    axes.legend(loc="lower left", fontsize="small")
    figure.autofmt_xdate()
    return _png(figure)


def _figure(title: str) -> tuple[Figure, plt.Axes]:
    figure, axes = plt.subplots(figsize=SIZE_INCHES, dpi=DPI)
    axes.set_title(title, fontsize="medium")
    axes.grid(alpha=0.3)
    return figure, axes


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=DPI)
    plt.close(figure)
    return buffer.getvalue()
