"""Helpers that turn core results into Dagster metadata values."""

from __future__ import annotations

from datetime import date, datetime

import dagster as dg
import polars as pl


def markdown_table(frame: pl.DataFrame, float_digits: int = 6) -> dg.MetadataValue:
    """A small frame as a Markdown table for the UI (floats rounded, timestamps ISO)."""
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    lines = [header, rule]
    for row in frame.iter_rows():
        lines.append("| " + " | ".join(_cell(value, float_digits) for value in row) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def _cell(value: object, float_digits: int) -> str:
    if isinstance(value, float):
        return f"{value:.{float_digits}g}"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "none"


def batch_metadata(symbol: str, days: list[date]) -> dict[str, str]:
    """Failure metadata naming the symbol and the days of the batch that failed."""
    return {"symbol": symbol, "first_date": days[0].isoformat(), "last_date": days[-1].isoformat()}
