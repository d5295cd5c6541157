"""The three Kaggle label CSVs, read and validated row by row before any join.

A problem raises ``LabelValidationError`` naming the file, the 1-based data row (header
excluded) with its physical line number, and the column. Header-only files are valid here;
``store`` refuses to publish what they would produce.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

from lss_pipeline.core.constants import (
    CONDITION_NAMES,
    COORDINATES_CSV_HEADER,
    LEVELS,
    SERIES_CSV_HEADER,
    SERIES_DESCRIPTIONS,
    SEVERITIES,
    TRAIN_CSV_HEADER,
)

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


def read_train(path: Path) -> list[tuple[int, list[str | None]]]:
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


def read_coordinates(path: Path) -> list[tuple[int, int, int, str, str, float, float, int]]:
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
        out.append(
            (
                _id(path, row, "study_id", f[0]),
                _id(path, row, "series_id", f[1]),
                _id(path, row, "instance_number", f[2]),
                _choice(path, row, "condition", f[3], CONDITION_NAMES),
                _choice(path, row, "level", f[4], LEVELS),
                _coordinate(path, row, "x", f[5]),
                _coordinate(path, row, "y", f[6]),
                row.data_row,
            )
        )
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
