"""Tidy labels: validation before joins (``tables``), long form and quirk counts (``tidy``), real tables."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from lss_pipeline.core.constants import (
    COORDINATES_CSV,
    COORDINATES_CSV_HEADER,
    SERIES_CSV,
    SERIES_CSV_HEADER,
    TRAIN_CSV,
    TRAIN_CSV_HEADER,
)
from lss_pipeline.core.labels.tables import LabelValidationError
from lss_pipeline.core.labels.tidy import LABELS_SCHEMA, build_labels
from lss_pipeline.core.paths import Paths
from lss_pipeline_tests.real_labels import REAL_LABELS

# ----------------------------------------------------------------------------- small hand-made tables


def _paths(raw: Path) -> Paths:
    return Paths(data_dir=raw.parent / "data", raw_dir=raw)


def _train_row(study: str, first: str = "Normal/Mild", rest: str = "Normal/Mild") -> list[str]:
    return [study, first] + [rest] * 24


def _write(
    raw: Path, train: list[list[str]], coords: list[list[str]], series: list[list[str]], eol: str = "\r\n"
) -> Path:
    raw.mkdir(parents=True, exist_ok=True)
    for name, header, rows in (
        (TRAIN_CSV, TRAIN_CSV_HEADER, train),
        (COORDINATES_CSV, COORDINATES_CSV_HEADER, coords),
        (SERIES_CSV, SERIES_CSV_HEADER, series),
    ):
        lines = [",".join(header)] + [",".join(r) for r in rows]
        (raw / name).write_bytes((eol.join(lines) + eol).encode())
    return raw


def _good_tables():
    train = [_train_row("10", "Moderate"), _train_row("20", "Severe", "")]
    coords = [
        ["10", "1", "3", "Spinal Canal Stenosis", "L1/L2", "100.5", "120.25"],
        ["10", "1", "4", "Spinal Canal Stenosis", "L1/L2", "1.0", "2.0"],  # second row for the same cell
        ["10", "2", "5", "Left Neural Foraminal Narrowing", "L4/L5", "50", "60"],
        ["10", "2", "5", "Spinal Canal Stenosis", "L2/L3", "10", "20"],  # series 2 carries scs and nfs
        ["20", "7", "1", "Left Subarticular Stenosis", "L5/S1", "5", "6"],  # blank label with a coordinate
        ["20", "9", "1", "Spinal Canal Stenosis", "L1/L2", "5", "6"],  # series 9 is not in the series file
    ]
    series = [["10", "1", "Sagittal T2/STIR"], ["10", "2", "Sagittal T1"], ["20", "7", "Axial T2"]]
    return train, coords, series


def test_small_tables_long_form_and_stats(tmp_path):
    raw = _write(tmp_path, *_good_tables())
    labels, stats = build_labels(_paths(raw))
    assert dict(labels.schema) == LABELS_SCHEMA
    assert labels.height == 50
    first = labels.row(0, named=True)
    assert first == {
        "study_id": 10,
        "category": "scs",
        "condition": "Spinal Canal Stenosis",
        "side": None,
        "level": "L1/L2",
        "severity": "Moderate",
        "label": 1,
        "row_id": "10_spinal_canal_stenosis_l1_l2",
        "series_id": 1,
        "series_description": "Sagittal T2/STIR",
        "instance_number": 3,
        "x": 100.5,
        "y": 120.25,
    }
    lfn = labels.filter(
        (pl.col("study_id") == 10)
        & (pl.col("condition") == "Left Neural Foraminal Narrowing")
        & (pl.col("level") == "L4/L5")
    ).row(0, named=True)
    assert (lfn["category"], lfn["side"]) == ("nfs", "left")
    assert lfn["row_id"] == "10_left_neural_foraminal_narrowing_l4_l5"
    assert labels.filter(pl.col("study_id") == 20)["severity"].null_count() == 24
    assert stats["severity_counts"] == {"Normal/Mild": 24, "Moderate": 1, "Severe": 1, "blank": 24}
    assert stats["duplicate_coordinate_rows"] == 1
    assert stats["coordinates_of_blank_labels"] == 1
    # study 10: 25 - 3 covered; study 20's one non-blank label has its point
    assert stats["labels_without_coordinate"] == 22
    assert stats["coordinates_series_not_in_series_file"] == 1
    assert stats["series_with_several_categories"] == [
        {"study_id": 10, "series_id": 2, "categories": ["scs", "nfs"]}
    ]
    assert stats["labels_on_unexpected_series_description"]["scs"] == 1  # scs point on a Sagittal T1
    assert stats["studies_without_coordinates"] == []


def test_lf_line_ends_give_the_same_table(tmp_path):
    crlf, _ = build_labels(_paths(_write(tmp_path / "crlf", *_good_tables())))
    lf, _ = build_labels(_paths(_write(tmp_path / "lf", *_good_tables(), eol="\n")))
    assert crlf.equals(lf)


@pytest.mark.parametrize(
    "mutate, file, where, column",
    [
        (
            lambda t, c, s: t[1].__setitem__(3, "Moderat"),
            TRAIN_CSV,
            "data row 2 (line 3)",
            "spinal_canal_stenosis_l3_l4",
        ),
        (lambda t, c, s: t[1].__setitem__(0, "20a"), TRAIN_CSV, "data row 2 (line 3)", "study_id"),
        (lambda t, c, s: t.append(_train_row("10")), TRAIN_CSV, "data row 3 (line 4)", "study_id"),
        (
            lambda t, c, s: c[2].__setitem__(3, "Left Foraminal Narrowing"),
            COORDINATES_CSV,
            "data row 3 (line 4)",
            "condition",
        ),
        (lambda t, c, s: c[0].__setitem__(4, "L6/S1"), COORDINATES_CSV, "data row 1 (line 2)", "level"),
        (lambda t, c, s: c[4].__setitem__(1, "../7"), COORDINATES_CSV, "data row 5 (line 6)", "series_id"),
        (lambda t, c, s: c[1].__setitem__(5, "nan"), COORDINATES_CSV, "data row 2 (line 3)", "x"),
        (lambda t, c, s: c.append(list(c[0])), COORDINATES_CSV, "data row 7 (line 8)", "study_id"),
        (
            lambda t, c, s: s[2].__setitem__(2, "Axial T1"),
            SERIES_CSV,
            "data row 3 (line 4)",
            "series_description",
        ),
        (lambda t, c, s: s.append(list(s[0])), SERIES_CSV, "data row 4 (line 5)", "series_id"),
    ],
)
def test_bad_values_name_file_row_and_column(tmp_path, mutate, file, where, column):
    train, coords, series = _good_tables()
    mutate(train, coords, series)
    raw = _write(tmp_path, train, coords, series)
    with pytest.raises(LabelValidationError) as info:
        build_labels(_paths(raw))
    message = str(info.value)
    assert str(raw / file) in message and where in message and repr(column) in message, message
    assert isinstance(info.value, ValueError)


def test_wrong_header_and_field_count(tmp_path):
    train, coords, series = _good_tables()
    raw = _write(tmp_path, train, coords, series)
    text = (raw / COORDINATES_CSV).read_text()
    (raw / COORDINATES_CSV).write_text(text.replace("instance_number", "instance", 1))
    header_error = r"line 1 \(header\), column 3: expected 'instance_number'"
    with pytest.raises(LabelValidationError, match=header_error):
        build_labels(_paths(raw))
    raw = _write(tmp_path / "b", train, coords[:1] + [coords[1][:6]], series)
    with pytest.raises(LabelValidationError, match=r"data row 2 \(line 3\): 6 fields, expected 7"):
        build_labels(_paths(raw))
    raw = _write(tmp_path / "c", train, coords, series)
    (raw / SERIES_CSV).unlink()
    with pytest.raises(LabelValidationError, match=f"{SERIES_CSV}: required label file is missing"):
        build_labels(_paths(raw))


# ----------------------------------------------------------------------------- the real Kaggle tables


@pytest.fixture(scope="module")
def real():
    if not (REAL_LABELS / TRAIN_CSV).is_file():
        pytest.skip(f"real RSNA label tables not found at {REAL_LABELS}")
    return build_labels(_paths(REAL_LABELS))


def test_real_tables_have_crlf_line_ends():
    if not (REAL_LABELS / TRAIN_CSV).is_file():
        pytest.skip(f"real RSNA label tables not found at {REAL_LABELS}")
    assert (REAL_LABELS / TRAIN_CSV).read_bytes()[:4000].count(b"\r\n") > 1


def test_real_tables_account_for_every_cell(real):
    labels, stats = real
    assert labels.height == 1975 * 25 and labels["study_id"].n_unique() == 1975
    assert labels["row_id"].n_unique() == labels.height
    counts = dict(labels.group_by("severity").len().iter_rows())
    assert counts == {"Normal/Mild": 37_754, "Moderate": 7_960, "Severe": 3_089, None: 572}
    assert stats["severity_counts"] == {
        "Normal/Mild": 37_754,
        "Moderate": 7_960,
        "Severe": 3_089,
        "blank": 572,
    }
    assert stats["studies_with_blank_labels"] == 185
    assert sum(sum(c.values()) for c in stats["class_counts"].values()) == 1975 * 25
    assert labels.filter(pl.col("severity").is_null())["label"].null_count() == 572
    assert dict(labels.group_by("label").len().iter_rows())[2] == 3_089


def test_real_quirks_are_counted(real):
    labels, stats = real
    assert stats["labels_without_coordinate"] == 146
    assert stats["coordinates_of_blank_labels"] == 35
    assert 3008676218 in stats["studies_without_coordinates"]
    assert labels.filter(pl.col("study_id") == 3008676218)["series_id"].null_count() == 25
    assert {"study_id": 3637444890, "series_id": 3951475160, "categories": ["scs", "nfs"]} in stats[
        "series_with_several_categories"
    ]
    carried = labels.filter(pl.col("series_id") == 3951475160)
    assert set(carried["condition"]) >= {
        "Spinal Canal Stenosis",
        "Left Neural Foraminal Narrowing",
        "Right Neural Foraminal Narrowing",
    }
    assert stats["series_description_counts"] == {
        "Sagittal T1": 1980,
        "Sagittal T2/STIR": 1974,
        "Axial T2": 2340,
    }
    assert stats["n_coordinate_rows"] == 48_692
    with_coordinate = labels.filter(pl.col("series_id").is_not_null())
    assert with_coordinate.height == 48_692 - stats["duplicate_coordinate_rows"]
    not_described = stats["coordinates_series_not_in_series_file"]
    assert with_coordinate["series_description"].null_count() == not_described
