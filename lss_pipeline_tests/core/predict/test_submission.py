"""The submission follows sample_submission.csv: same row ids in its order, its columns, rows summing to 1."""

import csv

import numpy as np
import polars as pl
import pytest

from lss_pipeline.core.constants import CLASS_NAMES, REAL_CLASS_SHARES, SUBMISSION_CSV_HEADER
from lss_pipeline.core.predict.submission import (
    build_submission,
    category_of_row,
    check_submission,
    read_sample_row_ids,
    row_ids_of,
    submission_row_ids,
    write_submission,
)

STUDIES = (1001, 2002)


def write_sample(path, study_ids=STUDIES):
    """A sample submission as Kaggle ships it: sorted row ids, 1/3 each, CRLF line ends."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(SUBMISSION_CSV_HEADER)
        for rid in sorted(row_ids_of(study_ids)):
            writer.writerow([rid, 1 / 3, 1 / 3, 1 / 3])
    return path


def graded(row_ids, seed=0):
    probs = np.random.default_rng(seed).dirichlet([1, 1, 1], size=len(row_ids)) * 7.0  # not normalised
    return pl.DataFrame({"row_id": row_ids, **{c: probs[:, i] for i, c in enumerate(CLASS_NAMES)}})


def test_same_row_ids_order_and_columns_as_the_sample(tmp_path):
    sample = read_sample_row_ids(write_sample(tmp_path / "sample_submission.csv"))
    row_ids = submission_row_ids(sample, STUDIES)
    assert row_ids == sample
    grades = graded(list(reversed(row_ids))[:30])  # some rows graded, in another order
    submission = build_submission(grades, row_ids)
    assert check_submission(submission, sample) == []
    out = write_submission(submission, tmp_path / "submission.csv")
    with out.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == SUBMISSION_CSV_HEADER
    assert [r[0] for r in rows[1:]] == sample
    sums = np.array([[float(v) for v in r[1:]] for r in rows[1:]]).sum(axis=1)
    np.testing.assert_allclose(sums, 1.0, atol=1e-9)


def test_rows_not_graded_get_the_category_prior(tmp_path):
    row_ids = row_ids_of([1001])
    submission = build_submission(graded([]), row_ids)
    for row in submission.iter_rows(named=True):
        shares = np.asarray(REAL_CLASS_SHARES[category_of_row(row["row_id"])])
        np.testing.assert_allclose([row[c] for c in CLASS_NAMES], shares / shares.sum())


def test_a_study_beyond_the_sample_follows_it(tmp_path):
    sample = read_sample_row_ids(write_sample(tmp_path / "sample_submission.csv", (1001,)))
    row_ids = submission_row_ids(sample, [1001, 3003])
    assert row_ids[: len(sample)] == sample and len(row_ids) == 50
    assert all(r.startswith("3003_") for r in row_ids[len(sample) :])


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (lambda s: s.reverse(), "order"),
        (lambda s: s.head(10), "missing"),
        (lambda s: s.with_columns(pl.col("severe") * 0.5), "sum to 1"),
        (lambda s: s.with_columns(pl.lit(None, dtype=pl.Float64).alias("moderate")), "not finite"),
        (lambda s: s.select("row_id", "moderate", "normal_mild", "severe"), "columns"),
    ],
)
def test_check_names_what_breaks_the_rules(tmp_path, breakage, expected):
    sample = read_sample_row_ids(write_sample(tmp_path / "sample_submission.csv"))
    good = build_submission(graded(sample), sample)
    problems = check_submission(breakage(good), sample)
    assert problems and expected in " ".join(problems)


def test_a_broken_submission_is_not_written(tmp_path):
    sample = read_sample_row_ids(write_sample(tmp_path / "sample_submission.csv"))
    good = build_submission(graded(sample), sample)
    with pytest.raises(ValueError, match="not written.*sum to 1"):
        write_submission(good.with_columns(pl.col("severe") * 0.5), tmp_path / "bad.csv")
    assert not (tmp_path / "bad.csv").exists()


def test_row_category():
    assert category_of_row("12_spinal_canal_stenosis_l1_l2") == "scs"
    assert category_of_row("12_left_neural_foraminal_narrowing_l5_s1") == "nfs"
    assert category_of_row("12_right_subarticular_stenosis_l4_l5") == "sbs"
    with pytest.raises(ValueError, match="condition"):
        category_of_row("12_knee_l1_l2")
