"""The ``predictions`` outputs over the test images: one file per graded study, then the table and
the submission rebuilt from the studies present.

Each study is graded alone (``grade_test_study``: its folder is read directly, so a study added
to ``test_images/`` needs no other asset rebuilt) into ``paths.study_predictions(study)``.
``publish_predictions`` then rebuilds ``predictions.parquet`` (every row of every study in
``test_images/`` that has been graded: grades and points) and ``submission.csv`` (the sample's
rows in its order; graded studies it lacks after) under one writer lock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from lss_pipeline.core import atomic
from lss_pipeline.core.constants import CLASS_NAMES
from lss_pipeline.core.paths import Paths
from lss_pipeline.core.predict.folder import series_descriptions_for
from lss_pipeline.core.predict.run import PREDICTION_SCHEMA, Models, StudyGrades, grade_study
from lss_pipeline.core.predict.study import scan_study_folder
from lss_pipeline.core.predict.submission import (
    build_submission,
    check_submission,
    read_sample_row_ids,
    sample_line_ending,
    submission_row_ids,
    write_submission,
)
from lss_pipeline.core.settings import Settings

LOCK_NAME = "predictions"
LOCK_TIMEOUT_S = 600.0
_DIGITS = re.compile(r"[0-9]+")


def test_study_ids(paths: Paths) -> list[int]:
    """Study folders (digit names) under ``test_images/``, sorted."""
    folder = paths.test_images
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and _DIGITS.fullmatch(p.name))


def grade_test_study(settings: Settings, study_id: int, models: Models) -> StudyGrades:
    """Grade ``test_images/{study_id}`` and write ``paths.study_predictions(study_id)``."""
    paths = settings.paths
    folder = paths.test_images / str(study_id)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist: the study left test_images/ (or was never there)")
    scan = scan_study_folder(
        folder,
        study_id=study_id,
        series_descriptions=series_descriptions_for(paths.test_series_csv, study_id),
    )
    result = grade_study(study_id, scan.metadata, folder, models)
    if scan.quarantine.height:
        result.messages.insert(0, f"{scan.quarantine.height} file(s) of the study could not be read, skipped")
    atomic.write_parquet(result.table, paths.study_predictions(study_id))
    return result


@dataclass
class Published:
    table: pl.DataFrame
    submission: pl.DataFrame
    problems: list[str]  # against the sample submission's rules (empty: fine)
    studies: int
    missing_studies: list[int]  # in test_images/ but not graded yet
    paths: dict[str, Path]


def publish_predictions(paths: Paths) -> Published:
    """Rebuild ``predictions.parquet`` and ``submission.csv`` from the graded studies present."""
    present = test_study_ids(paths)
    with atomic.exclusive(paths.writer_lock(LOCK_NAME), "predictions", LOCK_TIMEOUT_S):
        frames, missing = [], []
        for study_id in present:
            path = paths.study_predictions(study_id)
            if path.is_file():
                frames.append(pl.read_parquet(path))
            else:
                missing.append(study_id)
        table = (
            pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame(schema=PREDICTION_SCHEMA)
        )
        sample = (
            read_sample_row_ids(paths.sample_submission_csv) if paths.sample_submission_csv.is_file() else []
        )
        row_ids = submission_row_ids(sample, table["study_id"].unique().to_list())
        submission = build_submission(table.select("row_id", *CLASS_NAMES), row_ids)
        problems = check_submission(submission, row_ids)
        atomic.write_parquet(table, paths.predictions_table)
        ending = sample_line_ending(paths.sample_submission_csv) if sample else "\n"
        write_submission(submission, paths.submission_csv, ending)
    return Published(
        table, submission, problems, len(frames), missing,
        {"predictions": paths.predictions_table, "submission": paths.submission_csv},
    )  # fmt: skip
