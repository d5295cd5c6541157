"""``lss-pipeline predict --study PATH --out DIR``: one study folder -> grades (CSV, JSON), points, PNGs.

``DIR`` gets ``grades.csv`` (the 25 rows: row id, condition, level, the three probabilities,
the most likely grade, whether it was graded and why not), ``grades.json`` (the same, plus what
could not be given, the skipped files, the model versions and the timings), ``points.parquet``
and ``series_{id}.png`` per series with points.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from lss_pipeline.core import atomic
from lss_pipeline.core.constants import CLASS_NAMES, SERIES_DESCRIPTIONS, SEVERITIES
from lss_pipeline.core.labels.tables import read_series_file
from lss_pipeline.core.localise.series import PixelCache
from lss_pipeline.core.paths import Paths
from lss_pipeline.core.predict.overlay import render_series_overlay
from lss_pipeline.core.predict.run import Models, StudyGrades, grade_study, load_models
from lss_pipeline.core.predict.study import StudyScan, scan_study_folder
from lss_pipeline.core.settings import Settings

GRADE_COLUMNS = (
    "row_id", "condition", "level", *CLASS_NAMES, "grade", "graded", "status", "series_id", "instance_number",
    "x", "y",
)  # fmt: skip


@dataclass
class FolderResult:
    scan: StudyScan
    grades: StudyGrades
    written: list[Path]
    messages: list[str]


def series_descriptions_for(csv_path: Path | None, study_id: int) -> dict[int, str]:
    """series_id -> description of ``study_id`` from a series CSV (empty when there is none)."""
    if csv_path is None or not Path(csv_path).is_file():
        return {}
    return {series: d for (study, series), d in read_series_file(Path(csv_path)).items() if study == study_id}


def grades_table(result: StudyGrades) -> pl.DataFrame:
    table = result.table
    probs = table.select(CLASS_NAMES).to_numpy()
    grade = [SEVERITIES[int(i)] for i in np.argmax(probs, axis=1)]
    return table.with_columns(pl.Series("grade", grade)).select(GRADE_COLUMNS)


def predict_folder(
    folder: str | os.PathLike,
    out_dir: str | os.PathLike,
    settings: Settings,
    *,
    study_id: int | None = None,
    series_csv: Path | None = None,
    grader_ref: str = "champion",
    localiser_ref: str = "latest",
    models: Models | None = None,
) -> FolderResult:
    """Grade one study folder into ``out_dir``; NotAStudyError for a folder that is not a study."""
    folder = Path(folder)
    out = atomic.check_writable(Path(out_dir))
    from lss_pipeline.core.predict.study import study_id_of

    sid = study_id_of(folder, study_id)
    scan = scan_study_folder(
        folder, study_id=sid, series_descriptions=series_descriptions_for(series_csv, sid)
    )
    models = models or load_models(settings, grader_ref=grader_ref, localiser_ref=localiser_ref)
    result = grade_study(scan.study_id, scan.metadata, scan.folder, models)

    messages = [f"series type missing: {d}" for d in scan.missing_types()]
    unknown = [f"{s} ({scan.raw_descriptions[s]!r})" for s, d in scan.descriptions.items() if d is None]
    if unknown:
        known = ", ".join(SERIES_DESCRIPTIONS)
        messages.append(f"series of no recognised type, not used: {', '.join(unknown)} (known: {known})")
    if scan.quarantine.height:
        messages.append(
            f"{scan.quarantine.height} file(s) skipped: "
            + "; ".join(
                f"{r['path']} ({r['error_type']})" for r in scan.quarantine.head(5).iter_rows(named=True)
            )
        )
    messages += models.notes + result.messages

    table = grades_table(result)
    written = [
        atomic.write_text(_csv(table), Paths.study_grades_csv(out)),
        atomic.write_parquet(result.table, Paths.study_points_parquet(out)),
    ]
    document = {
        "study_id": scan.study_id,
        "folder": str(folder),
        "grades": table.to_dicts(),
        "messages": messages,
        "series": {str(s): d for s, d in scan.descriptions.items()},
        "skipped_files": scan.quarantine.to_dicts(),
        "models": models.versions,
        "timings_s": result.timings,
    }
    written.append(
        atomic.write_text(json.dumps(document, indent=2, default=str) + "\n", Paths.study_grades_json(out))
    )
    pixels = PixelCache(scan.folder)
    for series_id in result.table.filter(pl.col("status") == "ok")["series_id"].unique().sort().to_list():
        kind = scan.descriptions.get(int(series_id))
        title = f"study {scan.study_id}, series {series_id} ({kind}): predicted points"
        written.append(
            render_series_overlay(
                result.table,
                int(series_id),
                scan.metadata,
                pixels,
                Paths.series_overlay_png(out, int(series_id)),
                title=title,
            )
        )
    return FolderResult(scan, result, written, messages)


def _csv(table: pl.DataFrame) -> str:
    return table.write_csv(float_precision=6)
