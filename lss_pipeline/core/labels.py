"""Kaggle label tables -> one long-form row per study x condition x level.

Every CSV is validated before any join: headers, id syntax (ids become paths), the
Kaggle strings, duplicates. A problem raises ``LabelValidationError`` naming the file,
the 1-based data row (header excluded) with its physical line number, and the column.
Nothing is written here; callers write the returned table atomically afterwards.

Quirks of the real data are counted in the stats dict, never fatal: labels with no
coordinate, coordinates of blank labels, a series carrying several categories, a study
with labels but no coordinate rows, several coordinate rows for one study x condition x
level (the first is kept), coordinates whose series or study is unknown.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections import Counter, defaultdict
from pathlib import Path

import polars as pl

from lss_pipeline.core import atomic
from lss_pipeline.core.constants import (
    CATEGORIES,
    CATEGORY_SERIES,
    CONDITION_CATEGORY,
    CONDITION_NAMES,
    CONDITIONS,
    COORDINATES_CSV,
    COORDINATES_CSV_HEADER,
    LEVEL_SLUGS,
    LEVELS,
    SERIES_CSV,
    SERIES_CSV_HEADER,
    SERIES_DESCRIPTIONS,
    SEVERITIES,
    SEVERITY_TO_LABEL,
    TRAIN_CSV,
    TRAIN_CSV_HEADER,
)

LABELS_FILE = "labels.parquet"
BLANK = "blank"

LABELS_SCHEMA: dict[str, pl.DataType] = {
    "study_id": pl.Int64,
    "category": pl.Utf8,
    "condition": pl.Utf8,
    "side": pl.Utf8,
    "level": pl.Utf8,
    "severity": pl.Utf8,
    "label": pl.Int8,
    "row_id": pl.Utf8,
    "series_id": pl.Int64,
    "series_description": pl.Utf8,
    "instance_number": pl.Int64,
    "x": pl.Float64,
    "y": pl.Float64,
}

# Ids become path components: plain digits only, and small enough for Int64.
_ID = re.compile(r"[0-9]{1,18}")


class LabelValidationError(ValueError):
    """A label file breaks the Kaggle contract; the message names file, row and column."""


class _Row:
    """One CSV data row with its position, for error messages."""

    __slots__ = ("fields", "data_row", "line")

    def __init__(self, fields: list[str], data_row: int, line: int) -> None:
        self.fields = fields
        self.data_row = data_row
        self.line = line


def _where(path: Path, row: _Row, column: str) -> str:
    return f"{path}: data row {row.data_row} (line {row.line}), column {column!r}"


def _read_csv(path: Path, header: tuple[str, ...]) -> list[_Row]:
    """Rows of a CSV whose header must equal ``header``; CRLF or LF, optional UTF-8 BOM."""
    if not path.is_file():
        raise LabelValidationError(f"{path}: required label file is missing")
    rows: list[_Row] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            found = next(reader, None)
            if found is None:
                raise LabelValidationError(f"{path}: empty file, expected header {','.join(header)}")
            if tuple(found) != header:
                for i, (want, got) in enumerate(zip(header, found)):
                    if want != got:
                        raise LabelValidationError(
                            f"{path}: line 1 (header), column {i + 1}: expected {want!r}, found {got!r}"
                        )
                raise LabelValidationError(
                    f"{path}: line 1 (header): expected {len(header)} columns, found {len(found)}"
                )
            data_row = 0
            for fields in reader:
                if not fields:  # blank line (e.g. trailing newline)
                    continue
                data_row += 1
                if len(fields) != len(header):
                    raise LabelValidationError(
                        f"{path}: data row {data_row} (line {reader.line_num}): "
                        f"{len(fields)} fields, expected {len(header)}"
                    )
                rows.append(_Row(fields, data_row, reader.line_num))
    except UnicodeDecodeError as exc:
        raise LabelValidationError(f"{path}: not UTF-8 text ({exc})") from exc
    except csv.Error as exc:
        raise LabelValidationError(f"{path}: malformed CSV ({exc})") from exc
    return rows


def _id(path: Path, row: _Row, column: str, value: str) -> int:
    if not _ID.fullmatch(value):
        raise LabelValidationError(f"{_where(path, row, column)}: id {value!r} is not a non-negative integer")
    return int(value)


def _choice(path: Path, row: _Row, column: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise LabelValidationError(
            f"{_where(path, row, column)}: unknown value {value!r}, expected one of {list(allowed)}"
        )
    return value


def _coordinate(path: Path, row: _Row, column: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise LabelValidationError(f"{_where(path, row, column)}: {value!r} is not a finite number")
    return number


def _read_train(path: Path) -> list[tuple[int, list[str | None]]]:
    """(study_id, 25 severities or None) per row, in file order."""
    studies: list[tuple[int, list[str | None]]] = []
    first_row: dict[int, int] = {}
    allowed = (*SEVERITIES, "")
    for row in _read_csv(path, TRAIN_CSV_HEADER):
        study_id = _id(path, row, "study_id", row.fields[0])
        if study_id in first_row:
            raise LabelValidationError(
                f"{_where(path, row, 'study_id')}: duplicate study id {study_id} "
                f"(first at data row {first_row[study_id]})"
            )
        first_row[study_id] = row.data_row
        severities = [
            _choice(path, row, column, value, allowed) or None
            for column, value in zip(TRAIN_CSV_HEADER[1:], row.fields[1:])
        ]
        studies.append((study_id, severities))
    return studies


def _read_coordinates(path: Path) -> list[tuple[int, int, int, str, str, float, float, int]]:
    """(study, series, instance, condition, level, x, y, data_row) per row, in file order."""
    out = []
    seen: dict[tuple[str, ...], int] = {}
    for row in _read_csv(path, COORDINATES_CSV_HEADER):
        f = row.fields
        key = tuple(f)
        if key in seen:
            raise LabelValidationError(
                f"{_where(path, row, 'study_id')}: duplicate row, every column equal to data row {seen[key]}"
            )
        seen[key] = row.data_row
        out.append((
            _id(path, row, "study_id", f[0]),
            _id(path, row, "series_id", f[1]),
            _id(path, row, "instance_number", f[2]),
            _choice(path, row, "condition", f[3], CONDITION_NAMES),
            _choice(path, row, "level", f[4], LEVELS),
            _coordinate(path, row, "x", f[5]),
            _coordinate(path, row, "y", f[6]),
            row.data_row,
        ))
    return out


def read_series_file(path: Path) -> dict[tuple[int, int], str]:
    """(study_id, series_id) -> series description, validated."""
    out: dict[tuple[int, int], str] = {}
    first_row: dict[tuple[int, int], int] = {}
    for row in _read_csv(path, SERIES_CSV_HEADER):
        key = (_id(path, row, "study_id", row.fields[0]), _id(path, row, "series_id", row.fields[1]))
        description = _choice(path, row, "series_description", row.fields[2], SERIES_DESCRIPTIONS)
        if key in first_row:
            raise LabelValidationError(
                f"{_where(path, row, 'series_id')}: duplicate study/series {key[0]}/{key[1]} "
                f"(first at data row {first_row[key]})"
            )
        first_row[key] = row.data_row
        out[key] = description
    return out


def build_labels(raw_dir: str | os.PathLike) -> tuple[pl.DataFrame, dict]:
    """Validate train.csv, train_label_coordinates.csv, train_series_descriptions.csv; join them.

    Returns (labels with LABELS_SCHEMA, 25 rows per study in train.csv order; stats for the UI).
    Raises LabelValidationError (a ValueError) before any join when a file is malformed.
    """
    raw_dir = Path(raw_dir)
    studies = _read_train(raw_dir / TRAIN_CSV)
    coordinates = _read_coordinates(raw_dir / COORDINATES_CSV)
    series_descriptions = read_series_file(raw_dir / SERIES_CSV)

    # --- coordinates: first row per study x condition x level
    study_ids = {study_id for study_id, _ in studies}
    coordinate_of: dict[tuple[int, str, str], tuple[int, int, float, float]] = {}
    duplicate_coordinate_rows = 0
    unknown_study_rows = 0
    unknown_series_rows = 0
    categories_of_series: dict[tuple[int, int], set[str]] = defaultdict(set)
    for study_id, series_id, instance, condition, level, x, y, _ in coordinates:
        if study_id not in study_ids:
            unknown_study_rows += 1
        if (study_id, series_id) not in series_descriptions:
            unknown_series_rows += 1
        categories_of_series[(study_id, series_id)].add(CONDITION_CATEGORY[condition])
        key = (study_id, condition, level)
        if key in coordinate_of:
            duplicate_coordinate_rows += 1
            continue
        coordinate_of[key] = (series_id, instance, x, y)

    # --- long form
    columns: dict[str, list] = {name: [] for name in LABELS_SCHEMA}
    severity_counts: Counter[str] = Counter()
    class_counts: dict[str, Counter[str]] = {c: Counter() for c in CATEGORIES}
    labels_without_coordinate = 0
    coordinates_of_blank_labels = 0
    unexpected_series: Counter[str] = Counter()
    studies_with_blank: set[int] = set()
    used_coordinate_keys: set[tuple[int, str, str]] = set()
    for study_id, severities in studies:
        cell = 0
        for condition, category, side, stem in CONDITIONS:
            for level, slug in zip(LEVELS, LEVEL_SLUGS):
                severity = severities[cell]
                cell += 1
                key = (study_id, condition, level)
                series_id, instance, x, y = coordinate_of.get(key, (None, None, None, None))
                description = series_descriptions.get((study_id, series_id))
                if series_id is not None:
                    used_coordinate_keys.add(key)
                severity_counts[severity or BLANK] += 1
                class_counts[category][severity or BLANK] += 1
                if severity is None:
                    studies_with_blank.add(study_id)
                    coordinates_of_blank_labels += series_id is not None
                else:
                    labels_without_coordinate += series_id is None
                if description is not None and description != CATEGORY_SERIES[category]:
                    unexpected_series[category] += 1
                columns["study_id"].append(study_id)
                columns["category"].append(category)
                columns["condition"].append(condition)
                columns["side"].append(side)
                columns["level"].append(level)
                columns["severity"].append(severity)
                columns["label"].append(SEVERITY_TO_LABEL[severity] if severity else None)
                columns["row_id"].append(f"{study_id}_{stem}_{slug}")
                columns["series_id"].append(series_id)
                columns["series_description"].append(description)
                columns["instance_number"].append(instance)
                columns["x"].append(x)
                columns["y"].append(y)
    labels = pl.DataFrame(columns, schema=LABELS_SCHEMA)

    coordinate_rows_per_study = Counter(c[0] for c in coordinates)
    several = sorted(
        (study_id, series_id, sorted(cats, key=CATEGORIES.index))
        for (study_id, series_id), cats in categories_of_series.items()
        if len(cats) > 1
    )
    described = Counter(series_descriptions.values())
    stats = {
        "n_studies": len(studies),
        "n_label_rows": labels.height,
        "severity_counts": {s: severity_counts[s] for s in (*SEVERITIES, BLANK)},
        "class_counts": {c: {s: class_counts[c][s] for s in (*SEVERITIES, BLANK)} for c in CATEGORIES},
        "blank_labels": severity_counts[BLANK],
        "studies_with_blank_labels": len(studies_with_blank),
        "n_coordinate_rows": len(coordinates),
        "labels_without_coordinate": labels_without_coordinate,
        "coordinates_of_blank_labels": coordinates_of_blank_labels,
        "studies_without_coordinates": sorted(s for s, _ in studies if coordinate_rows_per_study[s] == 0),
        "duplicate_coordinate_rows": duplicate_coordinate_rows,
        "coordinates_study_not_in_train": unknown_study_rows,
        "coordinates_series_not_in_series_file": unknown_series_rows,
        "series_with_several_categories": [
            {"study_id": st, "series_id": se, "categories": cats} for st, se, cats in several
        ],
        "labels_on_unexpected_series_description": {c: unexpected_series[c] for c in CATEGORIES},
        "n_series": len(series_descriptions),
        "series_description_counts": {d: described[d] for d in SERIES_DESCRIPTIONS},
    }
    return labels, stats


def write_labels(labels: pl.DataFrame, out_dir: str | os.PathLike) -> Path:
    """Write ``labels.parquet`` atomically into out_dir."""
    if dict(labels.schema) != LABELS_SCHEMA:
        raise ValueError(f"labels table does not have the contract schema: {dict(labels.schema)}")
    return atomic.write_parquet(labels, Path(out_dir) / LABELS_FILE)
