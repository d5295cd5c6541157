"""Study-resampling bootstrap: points equal the plain metrics, intervals behave, pairs share resamples."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lss_pipeline.core.constants import CATEGORIES, PROB_COLUMNS
from lss_pipeline.core.evaluate.bootstrap import (
    paired_macro_recall_difference,
    recall_intervals,
    resample_weights,
    seed_for,
)
from lss_pipeline.core.evaluate.kaggle import kaggle_frames, terms_by_study
from lss_pipeline.core.evaluate.metrics import COMPETITION_TERMS, classification_metrics, competition_score
from lss_pipeline_tests.core.evaluate.fabricate import TEST_STUDIES, prediction_table


def _noisy(table: pl.DataFrame, seed: int) -> pl.DataFrame:
    probs = np.random.default_rng(seed).dirichlet([1.0, 1.0, 1.0], table.height)
    return table.with_columns(
        prob_normal_mild=probs[:, 0], prob_moderate=probs[:, 1], prob_severe=probs[:, 2]
    )


def test_resample_weights_draw_every_study_count_once_per_resample():
    weights = resample_weights(7, 50, seed=1)
    assert weights.shape == (50, 7) and (weights.sum(axis=1) == 7).all()
    assert not (weights == 1).all()  # some study drawn twice, some not at all
    assert (resample_weights(7, 50, seed=1) == weights).all()
    with pytest.raises(ValueError):
        resample_weights(0, 10, seed=1)


def test_recall_point_equals_the_plain_metric_and_lies_inside_its_interval():
    table = _noisy(prediction_table("nfs", TEST_STUDIES, (0, 0, 0), fold=False), seed=3)
    ci = recall_intervals(table, n_boot=400, seed=seed_for("t"))
    plain = classification_metrics(table["label"].to_numpy(), table.select(PROB_COLUMNS).to_numpy())
    assert ci.macro.point == pytest.approx(plain["macro_recall"])
    assert [c.point for c in ci.per_class] == pytest.approx(plain["recall"])
    assert ci.macro.lo < ci.macro.point < ci.macro.hi
    assert ci.n_studies == len(TEST_STUDIES) and ci.class_counts == tuple(plain["class_counts"])


def test_resampling_is_by_study_not_by_row():
    # One study: every resample draws that study, so the interval collapses to the point.
    table = _noisy(prediction_table("nfs", TEST_STUDIES[:1], (0, 0, 0), fold=False), seed=4)
    ci = recall_intervals(table, n_boot=200, seed=1)
    assert ci.macro.lo == ci.macro.hi == pytest.approx(ci.macro.point)


def test_paired_difference_of_a_model_with_itself_is_zero_and_a_better_one_excludes_zero():
    good = prediction_table("sbs", TEST_STUDIES, (0, 0, 0), fold=False)
    same = paired_macro_recall_difference(good, good, n_boot=200, seed=1).difference
    assert (same.point, same.lo, same.hi) == (0.0, 0.0, 0.0) and not same.excludes_zero
    bad = prediction_table("sbs", TEST_STUDIES, (12, 12, 12), fold=False)
    diff = paired_macro_recall_difference(good, bad, n_boot=200, seed=1)
    assert diff.difference.point == pytest.approx(diff.a - diff.b) and diff.difference.excludes_zero
    assert diff.n_rows == good.height


def test_paired_difference_uses_only_rows_both_tables_predict():
    a = prediction_table("scs", TEST_STUDIES, (0, 0, 0), fold=False)
    b = prediction_table("scs", TEST_STUDIES, (3, 3, 3), fold=False).filter(
        pl.col("study_id") != TEST_STUDIES[0]
    )
    diff = paired_macro_recall_difference(a, b, n_boot=50, seed=1)
    assert diff.n_studies == len(TEST_STUDIES) - 1 and diff.n_rows == b.height


def test_kaggle_terms_by_study_add_up_to_the_competition_metric():
    tables = {
        c: _noisy(prediction_table(c, TEST_STUDIES, (0, 0, 0), fold=False), seed=i)
        for i, c in enumerate(CATEGORIES)
    }
    solution, submission, facts = kaggle_frames(tables)
    reference = competition_score(solution, submission)
    num, den = terms_by_study(solution, submission)
    assert num.shape == (len(TEST_STUDIES), len(COMPETITION_TERMS)) and facts["n_filled_rows"] == 0
    for i, term in enumerate(COMPETITION_TERMS):
        assert num[:, i].sum() / den[:, i].sum() == pytest.approx(reference[term]), term
