"""Grade studies from their DICOMs alone: localise -> crop -> grade, with per-study timings.

:func:`grade_study` is the one path every caller takes (the ``predictions`` asset, ``lss-pipeline
predict``, the localised scores on the test split). Each study gives the 25 rows of
``PREDICTION_SCHEMA``: the point, the probabilities (the category's prior class shares where the
row could not be graded, so every row has numbers) and why a row was not graded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lss_pipeline.core.constants import (
    CATEGORIES,
    CATEGORY_NAMES,
    CATEGORY_SERIES,
    CLASS_NAMES,
    LEVELS,
    PROB_COLUMNS,
)
from lss_pipeline.core.localise.infer import OK, POINT_STATUSES, POINTS_SCHEMA, localise_study
from lss_pipeline.core.localise.model import PointLocaliser
from lss_pipeline.core.localise.series import PixelCache, PixelReader
from lss_pipeline.core.predict.grade import Grader, grade_points
from lss_pipeline.core.predict.submission import prior
from lss_pipeline.core.settings import Settings

log = logging.getLogger(__name__)

NO_GRADER = "no_grader"
NO_CROP = "no_crop"
PREDICTION_SCHEMA: dict[str, Any] = {
    **POINTS_SCHEMA,
    **{c: pl.Float64 for c in CLASS_NAMES},
    "graded": pl.Boolean,
    "grader_version": pl.Utf8,
}
ROW_STATUSES = {
    **POINT_STATUSES,
    NO_GRADER: "no registered grader for the category",
    NO_CROP: "no crop could be cut at the point",
}
TIMING_KEYS = ("decode_s", "localise_s", "crop_s", "grade_s", "total_s")


@dataclass
class Models:
    localisers: dict[str, PointLocaliser]
    graders: dict[str, Grader]
    notes: list[str] = field(default_factory=list)  # what could not be loaded, and why
    versions: dict[str, str] = field(default_factory=dict)  # "lss-scs" -> "3", ...


def load_models(
    settings: Settings,
    *,
    grader_ref: str = "champion",
    localiser_ref: str = "latest",
    categories: Sequence[str] = CATEGORIES,
    configure: bool = True,
) -> Models:
    """Registered localisers and graders; a category whose model is missing is noted, not fatal.

    A localiser not in the registry falls back to the one trained in this data folder.
    ``configure``: point MLflow at ``settings``' store first (False: the caller did).
    """
    from lss_pipeline.core.localise.run import (
        load_localiser,
        load_registered_localiser,
        registered_localiser_name,
    )
    from lss_pipeline.core.predict.grade import load_grader, registered_grader_name
    from lss_pipeline.core.train import tracking

    if configure:
        tracking.configure_mlflow(settings.mlflow_tracking_uri, settings.mlflow_artifacts_dir)
    models = Models({}, {})
    profile = settings.profile
    for category in categories:
        try:
            models.localisers[category] = load_registered_localiser(category, localiser_ref)
            models.versions[registered_localiser_name(category)] = localiser_ref
        except Exception as exc:  # noqa: BLE001 - registry missing or empty: try the local file
            if settings.paths.localiser_model(category).is_file():
                models.localisers[category] = load_localiser(settings.paths, category)
                models.versions[registered_localiser_name(category)] = "local file"
            else:
                models.notes.append(f"no {category} localiser ({type(exc).__name__}: {exc})")
        try:
            grader = load_grader(
                category, grader_ref, crop_mm=profile.crop_mm, default_px=profile.crop_px,
                default_slices=profile.slices,
            )  # fmt: skip
            models.graders[category] = grader
            models.versions[registered_grader_name(category)] = grader.version
        except Exception as exc:  # noqa: BLE001
            models.notes.append(f"no {category} grader: {exc}")
    return models


@dataclass
class StudyGrades:
    study_id: int
    table: pl.DataFrame  # PREDICTION_SCHEMA, 25 rows
    timings: dict[str, float]
    messages: list[str]
    crops: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def submission_rows(self) -> pl.DataFrame:
        return self.table.select("row_id", *CLASS_NAMES)


def _messages(table: pl.DataFrame) -> list[str]:
    """One line per category that lost rows: which grades cannot be given and why."""
    out = []
    for category in CATEGORIES:
        lost = table.filter((pl.col("category") == category) & ~pl.col("graded"))
        if lost.height == 0:
            continue
        parts = []
        for (status,), rows in sorted(lost.partition_by("status", as_dict=True).items()):
            levels = [lv for lv in LEVELS if lv in set(rows["level"])]
            details = sorted(set(rows["detail"].drop_nulls()))
            reason = ROW_STATUSES.get(status, status)
            parts.append(f"{reason} at {', '.join(levels)}" + "".join(f"; {d}" for d in details))
        why = "; ".join(parts)
        out.append(
            f"{category} ({CATEGORY_NAMES[category]}, graded on {CATEGORY_SERIES[category]}): "
            f"{lost.height} of {table.filter(pl.col('category') == category).height} grades cannot be given "
            f"({why}); the prior class shares stand in for them"
        )
    return out


def grade_study(
    study_id: int,
    metadata: pl.DataFrame,
    raw_dir: Path,
    models: Models,
    *,
    reader: PixelReader | None = None,
) -> StudyGrades:
    """Localise, crop and grade one study whose rows are in ``metadata`` (paths relative to ``raw_dir``)."""
    started = time.perf_counter()
    pixels = PixelCache(Path(raw_dir), reader)
    points = localise_study(study_id, metadata, pixels, models.localisers)
    decode_before_crop = pixels.decode_s
    graded = grade_points(points.points, metadata, Path(raw_dir), models.graders, reader=pixels.read)
    crop_decode = pixels.decode_s - decode_before_crop
    grades = graded.grades.rename(dict(zip(PROB_COLUMNS, CLASS_NAMES)))
    table = points.points.join(grades, on="row_id", how="left")
    skipped = dict(
        zip(graded.skipped["row_id"].to_list(), zip(graded.skipped["reason"], graded.skipped["detail"]))
    )
    fixed = []
    for row in table.iter_rows(named=True):
        row["graded"] = row["normal_mild"] is not None
        if not row["graded"]:
            if row["status"] == OK:
                if row["category"] not in models.graders:
                    row["status"], row["detail"] = NO_GRADER, f"no registered lss-{row['category']} grader"
                else:
                    reason, detail = skipped.get(row["row_id"], ("", ""))
                    row["status"], row["detail"] = NO_CROP, f"{reason}: {detail}".strip(": ")
            row.update(dict(zip(CLASS_NAMES, prior(row["category"]))))
        fixed.append(row)
    table = pl.DataFrame(fixed, schema=PREDICTION_SCHEMA, orient="row")
    timings = {
        "decode_s": pixels.decode_s,
        "localise_s": points.timings["localise_s"],
        "crop_s": graded.crop_s - crop_decode,
        "grade_s": graded.grade_s,
    }
    timings["total_s"] = time.perf_counter() - started
    return StudyGrades(study_id, table, timings, _messages(table), graded.crops)


def grade_studies(
    study_ids: Sequence[int],
    metadata: pl.DataFrame,
    raw_dir: Path,
    models: Models,
    *,
    reader: PixelReader | None = None,
) -> tuple[pl.DataFrame, dict[str, float]]:
    """Every study's rows (PREDICTION_SCHEMA) and the summed timings."""
    frames, totals = [], dict.fromkeys(TIMING_KEYS, 0.0)
    for n, study_id in enumerate(study_ids, start=1):
        result = grade_study(int(study_id), metadata, raw_dir, models, reader=reader)
        frames.append(result.table)
        for key in TIMING_KEYS:
            totals[key] += result.timings[key]
        if n % 10 == 0 or n == len(study_ids):
            log.info("graded %d/%d studies", n, len(study_ids))
    table = pl.concat(frames) if frames else pl.DataFrame(schema=PREDICTION_SCHEMA)
    return table, totals


def localised_test_predictions(settings: Settings, models: Models) -> pl.DataFrame:
    """Probabilities (``prob_*``) of the test split of ``data_splits`` from *localised* points, with the
    labels: what the report sets beside the oracle (labelled-point) scores. Written to
    ``paths.localised_test_predictions``."""
    from lss_pipeline.core import atomic
    from lss_pipeline.core.dicom.store import read_metadata
    from lss_pipeline.core.labels.splits import read_splits
    from lss_pipeline.core.labels.store import read_labels

    paths = settings.paths
    metadata, _ = read_metadata(paths)
    test_ids = read_splits(paths).filter(pl.col("split") == "test")["study_id"].to_list()
    table, _ = grade_studies(test_ids, metadata, paths.raw_dir, models)
    labels = read_labels(paths).select("row_id", "label")
    out = table.rename(dict(zip(CLASS_NAMES, PROB_COLUMNS))).join(labels, on="row_id", how="left")
    atomic.write_parquet(out, paths.localised_test_predictions)
    return out
