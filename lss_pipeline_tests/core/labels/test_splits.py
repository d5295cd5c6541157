"""The held-out test split and cv folds: stable under added/removed studies, re-checked stratification."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lss_pipeline.core import constants
from lss_pipeline.core.labels.splits import (
    SPLITS_SCHEMA,
    TEST,
    check_splits,
    class_counts,
    class_counts_markdown,
    make_splits,
    n_folds_of,
    read_splits,
    write_splits,
)
from lss_pipeline.core.labels.tidy import build_labels
from lss_pipeline.core.paths import Paths
from lss_pipeline_tests.real_labels import REAL_LABELS


def synthetic_labels(n_studies: int, seed: int, first_study: int = 1000) -> pl.DataFrame:
    """Long-form labels with the real class shares, some blanks, a few unlabelled studies."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_studies):
        study = first_study + 7 * s
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
    return synthetic_labels(300, seed=3)


def _place(splits: pl.DataFrame) -> dict[int, tuple[str, int | None]]:
    return {sid: (split, fold) for sid, split, fold in splits.iter_rows()}


def test_every_study_once_in_test_or_one_fold(labels):
    splits = make_splits(labels, n_folds=5, test_share=0.2, seed=0)
    assert dict(splits.schema) == SPLITS_SCHEMA
    assert splits["study_id"].n_unique() == splits.height == labels["study_id"].n_unique()
    test = splits.filter(pl.col("split") == TEST)
    cv = splits.filter(pl.col("split") == "cv")
    assert test["fold"].null_count() == test.height and cv["fold"].null_count() == 0
    assert sorted(cv["fold"].unique().to_list()) == [0, 1, 2, 3, 4] and n_folds_of(splits) == 5
    # 300 studies at 20 %: 60 expected, sd ~7
    assert 35 <= test.height <= 85


def test_test_share_and_k_are_configurable(labels):
    none_held_out = make_splits(labels, n_folds=3, test_share=0.0)
    assert none_held_out.filter(pl.col("split") == TEST).is_empty() and n_folds_of(none_held_out) == 3
    small = set(make_splits(labels, test_share=0.1).filter(pl.col("split") == TEST)["study_id"])
    large = set(make_splits(labels, test_share=0.3).filter(pl.col("split") == TEST)["study_id"])
    assert small < large  # a larger share only adds studies to the test split
    with pytest.raises(ValueError, match="test_share"):
        make_splits(labels, test_share=1.0)
    with pytest.raises(ValueError, match="n_folds"):
        make_splits(labels, n_folds=1)


def test_deterministic_for_a_seed_and_independent_of_row_order(labels):
    a = make_splits(labels, seed=0)
    b = make_splits(labels.sample(fraction=1.0, shuffle=True, seed=9), seed=0)
    c = make_splits(labels, seed=1)
    assert a.equals(b)
    assert not a.equals(c)


def test_adding_studies_moves_no_existing_study(labels):
    before = _place(make_splits(labels))
    added = pl.concat([labels, synthetic_labels(6, seed=11, first_study=900_000)])
    after = _place(make_splits(added))
    assert len(after) == len(before) + 6
    assert {sid: after[sid] for sid in before} == before


def test_removing_or_relabelling_studies_moves_none_of_the_others(labels):
    before = _place(make_splits(labels))
    removed = sorted(before)[::75]  # 4 studies
    after = _place(make_splits(labels.filter(~pl.col("study_id").is_in(removed))))
    assert set(after) == set(before) - set(removed)
    assert {sid: before[sid] for sid in after} == after
    relabelled = labels.with_columns(pl.lit(2, dtype=pl.Int8).alias("label"))
    assert _place(make_splits(relabelled)) == before


def test_check_passes_and_counts_every_part(labels):
    splits = make_splits(labels)
    report = check_splits(splits, labels)
    assert report["passed"], report
    counts = class_counts(splits, labels)
    assert set(counts["part"]) == {TEST, "fold 0", "fold 1", "fold 2", "fold 3", "fold 4"}
    assert counts.height == 3 * 3 * 6
    labelled = labels.filter(pl.col("label").is_not_null())
    assert counts["rows"].sum() == labelled.height  # every labelled row counted once
    md = class_counts_markdown(counts)
    assert md.splitlines()[0] == "| category | class | test | fold 0 | fold 1 | fold 2 | fold 3 | fold 4 |"


def test_check_fails_when_a_part_lacks_a_class_badly():
    labels = synthetic_labels(600, seed=5)
    splits = make_splits(labels)
    # Every study with a severe SCS label into the test split: the folds then have none.
    severe_scs = labels.filter((pl.col("category") == "scs") & (pl.col("label") == 2))["study_id"].unique()
    bunched = splits.with_columns(
        pl.when(pl.col("study_id").is_in(severe_scs.to_list()))
        .then(pl.lit(TEST))
        .otherwise(pl.col("split"))
        .alias("split"),
        pl.when(pl.col("study_id").is_in(severe_scs.to_list()))
        .then(pl.lit(None, dtype=pl.Int8))
        .otherwise(pl.col("fold"))
        .alias("fold"),
    )
    report = check_splits(bunched, labels)
    assert not report["passed"]
    lacking = {(r["category"], r["class"], r["part"]) for r in report["lacking"]}
    assert {("scs", "severe", f"fold {k}") for k in range(5)} <= lacking


def test_check_catches_duplicates_missing_studies_and_malformed_rows(labels):
    splits = make_splits(labels)
    study = int(splits["study_id"][0])
    doubled = pl.concat([splits, splits.head(1)])
    assert check_splits(doubled, labels)["studies_in_several_rows"] == [study]
    dropped = splits.filter(pl.col("study_id") != study)
    report = check_splits(dropped, labels)
    assert not report["passed"] and report["studies_without_split"] == [study]
    no_fold = splits.with_columns(pl.lit(None, dtype=pl.Int8).alias("fold"))
    assert not check_splits(no_fold, labels)["passed"]


def test_a_rare_class_in_a_small_set_is_reported_not_failed():
    labels = synthetic_labels(40, seed=4)
    splits = make_splits(labels, n_folds=3)
    counts = class_counts(splits, labels)
    assert (counts["studies"] == 0).any() or counts["p_low"].min() < 0.5  # some part is thin
    assert check_splits(splits, labels)["passed"]


def test_too_few_studies_is_a_clear_error():
    with pytest.raises(ValueError, match="empty"):
        make_splits(synthetic_labels(3, seed=0), n_folds=5)


def test_write_and_read_round_trip(labels, tmp_path):
    paths = Paths(data_dir=tmp_path, raw_dir=tmp_path / "raw")
    with pytest.raises(FileNotFoundError, match="data_splits"):
        read_splits(paths)
    splits = make_splits(labels)
    write_splits(splits, paths)
    assert read_splits(paths).equals(splits)
    with pytest.raises(ValueError, match="schema"):
        write_splits(splits.drop("split"), paths)


@pytest.mark.skipif(not REAL_LABELS.is_dir(), reason=f"real RSNA label files not found at {REAL_LABELS}")
def test_real_rsna_labels_split_cleanly():
    labels, _ = build_labels(Paths(data_dir=REAL_LABELS.parent / "data", raw_dir=REAL_LABELS))
    splits = make_splits(labels)
    assert splits.height == 1975
    assert 0.17 <= splits.filter(pl.col("split") == TEST).height / 1975 <= 0.23
    report = check_splits(splits, labels)
    assert report["passed"], report
    assert (class_counts(splits, labels)["studies"] >= 40).all()  # every class in every part, plenty
