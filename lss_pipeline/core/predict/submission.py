"""The Kaggle submission: ``row_id,normal_mild,moderate,severe``, one row per study x condition x level.

Rows come in ``sample_submission.csv``'s order with its row ids (studies graded beyond it follow,
sorted); a row the pipeline could not grade (series missing, level not covered, no crop) gets
the category's prior class shares, so every row is present; each row sums to 1.
:func:`check_submission` lists what breaks those rules.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl

from lss_pipeline.core import atomic
from lss_pipeline.core.constants import (
    CLASS_NAMES,
    CONDITION_CATEGORY,
    CONDITIONS,
    LEVEL_SLUGS,
    REAL_CLASS_SHARES,
    SUBMISSION_CSV_HEADER,
)

SUBMISSION_SCHEMA = {"row_id": pl.Utf8, **{c: pl.Float64 for c in CLASS_NAMES}}
SUM_TOLERANCE = 1e-6
# row_id stem -> category
_STEM_CATEGORY = {stem: CONDITION_CATEGORY[cond] for cond, _, _, stem in CONDITIONS}


def row_ids_of(study_ids: Iterable[int]) -> list[str]:
    """The 25 row ids of each study, in train.csv column order per study."""
    return [f"{s}_{stem}_{slug}" for s in study_ids for (_, _, _, stem) in CONDITIONS for slug in LEVEL_SLUGS]


def category_of_row(row_id: str) -> str:
    """``scs``/``nfs``/``sbs`` of a submission row id (``{study}_{condition stem}_{level slug}``)."""
    body = row_id.split("_", 1)[1]
    stem = body.rsplit("_", 2)[0]
    if stem not in _STEM_CATEGORY:
        raise ValueError(f"row_id {row_id!r} does not name a condition of {sorted(_STEM_CATEGORY)}")
    return _STEM_CATEGORY[stem]


def prior(category: str) -> tuple[float, float, float]:
    shares = np.asarray(REAL_CLASS_SHARES[category], dtype=np.float64)
    return tuple((shares / shares.sum()).tolist())  # type: ignore[return-value]


def read_sample_row_ids(path: Path) -> list[str]:
    """Row ids of ``sample_submission.csv`` in file order; ValueError naming the file when malformed."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or tuple(header) != SUBMISSION_CSV_HEADER:
            raise ValueError(f"{path}: header {header} is not {list(SUBMISSION_CSV_HEADER)}")
        return [row[0] for row in reader if row]


def build_submission(grades: pl.DataFrame, row_ids: list[str]) -> pl.DataFrame:
    """``grades`` (``row_id`` + ``normal_mild, moderate, severe``) on ``row_ids``, priors where missing."""
    have = {r["row_id"]: [r[c] for c in CLASS_NAMES] for r in grades.iter_rows(named=True)}
    rows = []
    for rid in row_ids:
        probs = have.get(rid)
        if probs is None or any(p is None or not math.isfinite(p) for p in probs):
            probs = list(prior(category_of_row(rid)))
        p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, None)
        p = p / p.sum() if p.sum() > 0 else np.asarray(prior(category_of_row(rid)))
        rows.append((rid, *p.tolist()))
    return pl.DataFrame(rows, schema=SUBMISSION_SCHEMA, orient="row")


def submission_row_ids(sample_row_ids: list[str], graded_study_ids: Iterable[int]) -> list[str]:
    """The sample's row ids, then those of graded studies the sample lacks (sorted)."""
    seen = set(sample_row_ids)
    extra = sorted(r for r in row_ids_of(sorted(set(graded_study_ids))) if r not in seen)
    return [*sample_row_ids, *extra]


def sample_line_ending(path: Path) -> str:
    """The line ending of a CSV (Kaggle's files differ): ``\r\n`` or ``\n``."""
    with path.open("rb") as fh:
        return "\r\n" if fh.readline().endswith(b"\r\n") else "\n"


def submission_csv_text(submission: pl.DataFrame, line_ending: str = "\n") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=line_ending)
    writer.writerow(SUBMISSION_CSV_HEADER)
    for row in submission.iter_rows():
        writer.writerow([row[0], *(repr(float(v)) for v in row[1:])])
    return buffer.getvalue()


def write_submission(submission: pl.DataFrame, path: Path, line_ending: str = "\n") -> Path:
    problems = check_submission(submission, submission["row_id"].to_list())
    if problems:
        raise ValueError(f"submission not written to {path}: {'; '.join(problems)}")
    return atomic.write_bytes(submission_csv_text(submission, line_ending).encode("utf-8"), path)


def check_submission(submission: pl.DataFrame, expected_row_ids: list[str]) -> list[str]:
    """Problems against the sample's rules (empty when it is fine)."""
    problems = []
    if tuple(submission.columns) != SUBMISSION_CSV_HEADER:
        problems.append(f"columns {submission.columns}, expected {list(SUBMISSION_CSV_HEADER)}")
        return problems
    ids = submission["row_id"].to_list()
    if ids != expected_row_ids:
        missing = sorted(set(expected_row_ids) - set(ids))
        extra = sorted(set(ids) - set(expected_row_ids))
        problems.append(
            f"row ids differ from the expected ones (missing {len(missing)}, e.g. {missing[:2]}; "
            f"extra {len(extra)}, e.g. {extra[:2]}; same set but other order: {not missing and not extra})"
        )
    probs = submission.select(CLASS_NAMES).to_numpy()
    if not np.isfinite(probs).all():
        problems.append("a probability is missing or not finite")
    elif (probs < 0).any() or (probs > 1).any():
        problems.append("a probability lies outside [0, 1]")
    else:
        sums = probs.sum(axis=1)
        bad = np.flatnonzero(np.abs(sums - 1.0) > SUM_TOLERANCE)
        if bad.size:
            problems.append(f"{bad.size} rows do not sum to 1 (e.g. {ids[bad[0]]}: {sums[bad[0]]:.6f})")
    return problems
