"""Every trained partition (architecture x category), read once and checked.

A partition is ``paths.model_dir(arch, category)`` with its ``summary.json`` and out-of-fold table
(``paths.model_summary`` / ``paths.model_oof``); one without both files is listed as missing, not
an error. A present but malformed file raises ValueError naming the file and the problem.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from lss_pipeline.core.constants import ARCHITECTURES, CATEGORIES, PROB_COLUMNS
from lss_pipeline.core.paths import Paths

PREDICTION_REQUIRED: tuple[str, ...] = ("study_id", "row_id", "label", *PROB_COLUMNS)


@dataclass(frozen=True)
class Partition:
    arch: str
    category: str
    summary: dict[str, Any] = field(repr=False)
    oof: pl.DataFrame = field(repr=False)


@dataclass(frozen=True)
class Grid:
    """The trained partitions, in (architecture, category) order, and the ones not trained yet."""

    partitions: dict[tuple[str, str], Partition]
    missing: list[tuple[str, str]]
    archs: tuple[str, ...]
    categories: tuple[str, ...]

    def get(self, arch: str, category: str) -> Partition | None:
        return self.partitions.get((arch, category))

    def of_category(self, category: str) -> list[Partition]:
        return [p for (_, c), p in self.partitions.items() if c == category]

    def of_arch(self, arch: str) -> dict[str, Partition]:
        return {c: p for (a, c), p in self.partitions.items() if a == arch}


def read_predictions(path: Path, what: str = "predictions") -> pl.DataFrame:
    """A prediction table (OOF or test), checked: columns, no null ids/probabilities, labels 0/1/2."""
    try:
        table = pl.read_parquet(path)
    except Exception as exc:  # polars raises several types for a corrupt file
        raise ValueError(f"{path}: not readable Parquet ({exc})") from exc
    missing = [c for c in PREDICTION_REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    for col in ("study_id", "row_id", *PROB_COLUMNS):
        n_null = table[col].null_count()
        if n_null:
            raise ValueError(f"{path}: column {col!r} has {n_null} null value(s)")
    bad = table.filter(pl.col("label").is_not_null() & ~pl.col("label").is_in([0, 1, 2]))
    if len(bad):
        raise ValueError(
            f"{path}: column 'label' must be 0/1/2; row_id {bad['row_id'][0]!r} has {bad['label'][0]}"
        )
    if table["label"].drop_nulls().is_empty():
        raise ValueError(f"{path}: no labelled rows in the {what}")
    return table


def read_summary(path: Path, arch: str, category: str) -> dict[str, Any]:
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(summary, dict):
        raise ValueError(f"{path}: expected a JSON object")
    for key, expected in (("arch", arch), ("category", category)):
        if key in summary and summary[key] != expected:
            raise ValueError(f"{path}: {key}={summary[key]!r} but the folder says {expected!r}")
    return summary


def load_partition(paths: Paths, arch: str, category: str) -> Partition | None:
    """One trained partition, or None when its summary or OOF table is absent."""
    summary_path, oof_path = paths.model_summary(arch, category), paths.model_oof(arch, category)
    if not (summary_path.is_file() and oof_path.is_file()):
        return None
    summary = read_summary(summary_path, arch, category)
    return Partition(arch, category, summary, read_predictions(oof_path, "out-of-fold table"))


def load_grid(
    paths: Paths,
    archs: Sequence[str] = ARCHITECTURES,
    categories: Sequence[str] = CATEGORIES,
    progress: Callable[[str], None] | None = None,
) -> Grid:
    """Every available partition of ``archs`` x ``categories``, each file read once."""
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        raise ValueError(f"unknown categories {unknown}; expected some of {CATEGORIES}")
    say = progress or (lambda _msg: None)
    partitions: dict[tuple[str, str], Partition] = {}
    missing: list[tuple[str, str]] = []
    for arch in archs:
        for category in categories:
            loaded = load_partition(paths, arch, category)
            if loaded is None:
                missing.append((arch, category))
                say(f"{arch}/{category}: not trained yet")
            else:
                partitions[(arch, category)] = loaded
                say(f"{arch}/{category}: {loaded.oof.height} out-of-fold rows")
    return Grid(partitions, missing, tuple(archs), tuple(categories))
