"""Kaggle label tables -> one long-form row per study x condition x level, and quirk counts.

Quirks of the real data are counted in the stats dict, never fatal: labels with no
coordinate, coordinates of blank labels, a series carrying several categories, a study
with labels but no coordinate rows, several coordinate rows for one study x condition x
level (the first is kept), coordinates whose series or study is unknown.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import polars as pl

from lss_pipeline.core.constants import (
    CATEGORIES,
    CATEGORY_SERIES,
    CONDITION_CATEGORY,
    CONDITIONS,
    LEVEL_SLUGS,
    LEVELS,
    SERIES_DESCRIPTIONS,
    SEVERITIES,
    SEVERITY_TO_LABEL,
)
from lss_pipeline.core.labels.tables import read_coordinates, read_series_file, read_train
from lss_pipeline.core.paths import Paths

BLANK = "blank"

LABELS_SCHEMA: dict[str, pl.DataType] = {
    "study_id": pl.Int64(),
    "category": pl.Utf8(),
    "condition": pl.Utf8(),
    "side": pl.Utf8(),
    "level": pl.Utf8(),
    "severity": pl.Utf8(),
    "label": pl.Int8(),
    "row_id": pl.Utf8(),
    "series_id": pl.Int64(),
    "series_description": pl.Utf8(),
    "instance_number": pl.Int64(),
    "x": pl.Float64(),
    "y": pl.Float64(),
}


def build_labels(paths: Paths) -> tuple[pl.DataFrame, dict]:
    """Validate train.csv, train_label_coordinates.csv, train_series_descriptions.csv; join them.

    Returns (labels with LABELS_SCHEMA, 25 rows per study in train.csv order; stats for the UI).
    Raises LabelValidationError (a ValueError) before any join when a file is malformed.
    """
    studies = read_train(paths.train_csv)
    coordinates = read_coordinates(paths.coordinates_csv)
    series_descriptions = read_series_file(paths.series_csv)

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
                point = coordinate_of.get(key)
                point_series = point[0] if point else None
                description = series_descriptions.get((study_id, point[0])) if point else None
                if point_series is not None:
                    used_coordinate_keys.add(key)
                severity_counts[severity or BLANK] += 1
                class_counts[category][severity or BLANK] += 1
                if severity is None:
                    studies_with_blank.add(study_id)
                    coordinates_of_blank_labels += point_series is not None
                else:
                    labels_without_coordinate += point_series is None
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
                columns["series_id"].append(point_series)
                columns["series_description"].append(description)
                columns["instance_number"].append(point[1] if point else None)
                columns["x"].append(point[2] if point else None)
                columns["y"].append(point[3] if point else None)
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
