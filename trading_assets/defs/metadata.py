"""Helpers that turn core results into Dagster metadata values: Markdown tables with sensible rounding
and PNG charts embedded in Markdown (both render in the UI's metadata panel)."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import date, datetime

import dagster as dg
import polars as pl

#: Owners shown on every asset of the code location.
ASSET_OWNERS = ["team:trading"]
#: Significant digits of floats in Markdown tables.
FLOAT_DIGITS = 4
#: What a table cell shows for a missing value.
MISSING = "—"


def markdown_table(frame: pl.DataFrame, float_digits: int = FLOAT_DIGITS) -> dg.MetadataValue:
    """A small frame as a Markdown table for the UI (floats rounded, timestamps ISO)."""
    return dg.MetadataValue.md(_markdown_rows(frame.columns, frame.iter_rows(), float_digits))


def markdown_records(
    rows: Sequence[Mapping[str, object]], float_digits: int = FLOAT_DIGITS
) -> dg.MetadataValue:
    """Rows of possibly mixed types (None shows as a dash) as a Markdown table; columns of the first row."""
    if not rows:
        return dg.MetadataValue.md("(empty)")
    columns = list(rows[0])
    return dg.MetadataValue.md(
        _markdown_rows(columns, ([row.get(column) for column in columns] for row in rows), float_digits)
    )


def markdown_mapping(
    mapping: Mapping[str, object], header: tuple[str, str] = ("", "value"), float_digits: int = FLOAT_DIGITS
) -> dg.MetadataValue:
    """A flat mapping as a two-column Markdown table (key, value)."""
    return dg.MetadataValue.md(_markdown_rows(list(header), mapping.items(), float_digits))


def confusion_matrix_table(matrix: Sequence[Sequence[int]]) -> dg.MetadataValue:
    """The 2 x 2 confusion matrix of a direction model ([[tn, fp], [fn, tp]]) with labelled rows."""
    (down_down, down_up), (up_down, up_up) = matrix
    rows = [("actual down", down_down, down_up), ("actual up", up_down, up_up)]
    return dg.MetadataValue.md(_markdown_rows(["", "predicted down", "predicted up"], rows, FLOAT_DIGITS))


def markdown_image(title: str, png: bytes) -> dg.MetadataValue:
    """A PNG inside Markdown metadata (Dagster's UI renders data: URLs of images)."""
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})")


def _markdown_rows(columns: Sequence[str], rows, float_digits: int) -> str:
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(_cell(value, float_digits) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: object, float_digits: int) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        # Significant digits, except that large values (prices) keep their integer part and two decimals.
        return f"{value:.2f}" if abs(value) >= 10 ** (float_digits - 1) else f"{value:.{float_digits}g}"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "none"


def batch_metadata(symbol: str, days: list[date]) -> dict[str, str]:
    """Failure metadata naming the symbol and the days of the batch that failed."""
    return {"symbol": symbol, "first_date": days[0].isoformat(), "last_date": days[-1].isoformat()}
