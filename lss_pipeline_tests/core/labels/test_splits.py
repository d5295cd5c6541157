"""Study-grouped stratified folds and their check."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lss_pipeline.core import constants
from lss_pipeline.core.labels.splits import check_splits, make_splits
from lss_pipeline.core.labels.tidy import build_labels
from lss_pipeline.core.paths import Paths
from lss_pipeline_tests.real_labels import REAL_LABELS


def synthetic_labels(n_studies: int, seed: int) -> pl.DataFrame:
    """Long-form labels with the real class shares, some blanks, a few unlabelled studies."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_studies):
        study = 1000 + 7 * s
        for cond, cat, side, _ in constants.CONDITIONS:
            for lvl in constants.LEVELS:
                shares = np.array(constants.REAL_CLASS_SHARES[cat])
                label = int(rng.choice(3, p=shares / shares.sum()))
                if rng.random() < 0.02 or s % 50 == 49:
                    label = None
                rows.append(
                    {
                        "study_id": study,
                        "category": cat,
                        "condition": cond,
                        "side": side,
                        "level": lvl,
                        "label": label,
                    }
                )
    return pl.DataFrame(rows, schema_overrides={"study_id": pl.Int64, "label": pl.Int8})


@pytest.fixture(scope="module")
def labels() -> pl.DataFrame:
    return synthetic_labels(120, seed=3)


def test_every_study_in_exactly_one_fold(labels):
    splits = make_splits(labels, n_folds=5, seed=0)
    assert splits.schema == {"study_id": pl.Int64, "fold": pl.Int8}
    assert splits["study_id"].n_unique() == splits.height == labels["study_id"].n_unique()
    assert sorted(splits["fold"].unique().to_list()) == [0, 1, 2, 3, 4]
    sizes = splits.group_by("fold").len()["len"].to_numpy()
    assert sizes.min() >= 0.6 * sizes.mean() and sizes.max() <= 1.4 * sizes.mean()


def test_deterministic_for_a_seed_and_independent_of_row_order(labels):
    a = make_splits(labels, n_folds=5, seed=0)
    b = make_splits(labels.sample(fraction=1.0, shuffle=True, seed=9), n_folds=5, seed=0)
    c = make_splits(labels, n_folds=5, seed=1)
    assert a.equals(b)
    assert not a.equals(c)


def test_every_class_in_every_validation_fold_where_data_allows(labels):
    splits = make_splits(labels, n_folds=5, seed=0)
    report = check_splits(splits, labels)
    assert report["passed"], report
    assert report["missing_where_data_allows"] == {}
    assert report["studies_in_several_folds"] == [] and report["studies_without_fold"] == []


def test_a_class_with_fewer_studies_than_folds_is_reported_but_not_failed():
    labels = synthetic_labels(30, seed=4)
    # Keep severe SCS in only two studies.
    severe_scs = (
        labels.filter((pl.col("category") == "scs") & (pl.col("label") == 2))["study_id"].unique().sort()
    )
    keep = set(severe_scs.to_list()[:2])
    labels = labels.with_columns(
        pl.when(
            (pl.col("category") == "scs") & (pl.col("label") == 2) & ~pl.col("study_id").is_in(list(keep))
        )
        .then(pl.lit(0, dtype=pl.Int8))
        .otherwise(pl.col("label"))
        .alias("label")
    )
    report = check_splits(make_splits(labels, n_folds=5, seed=0), labels)
    missing_severe = [f for f, names in report["missing_classes"].get("scs", {}).items() if "severe" in names]
    assert len(missing_severe) >= 3
    assert "scs" not in report["missing_where_data_allows"]


def test_check_catches_a_study_in_two_folds_and_a_class_missing(labels):
    splits = make_splits(labels, n_folds=5, seed=0)
    study = int(splits["study_id"][0])
    other_fold = (int(splits["fold"][0]) + 1) % 5
    crossed = pl.concat(
        [splits, pl.DataFrame({"study_id": [study], "fold": [other_fold]}, schema=splits.schema)]
    )
    report = check_splits(crossed, labels)
    assert not report["passed"] and report["studies_in_several_folds"] == [study]

    # Put every study with a severe SCS label into fold 0.
    severe = labels.filter((pl.col("category") == "scs") & (pl.col("label") == 2))["study_id"].unique()
    bunched = splits.with_columns(
        pl.when(pl.col("study_id").is_in(severe.to_list()))
        .then(pl.lit(0, dtype=pl.Int8))
        .otherwise(pl.col("fold"))
        .alias("fold")
    )
    report = check_splits(bunched, labels)
    assert not report["passed"]
    assert all("severe" in report["missing_where_data_allows"]["scs"][str(f)] for f in (1, 2, 3, 4))

    dropped = splits.filter(pl.col("study_id") != study)
    assert check_splits(dropped, labels)["studies_without_fold"] == [study]


def test_too_few_studies_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot fill"):
        make_splits(synthetic_labels(3, seed=0), n_folds=5)


@pytest.mark.skipif(not REAL_LABELS.is_dir(), reason=f"real RSNA label files not found at {REAL_LABELS}")
def test_real_rsna_labels_split_cleanly():
    labels, _ = build_labels(Paths(data_dir=REAL_LABELS.parent / "data", raw_dir=REAL_LABELS))
    splits = make_splits(labels, n_folds=5, seed=0)
    assert splits.height == 1975
    report = check_splits(splits, labels)
    assert report["passed"], report


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_small_sets_still_cover_every_class_the_data_allows(seed):
    # At 20 studies the greedy assignment alone misses a class for some seeds; the repair fixes it.
    labels = synthetic_labels(20, seed=seed)
    report = check_splits(make_splits(labels, n_folds=5, seed=seed), labels)
    assert report["passed"], report["missing_where_data_allows"]
