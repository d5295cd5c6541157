"""Every trained partition (architecture x category), read once and checked, with the labels and splits.

A partition is ``paths.model_dir(arch, category)`` with its summary, out-of-fold table (every cv
study scored by the fold model that did not train on it) and test predictions (every test-split row,
mean of the fold models' probabilities): ``paths.model_summary`` / ``model_oof`` /
``model_test_predictions``. One without all three is listed as missing with the reason, not an
error. A present but malformed file raises ValueError naming the file and the problem.
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
    test: pl.DataFrame = field(repr=False)


@dataclass(frozen=True)
class Grid:
    """The trained partitions, in (architecture, category) order, and the ones not trained yet."""

    partitions: dict[tuple[str, str], Partition]
    missing: list[tuple[str, str]]
    archs: tuple[str, ...]
    categories: tuple[str, ...]
    # (arch, category) -> why a partition on disk is not usable (e.g. no test predictions yet).
    incomplete: dict[tuple[str, str], str] = field(default_factory=dict)
    labels: pl.DataFrame | None = field(default=None, repr=False)  # labels.parquet, if built
    splits: pl.DataFrame | None = field(default=None, repr=False)  # data_splits.parquet, if built

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


def load_partition(paths: Paths, arch: str, category: str) -> Partition | str | None:
    """One trained partition; None when nothing is there; the reason when a file is missing."""
    files = {
        "summary": paths.model_summary(arch, category),
        "out-of-fold table": paths.model_oof(arch, category),
        "test predictions": paths.model_test_predictions(arch, category),
    }
    absent = [what for what, path in files.items() if not path.is_file()]
    if len(absent) == len(files):
        return None
    if absent:
        return f"no {' and no '.join(absent)} (an unfinished or pre-test-split training; retrain it)"
    summary = read_summary(files["summary"], arch, category)
    oof = read_predictions(files["out-of-fold table"], "out-of-fold table")
    test = read_predictions(files["test predictions"], "test predictions")
    return Partition(arch, category, summary, oof, test)


def _optional_table(path: Path) -> pl.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pl.read_parquet(path)
    except Exception as exc:  # polars raises several types for a corrupt file
        raise ValueError(f"{path}: not readable Parquet ({exc})") from exc


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
    incomplete: dict[tuple[str, str], str] = {}
    for arch in archs:
        for category in categories:
            loaded = load_partition(paths, arch, category)
            if isinstance(loaded, Partition):
                partitions[(arch, category)] = loaded
                say(
                    f"{arch}/{category}: {loaded.oof.height} out-of-fold rows, {loaded.test.height} test rows"
                )
                continue
            missing.append((arch, category))
            if loaded is None:
                say(f"{arch}/{category}: not trained yet")
            else:
                incomplete[(arch, category)] = loaded
                say(f"{arch}/{category}: left out, {loaded}")
    return Grid(
        partitions,
        missing,
        tuple(archs),
        tuple(categories),
        incomplete=incomplete,
        labels=_optional_table(paths.labels),
        splits=_optional_table(paths.data_splits),
    )
