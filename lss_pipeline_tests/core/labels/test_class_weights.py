"""Class weights: hand-computed cases, cv folds only, a derived beta that does not saturate on real counts."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from lss_pipeline.core.constants import CATEGORIES, TRAIN_CSV
from lss_pipeline.core.labels.class_weights import (
    class_weights_markdown,
    compute_class_weights,
    derived_beta,
    effective_number_weights,
    inverse_frequency_weights,
    load_class_weights,
    write_class_weights,
)
from lss_pipeline.core.labels.splits import make_splits
from lss_pipeline.core.labels.tidy import build_labels
from lss_pipeline.core.paths import Paths
from lss_pipeline_tests.real_labels import REAL_LABELS


@pytest.fixture()
def index() -> pl.DataFrame:
    # fold 0: 0,0,1   fold 1: 0,2   fold 2: 0,0,0,1   test split (no fold): 2 (left out of every count)
    labels = [0, 0, 1, 0, 2, 0, 0, 0, 1, 2]
    folds = [0, 0, 0, 1, 1, 2, 2, 2, 2, None]
    return pl.DataFrame(
        {"label": labels, "fold": folds, "category": ["scs"] * 10},
        schema={"label": pl.Int8, "fold": pl.Int8, "category": pl.Utf8},
    )


def test_counts_are_over_training_folds_only(index):
    w = compute_class_weights(index, n_folds=3, beta=0.5)
    assert w["category"] == "scs" and w["class_names"] == ["normal_mild", "moderate", "severe"]
    assert {f: e["train_counts"] for f, e in w["by_val_fold"].items()} == {
        "0": [4, 1, 1],
        "1": [5, 2, 0],
        "2": [3, 1, 1],
    }
    assert w["all_folds"]["train_counts"] == [6, 2, 1]  # the test-split crop never counts


def test_inverse_frequency_by_hand(index):
    w = compute_class_weights(index, n_folds=3, beta=0.5)["by_val_fold"]
    # counts 4,1,1 -> 1/4,1,1 (sum 9/4) scaled to sum 3 -> 1/3, 4/3, 4/3
    assert w["0"]["weights"]["inverse_frequency"] == pytest.approx([1 / 3, 4 / 3, 4 / 3])
    # counts 5,2,0 -> zero counted as one -> 1/5,1/2,1 (sum 17/10) -> 6/17, 15/17, 30/17
    assert w["1"]["weights"]["inverse_frequency"] == pytest.approx([6 / 17, 15 / 17, 30 / 17])


def test_effective_number_by_hand(index):
    w = compute_class_weights(index, n_folds=3, beta=0.5)["by_val_fold"]
    # beta .5: n=4 -> .5/(1-.0625) = 8/15; n=1 -> 1; sum 38/15 -> scaled: 12/19, 45/38, 45/38
    assert w["0"]["weights"]["effective_number"] == pytest.approx([12 / 19, 45 / 38, 45 / 38])
    # n=3 -> .5/(1-.125) = 4/7; 1; 1 -> sum 18/7 -> 2/3, 7/6, 7/6
    assert w["2"]["weights"]["effective_number"] == pytest.approx([2 / 3, 7 / 6, 7 / 6])


def test_competition_weights_and_normalisation(index):
    w = compute_class_weights(index, n_folds=3)
    assert w["beta"].startswith("derived")
    # fold 0 trains on 6 crops: beta = 5/6
    assert w["by_val_fold"]["0"]["beta"] == pytest.approx(5 / 6)
    for entry in w["by_val_fold"].values():
        assert entry["weights"]["competition"] == [1.0, 2.0, 4.0]
        for scheme in ("inverse_frequency", "effective_number"):
            assert sum(entry["weights"][scheme]) == pytest.approx(3.0)
            assert all(np.isfinite(entry["weights"][scheme]))


def test_effective_number_limits():
    counts = [900, 90, 10]
    assert effective_number_weights(counts, 0.0) == pytest.approx([1.0, 1.0, 1.0])
    np.testing.assert_allclose(
        effective_number_weights(counts, 1 - 1e-9), inverse_frequency_weights(counts), rtol=1e-4
    )
    few = effective_number_weights(counts, 0.9)
    assert few[0] < few[1] < few[2]
    with pytest.raises(ValueError, match="beta"):
        effective_number_weights(counts, 1.0)


def test_all_zero_counts_give_finite_equal_weights():
    assert inverse_frequency_weights([0, 0, 0]) == pytest.approx([1.0, 1.0, 1.0])
    assert effective_number_weights([0, 0, 0], 0.999) == pytest.approx([1.0, 1.0, 1.0])


def test_category_from_condition_and_errors():
    idx = pl.DataFrame(
        {"label": [0, 1], "fold": [0, 1], "condition": ["Left Neural Foraminal Narrowing"] * 2}
    )
    assert compute_class_weights(idx, n_folds=2)["category"] == "nfs"
    with pytest.raises(ValueError, match="fold"):
        compute_class_weights(idx.drop("fold"), n_folds=2)
    with pytest.raises(ValueError, match="outside"):
        compute_class_weights(idx.with_columns(pl.lit(3).alias("label")), n_folds=2)


def test_json_round_trip_and_markdown(index, tmp_path):
    w = compute_class_weights(index, n_folds=3, beta=0.5)
    path = write_class_weights(w, tmp_path / "scs" / "class_weights.json")
    assert json.loads(path.read_text())["by_val_fold"]["1"]["train_counts"] == [5, 2, 0]
    assert load_class_weights(path, 0, "inverse_frequency") == pytest.approx([1 / 3, 4 / 3, 4 / 3])
    assert load_class_weights(path, None, "competition") == [1.0, 2.0, 4.0]
    md = class_weights_markdown(w)
    lines = md.strip().splitlines()
    assert lines[2].startswith("| val fold |") and len(lines) == 4 + 3 + 1
    assert "| 1 | 5 / 2 / 0 | 0.5 | 0.353 / 0.882 / 1.76 |" in md


def test_rows_of_the_test_split_never_count(index):
    with_split = index.with_columns(
        pl.when(pl.col("fold").is_null()).then(pl.lit("test")).otherwise(pl.lit("cv")).alias("split")
    )
    # A test row that somehow carries a fold is still left out.
    leaked = pl.concat([with_split, pl.DataFrame(
        {"label": [2], "fold": [0], "category": ["scs"], "split": ["test"]}, schema=with_split.schema
    )])  # fmt: skip
    assert compute_class_weights(leaked, n_folds=3) == compute_class_weights(index, n_folds=3)


def test_derived_beta_is_cui_et_al():
    assert derived_beta([900, 90, 10]) == pytest.approx(999 / 1000)
    assert derived_beta([0, 0, 0]) == 0.0


def _real_index() -> pl.DataFrame:
    """The real labelled rows as a crop index, with the default splits' folds (test rows: null fold)."""
    if not (REAL_LABELS / TRAIN_CSV).is_file():
        pytest.skip(f"real RSNA label tables not found at {REAL_LABELS}")
    labels, _ = build_labels(Paths(data_dir=REAL_LABELS.parent / "data", raw_dir=REAL_LABELS))
    splits = make_splits(labels)
    return labels.filter(pl.col("label").is_not_null()).join(splits, on="study_id")


@pytest.mark.parametrize("category", CATEGORIES)
def test_real_counts_give_moderate_a_meaningfully_larger_weight(category):
    index = _real_index().filter(pl.col("category") == category)
    weights = compute_class_weights(index, n_folds=5, category=category)
    for fold, entry in [*weights["by_val_fold"].items(), ("all", weights["all_folds"])]:
        normal, moderate, severe = entry["weights"]["effective_number"]
        assert moderate / normal >= 1.5, (category, fold, entry)
        assert severe > moderate, (category, fold, entry)
    # The old fixed beta saturates: Moderate weighs about what Normal/Mild does for NFS and SBS.
    if category in ("nfs", "sbs"):
        fixed = compute_class_weights(index, n_folds=5, beta=0.999, category=category)
        normal, moderate, _ = fixed["by_val_fold"]["0"]["weights"]["effective_number"]
        assert moderate / normal < 1.2
