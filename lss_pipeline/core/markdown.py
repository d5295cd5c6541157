"""Markdown tables, for Dagster UI metadata and the evaluation report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        value = f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_rows(headers: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table from a header and rows of cells (pipes and newlines escaped)."""
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_table(df: pl.DataFrame, max_rows: int | None = None, empty: str = "_none_") -> str:
    """A Markdown table of a polars frame; ``max_rows`` keeps the head and says how many were left out."""
    if df.is_empty():
        return empty
    shown = df if max_rows is None else df.head(max_rows)
    table = markdown_rows(shown.columns, list(shown.iter_rows()))
    if max_rows is not None and df.height > max_rows:
        table += f"\n\n_{df.height - max_rows} more rows_"
    return table
