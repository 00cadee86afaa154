"""The charts are real PNGs a trader reads: at least 800 px wide, fonts of 11 pt and more, titled with symbol,
model and version, whole epochs, returns in % over dates, missing days drawn; small enough for the event log,
and embedded as Markdown images."""

import base64
from datetime import UTC, date, datetime, timedelta

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import pytest
from matplotlib.text import Text

from trading_assets.defs.metadata import confusion_matrix_table, markdown_image, markdown_records
from trading_assets.plots import (
    MISSING_LABEL,
    candle_coverage_figure,
    candle_coverage_png,
    equity_curve_figure,
    equity_curve_png,
    learning_curve_figure,
    learning_curve_png,
    model_subject,
    reliability_diagram_figure,
    reliability_diagram_png,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CURVE = [
    {"epoch": e, "loss": 0.7 - 0.01 * e, "val_loss": 0.69 - 0.005 * e, "val_accuracy": 0.6}
    for e in range(1, 16)
]
TABLE = [
    {
        "lower": b / 15,
        "upper": (b + 1) / 15,
        "mean_predicted": (b + 0.5) / 15,
        "observed_frequency": b / 15,
        "count": 100 + b,
    }
    for b in range(15)
]


SUBJECT = model_subject("BTC-USD", "lstm", "20240214T101500123456Z")
TIMES = [datetime(2024, 2, 12, tzinfo=UTC) + timedelta(minutes=15 * i) for i in range(200)]
STRATEGY = [1 + 0.0001 * i for i in range(200)]
HOLD = [1 - 0.00005 * i for i in range(200)]
DAYS = [date(2024, 1, 1) + timedelta(days=d) for d in range(30)]
COVERAGE = [1.0] * 20 + [0.0, 0.0, 0.5] + [1.0] * 7  # Jan 21 and 22 missing, Jan 23 half


def png_width(data: bytes) -> int:
    """The width in pixels from the PNG's IHDR chunk (bytes 16-20, big-endian)."""
    assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big")


CHARTS = {
    "learning_curve": lambda: learning_curve_png(CURVE, SUBJECT),
    "reliability": lambda: reliability_diagram_png(TABLE, SUBJECT),
    "equity": lambda: equity_curve_png(TIMES, STRATEGY, HOLD, "costs 7 bps per side", SUBJECT),
    "coverage": lambda: candle_coverage_png(DAYS, COVERAGE, 0.95, "BTC-USD", set(DAYS[10:25])),
}
FIGURES = {
    "learning_curve": lambda: learning_curve_figure(CURVE, SUBJECT),
    "reliability": lambda: reliability_diagram_figure(TABLE, SUBJECT),
    "equity": lambda: equity_curve_figure(TIMES, STRATEGY, HOLD, "costs 7 bps per side", SUBJECT),
    "coverage": lambda: candle_coverage_figure(DAYS, COVERAGE, 0.95, "BTC-USD"),
}


@pytest.mark.parametrize("name", CHARTS)
def test_each_chart_is_a_png_at_least_800_px_wide_of_a_few_tens_of_kb(name: str) -> None:
    data = CHARTS[name]()
    assert png_width(data) >= 800
    assert 2_000 < len(data) < 60_000, len(data)
    embedded = markdown_image("chart", data).value
    assert embedded.startswith("![chart](data:image/png;base64,")
    assert (
        base64.b64decode(embedded.removeprefix("![chart](data:image/png;base64,").removesuffix(")")) == data
    )


@pytest.mark.parametrize("name", FIGURES)
def test_each_chart_is_titled_with_what_it_is_about_in_legible_fonts(name: str) -> None:
    figure = FIGURES[name]()
    figure.canvas.draw()  # makes the tick labels
    title = figure.axes[0].get_title()
    if name == "coverage":
        assert title.startswith("BTC-USD\nraw_candles: ")
    else:
        assert title.startswith("BTC-USD · lstm · 20240214T101500123456Z\n"), title
    sizes = {text.get_text(): text.get_fontsize() for text in figure.findobj(Text) if text.get_text().strip()}
    assert min(sizes.values()) >= 11, sizes
    plt.close(figure)


def test_an_untitled_chart_says_only_what_it_shows() -> None:
    figure = learning_curve_figure(CURVE)
    assert figure.axes[0].get_title() == "Learning curve"
    plt.close(figure)


@pytest.mark.parametrize("epochs", [1, 2, 5, 40])
def test_the_learning_curve_has_whole_epochs_on_its_x_axis(epochs: int) -> None:
    """A default axis ticks 0.95 .. 1.05 for one epoch and 1.0, 1.2, .., 2.0 for two."""
    curve = [
        {"epoch": e, "loss": 0.7 - 0.001 * e, "val_loss": 0.69, "val_accuracy": 0.6}
        for e in range(1, epochs + 1)
    ]
    figure = learning_curve_figure(curve)
    figure.canvas.draw()
    axes = figure.axes[0]
    low, high = axes.get_xlim()
    shown = [tick for tick in axes.get_xticks() if low <= tick <= high]
    assert shown and all(float(tick).is_integer() for tick in shown), shown
    if epochs <= 5:
        assert shown == list(range(1, epochs + 1))
    plt.close(figure)


def test_the_equity_chart_shows_returns_in_percent_over_dates() -> None:
    figure = equity_curve_figure(TIMES, STRATEGY, HOLD, "costs 7 bps per side", SUBJECT)
    figure.canvas.draw()
    axes = figure.axes[0]
    strategy, hold = axes.get_lines()[:2]
    assert strategy.get_xdata()[0] == datetime(2024, 2, 12) and strategy.get_xdata()[-1] == TIMES[-1].replace(
        tzinfo=None
    )
    assert isinstance(axes.xaxis.get_major_formatter(), mdates.ConciseDateFormatter)
    labels = [label.get_text() for label in axes.get_xticklabels()]
    assert labels[:2] == ["Feb-12", "06:00"] and "Feb-13" in labels, labels
    assert axes.xaxis.get_offset_text().get_text() == "2024-Feb-14"
    assert strategy.get_ydata()[0] == 0.0 and strategy.get_ydata()[-1] == pytest.approx(
        100 * (STRATEGY[-1] - 1)
    )
    assert hold.get_ydata()[-1] == pytest.approx(100 * (HOLD[-1] - 1))
    assert "costs 7 bps per side" in axes.get_title()
    plt.close(figure)
    with pytest.raises(ValueError, match="differ in length"):
        equity_curve_png(TIMES[:-1], STRATEGY, HOLD)


def test_the_coverage_chart_draws_a_missing_day_as_a_labelled_full_height_bar() -> None:
    figure = candle_coverage_figure(DAYS, COVERAGE, 0.95, "BTC-USD")
    axes = figure.axes[0]
    missing = [c for c in axes.containers if c.get_label() == MISSING_LABEL]
    [bars] = missing
    assert [mdates.num2date(bar.get_x() + bar.get_width() / 2).date() for bar in bars] == DAYS[20:22]
    assert all(bar.get_height() == 100 and bar.get_hatch() for bar in bars)
    assert MISSING_LABEL in [text.get_text() for text in axes.get_legend().get_texts()]
    present = [bar for c in axes.containers if c.get_label() != MISSING_LABEL for bar in c]
    assert len(present) == 28 and sorted(bar.get_height() for bar in present)[0] == 50.0
    plt.close(figure)
    complete = candle_coverage_figure(DAYS, [1.0] * 30, 0.95)
    assert all(c.get_label() != MISSING_LABEL for c in complete.axes[0].containers)
    plt.close(complete)


def test_tables_round_floats_and_show_missing_values_as_a_dash() -> None:
    table = markdown_records(
        [{"model": "lstm", "accuracy": 0.712345678, "price": 43123.456, "weight": None}]
    ).value
    assert table.splitlines() == [
        "| model | accuracy | price | weight |",
        "| --- | --- | --- | --- |",
        "| lstm | 0.7123 | 43123.46 | — |",
    ]
    assert confusion_matrix_table([[10, 2], [3, 11]]).value.splitlines()[2:] == [
        "| actual down | 10 | 2 |",
        "| actual up | 3 | 11 |",
    ]


def test_the_version_comparison_is_a_wide_chart_of_every_version() -> None:
    from datetime import UTC, datetime, timedelta

    from trading_assets.plots import VersionCurves, version_comparison_png

    start = datetime(2024, 1, 2, tzinfo=UTC)
    versions = [
        VersionCurves(
            f"v{i}",
            [1, 2, 3],
            [0.69, 0.6, 0.55 + i / 100],
            [start + timedelta(hours=h) for h in range(3)],
            [1.0, 1.01, 1.02 + i / 100],
        )
        for i in range(3)
    ]
    png = version_comparison_png(versions, "BTC-USD · lstm")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") >= 800
