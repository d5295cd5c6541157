"""Hand-computed checks of the classification metrics and the Kaggle competition metric."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from lss_pipeline.core.constants import CONDITIONS, LEVEL_SLUGS
from lss_pipeline.core.evaluate.metrics import (
    classification_metrics,
    competition_score,
    make_row_id,
    parse_row_id,
)

# y_true and probabilities; argmax predictions are [0, 0, 1, 1, 2, 2].
Y = [0, 0, 0, 1, 1, 2]
P = [
    [0.7, 0.2, 0.1],
    [0.6, 0.3, 0.1],
    [0.3, 0.5, 0.2],
    [0.2, 0.6, 0.2],
    [0.1, 0.4, 0.5],
    [0.1, 0.2, 0.7],
]


def test_classification_metrics_hand_computed():
    m = classification_metrics(Y, P)
    # Confusion (rows true): class 0 -> [2, 1, 0], class 1 -> [0, 1, 1], class 2 -> [0, 0, 1].
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["recall"] == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert m["macro_recall"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["balanced_accuracy"] == pytest.approx(m["macro_recall"])
    assert m["severe_recall"] == pytest.approx(1.0)
    # Precision: column sums of the confusion matrix are 2, 2, 2.
    assert m["precision"] == pytest.approx([1.0, 1 / 2, 1 / 2])
    assert m["f1"] == pytest.approx([2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 * 1 / 1.5])
    assert m["recall_moderate"] == pytest.approx(0.5)
    assert m["precision_normal_mild"] == pytest.approx(1.0)
    # Weights 1, 1, 1, 2, 2, 4 (sum 11) times -log p(true class).
    expected_wll = (
        -(
            math.log(0.7)
            + math.log(0.6)
            + math.log(0.3)
            + 2 * math.log(0.6)
            + 2 * math.log(0.4)
            + 4 * math.log(0.7)
        )
        / 11
    )
    assert m["weighted_log_loss"] == pytest.approx(expected_wll)
    assert m["n"] == 6 and m["class_counts"] == [3, 2, 1]


def test_classification_metrics_normalises_rows():
    scaled = (np.array(P) * np.array([[3.0], [0.5], [1.0], [2.0], [7.0], [1.0]])).tolist()
    assert classification_metrics(Y, scaled)["weighted_log_loss"] == pytest.approx(
        classification_metrics(Y, P)["weighted_log_loss"]
    )


def test_classification_metrics_absent_class():
    y = [0, 0, 1, 1]
    p = [[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]]
    m = classification_metrics(y, p)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 1, 1], [0, 0, 0]]
    assert math.isnan(m["severe_recall"])
    # Mean over the two classes present, as balanced accuracy.
    assert m["macro_recall"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert m["precision_severe"] == 0.0
    expected_wll = -(math.log(0.9) + math.log(0.2) + 2 * math.log(0.7) + 2 * math.log(0.1)) / 6
    assert m["weighted_log_loss"] == pytest.approx(expected_wll)


@pytest.mark.parametrize(
    "y, p, match",
    [
        ([0, 3], [[1, 0, 0], [0, 1, 0]], "labels must be 0, 1 or 2"),
        ([0], [[1, 0, 0], [0, 1, 0]], "expected 2 labels"),
        ([0, 1], [[1, 0, 0], [0, 0, 0]], "all-zero"),
        ([0, 1], [[1, 0], [0, 1]], "shape"),
    ],
)
def test_classification_metrics_rejects_bad_input(y, p, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(y, p)


def test_row_id_round_trip():
    rid = make_row_id(4003253, "left_neural_foraminal_narrowing", "l5_s1")
    assert rid == "4003253_left_neural_foraminal_narrowing_l5_s1"
    assert parse_row_id(rid) == (4003253, "left_neural_foraminal_narrowing", "l5_s1")
    with pytest.raises(ValueError, match="unknown condition"):
        parse_row_id("1_lateral_stenosis_l1_l2")
    with pytest.raises(ValueError, match="is not"):
        parse_row_id("x_spinal_canal_stenosis_l1_l2")


DEFAULT_PRED = {10: [0.8, 0.1, 0.1], 20: [0.9, 0.05, 0.05]}
BLANK = "blank"


def _case(overrides: dict[tuple[int, str, str], tuple]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Two studies × 25 rows, label 0 and the study's default prediction unless overridden."""
    sol, sub = [], []
    for study in (10, 20):
        for _, _, _, stem in CONDITIONS:
            for slug in LEVEL_SLUGS:
                label, pred = overrides.get((study, stem, slug), (0, DEFAULT_PRED[study]))
                rid = make_row_id(study, stem, slug)
                sol.append((rid, None if label == BLANK else label))
                sub.append((rid, *map(float, pred)))
    solution = pl.DataFrame(sol, schema={"row_id": pl.Utf8, "label": pl.Int64}, orient="row")
    submission = pl.DataFrame(
        sub,
        schema={"row_id": pl.Utf8, "normal_mild": pl.Float64, "moderate": pl.Float64, "severe": pl.Float64},
        orient="row",
    )
    return solution, submission


