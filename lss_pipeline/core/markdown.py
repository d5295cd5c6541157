"""Markdown tables from polars frames, for Dagster UI metadata and reports."""

from __future__ import annotations

import polars as pl


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown_table(df: pl.DataFrame, max_rows: int | None = None, empty: str = "_none_") -> str:
    if df.is_empty():
        return empty
    shown = df if max_rows is None else df.head(max_rows)
    lines = [
        "| " + " | ".join(shown.columns) + " |",
        "|" + "---|" * len(shown.columns),
        *("| " + " | ".join(_cell(v) for v in row) + " |" for row in shown.iter_rows()),
    ]
    if max_rows is not None and df.height > max_rows:
        lines.append(f"\n_{df.height - max_rows} more rows_")
    return "\n".join(lines)
