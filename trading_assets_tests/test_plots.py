"""The charts are real, small PNGs and embed as Markdown images."""

import base64
from datetime import date, timedelta

import pytest

from trading_assets.defs.metadata import confusion_matrix_table, markdown_image, markdown_records
from trading_assets.plots import (
    candle_coverage_png,
    equity_curve_png,
    learning_curve_png,
    reliability_diagram_png,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CURVE = [
    {"epoch": e, "loss": 0.7 - 0.01 * e, "val_loss": 0.69 - 0.005 * e, "val_accuracy": 0.6}
    for e in range(1, 16)
]
TABLE = [
    {"lower": b / 15, "upper": (b + 1) / 15, "mean_predicted": (b + 0.5) / 15, "observed_frequency": b / 15,
     "count": 100 + b}
    for b in range(15)
]  # fmt: skip


@pytest.mark.parametrize(
    "png",
    [
        pytest.param(lambda: learning_curve_png(CURVE), id="learning_curve"),
        pytest.param(lambda: reliability_diagram_png(TABLE), id="reliability"),
        pytest.param(
            lambda: equity_curve_png([1 + 0.001 * i for i in range(2000)], [1.0] * 2000, 5.0), id="equity"
        ),
        pytest.param(
            lambda: candle_coverage_png(
                [date(2024, 1, 1) + timedelta(days=d) for d in range(30)], [1.0] * 29 + [0.5], 0.95
            ),
            id="coverage",
        ),
    ],
)
def test_each_chart_is_a_png_of_a_few_tens_of_kb(png) -> None:
    data = png()
    assert data.startswith(PNG_SIGNATURE)
    assert 2_000 < len(data) < 60_000
    embedded = markdown_image("chart", data).value
    assert embedded.startswith("![chart](data:image/png;base64,")
    assert (
        base64.b64decode(embedded.removeprefix("![chart](data:image/png;base64,").removesuffix(")")) == data
    )


def test_tables_round_floats_and_show_missing_values_as_a_dash() -> None:
    table = markdown_records(
        [{"model": "lstm", "accuracy": 0.712345678, "price": 43123.456, "weight": None}]
    ).value
    assert table.splitlines() == ["| model | accuracy | price | weight |", "| --- | --- | --- | --- |",
                                  "| lstm | 0.7123 | 43123.46 | — |"]  # fmt: skip
    assert confusion_matrix_table([[10, 2], [3, 11]]).value.splitlines()[2:] == [
        "| actual down | 10 | 2 |",
        "| actual up | 3 | 11 |",
    ]