HAND_CASE = {
    (10, "spinal_canal_stenosis", "l1_l2"): (2, [0.2, 0.3, 0.5]),
    (20, "spinal_canal_stenosis", "l4_l5"): (1, [0.4, 0.4, 0.2]),
    # A blank row with a confident severe prediction must not reach any_severe_spinal.
    (20, "spinal_canal_stenosis", "l5_s1"): (BLANK, [0.0, 0.0, 1.0]),
    (10, "left_neural_foraminal_narrowing", "l4_l5"): (1, [0.3, 0.6, 0.1]),
    # Unnormalised prediction: scaled to [0.9, 0.05, 0.05].
    (20, "right_neural_foraminal_narrowing", "l2_l3"): (0, [9.0, 0.5, 0.5]),
    (10, "right_subarticular_stenosis", "l5_s1"): (BLANK, [0.1, 0.1, 0.8]),
    (20, "left_subarticular_stenosis", "l1_l2"): (2, [0.5, 0.3, 0.2]),
}


def test_competition_score_hand_computed():
    solution, submission = _case(HAND_CASE)
    got = competition_score(solution, submission)

    log = math.log
    # Spinal: study 10 -> severe p=.5 (w4) + 4 normal p=.8; study 20 -> 3 normal p=.9,
    # moderate p=.4 (w2), l5_s1 blank (dropped).
    spinal = -(4 * log(0.5) + 4 * log(0.8) + 3 * log(0.9) + 2 * log(0.4)) / (4 + 4 + 3 + 2)
    # Foraminal: study 10 -> 9 normal p=.8 + moderate p=.6 (w2); study 20 -> 10 normal p=.9.
    foraminal = -(9 * log(0.8) + 2 * log(0.6) + 10 * log(0.9)) / (9 + 2 + 10)
    # Subarticular: study 10 -> 9 normal p=.8 (one blank); study 20 -> 9 normal p=.9 + severe p=.2 (w4).
    subarticular = -(9 * log(0.8) + 9 * log(0.9) + 4 * log(0.2)) / (9 + 9 + 4)
    # any_severe_spinal: study 10 y=1, p=max(.5,.1,...)=.5, w=4; study 20 y=0,
    # p=max severe over non-blank spinal rows=.2, w=max(1,2)=2.
    any_severe = -(4 * log(0.5) + 2 * log(1 - 0.2)) / (4 + 2)
    score = (spinal + foraminal + subarticular + any_severe) / 4

    assert got["spinal"] == pytest.approx(spinal)
    assert got["foraminal"] == pytest.approx(foraminal)
    assert got["subarticular"] == pytest.approx(subarticular)
    assert got["any_severe_spinal"] == pytest.approx(any_severe)
    assert got["score"] == pytest.approx(score)
    assert got["n_rows"] == 48 and got["n_studies"] == 2


def test_competition_score_ignores_unlabelled_and_extra_submission_rows():
    solution, submission = _case(HAND_CASE)
    blank_ids = solution.filter(pl.col("label").is_null())["row_id"]
    extra = pl.DataFrame(
        {
            "row_id": ["30_spinal_canal_stenosis_l1_l2"],
            "normal_mild": [1.0],
            "moderate": [0.0],
            "severe": [0.0],
        }
    )
    trimmed = pl.concat([submission.filter(~pl.col("row_id").is_in(blank_ids.to_list())), extra])
    assert competition_score(solution, trimmed)["score"] == pytest.approx(
        competition_score(solution, submission)["score"]
    )


def test_competition_score_no_severe_anywhere():
    # All labels normal: any_severe y=0 for both studies, weight 1; p = .1 and .05.
    solution, submission = _case({})
    got = competition_score(solution, submission)
    assert got["any_severe_spinal"] == pytest.approx(-(math.log(0.9) + math.log(0.95)) / 2)
    assert got["spinal"] == pytest.approx(-(5 * math.log(0.8) + 5 * math.log(0.9)) / 10)


def test_competition_score_clips_zero_probability():
    solution, submission = _case({(10, "spinal_canal_stenosis", "l1_l2"): (2, [1.0, 0.0, 0.0])})
    got = competition_score(solution, submission)
    assert math.isfinite(got["spinal"]) and got["spinal"] > 10


def test_competition_score_errors():
    solution, submission = _case(HAND_CASE)
    missing = submission.filter(pl.col("row_id") != "10_spinal_canal_stenosis_l2_l3")
    with pytest.raises(ValueError, match="10_spinal_canal_stenosis_l2_l3"):
        competition_score(solution, missing)
    with pytest.raises(ValueError, match="duplicated"):
        competition_score(solution, pl.concat([submission, submission.head(1)]))
    with pytest.raises(ValueError, match="missing column"):
        competition_score(solution.rename({"label": "y"}), submission)
    spinal_only = solution.filter(pl.col("row_id").str.contains("spinal"))
    with pytest.raises(ValueError, match="foraminal"):
        competition_score(spinal_only, submission)
