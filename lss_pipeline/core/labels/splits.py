"""A held-out test split and K cross-validation folds (``data_splits``), stable as studies come and go.

Each study's place comes from a hash of its id and the seed alone: ``u = sha256(seed, study)``
read as two uniform numbers; the first below ``test_share`` puts the study in ``test``, the
second picks its fold among K. Adding, removing or relabelling studies therefore never moves
an existing study between test and folds or between folds, and a retrained model is compared
with its champion on the same test studies.

Stratification is re-checked rather than recomputed (recomputing would move studies):
``check_splits`` counts, per category × class, the studies of every part (test, fold 0..K-1)
and fails when a part holds so few of a class that a fair random draw would almost never give
so few (binomial tail below ``alpha``). Unlucky seeds show up there; pick another seed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import polars as pl
from scipy.stats import binom

from lss_pipeline.core import atomic, constants
from lss_pipeline.core.markdown import markdown_table
from lss_pipeline.core.paths import Paths

CV, TEST = "cv", "test"
SPLITS_SCHEMA: dict[str, pl.DataType] = {"study_id": pl.Int64(), "split": pl.Utf8(), "fold": pl.Int8()}
DEFAULT_N_FOLDS = 5
DEFAULT_TEST_SHARE = 0.2
# A part lacks a class "badly" when a fair random draw gives so few with probability below this.
DEFAULT_ALPHA = 1e-4


def _uniforms(study_id: int, seed: int) -> tuple[float, float]:
    """Two independent numbers in [0, 1) that depend on the study id and the seed only."""
    digest = hashlib.sha256(f"lss-split/{seed}/{study_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64, int.from_bytes(digest[8:16], "big") / 2**64


def assign_studies(
    study_ids: list[int],
    *,
    n_folds: int = DEFAULT_N_FOLDS,
    test_share: float = DEFAULT_TEST_SHARE,
    seed: int = 0,
) -> pl.DataFrame:
    """``study_id, split, fold`` (SPLITS_SCHEMA) for these studies, sorted by id; fold is null for test."""
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    if not 0.0 <= test_share < 1.0:
        raise ValueError(f"test_share must be in [0, 1), got {test_share}")
    rows: list[tuple[int, str, int | None]] = []
    for study_id in sorted(set(study_ids)):
        u_test, u_fold = _uniforms(study_id, seed)
        if u_test < test_share:
            rows.append((study_id, TEST, None))
        else:
            rows.append((study_id, CV, min(int(u_fold * n_folds), n_folds - 1)))
    return pl.DataFrame(rows, schema=SPLITS_SCHEMA, orient="row")


def make_splits(
    labels: pl.DataFrame,
    *,
    n_folds: int = DEFAULT_N_FOLDS,
    test_share: float = DEFAULT_TEST_SHARE,
    seed: int = 0,
) -> pl.DataFrame:
    """Every study of ``labels`` in the test split or in one of ``n_folds`` cv folds.

    Raises ValueError when the studies cannot fill every fold (too few, or an unlucky seed on
    a tiny set): the message says how many each fold got.
    """
    if "study_id" not in labels.columns:
        raise ValueError(f"labels lacks column 'study_id'; has {labels.columns}")
    study_ids = labels["study_id"].cast(pl.Int64).unique().to_list()
    splits = assign_studies(study_ids, n_folds=n_folds, test_share=test_share, seed=seed)
    sizes = dict(splits.filter(pl.col("split") == CV).group_by("fold").len().iter_rows())
    empty = [k for k in range(n_folds) if not sizes.get(k)]
    if empty:
        raise ValueError(
            f"{len(study_ids)} studies (test share {test_share}, seed {seed}) leave cv fold(s) {empty} "
            f"of {n_folds} empty (fold sizes {[sizes.get(k, 0) for k in range(n_folds)]}): "
            "use fewer folds, a smaller test share or more studies"
        )
    return splits


def n_folds_of(splits: pl.DataFrame) -> int:
    """K of a splits table (the test split's null fold does not count)."""
    return int(splits["fold"].drop_nulls().n_unique())


def _parts(splits: pl.DataFrame) -> pl.DataFrame:
    """study_id -> part name: ``test`` or ``fold k``."""
    return splits.select(
        pl.col("study_id").cast(pl.Int64),
        pl.when(pl.col("split") == TEST)
        .then(pl.lit(TEST))
        .otherwise(pl.format("fold {}", pl.col("fold").cast(pl.Int64)))
        .alias("part"),
    )


def class_counts(splits: pl.DataFrame, labels: pl.DataFrame, *, alpha: float = DEFAULT_ALPHA) -> pl.DataFrame:
    """One row per category × class × part (test, fold 0..K-1).

    ``studies``: studies of the part with at least one label of the class in the category;
    ``rows``: such label rows (what the crops count); ``expected``: studies a fair draw would
    give (part's labelled studies × the class's share over all parts); ``p_low``: the chance
    that a fair draw gives ``studies`` or fewer; ``lacking``: ``p_low < alpha``.
    """
    parts = _parts(splits.unique("study_id", keep="first"))
    labelled = (
        labels.filter(pl.col("label").is_not_null())
        .select(pl.col("study_id").cast(pl.Int64), "category", pl.col("label").cast(pl.Int64))
        .join(parts, on="study_id", how="inner")
    )
    part_names = [TEST, *(f"fold {k}" for k in sorted(splits["fold"].drop_nulls().unique().to_list()))]
    rows: list[dict[str, Any]] = []
    for category in constants.CATEGORIES:
        cat = labelled.filter(pl.col("category") == category)
        n_studies = cat["study_id"].n_unique()
        studies_per_part = dict(cat.group_by("part").agg(pl.col("study_id").n_unique()).iter_rows())
        for label, name in enumerate(constants.CLASS_NAMES):
            has = cat.filter(pl.col("label") == label)
            share = has["study_id"].n_unique() / n_studies if n_studies else 0.0
            with_class = dict(has.group_by("part").agg(pl.col("study_id").n_unique()).iter_rows())
            label_rows = dict(has.group_by("part").len().iter_rows())
            for part in part_names:
                n = int(studies_per_part.get(part, 0))
                observed = int(with_class.get(part, 0))
                p_low = float(binom.cdf(observed, n, share)) if n else 1.0
                rows.append(
                    {
                        "category": category,
                        "class": name,
                        "part": part,
                        "studies": observed,
                        "rows": int(label_rows.get(part, 0)),
                        "expected": round(n * share, 1),
                        "p_low": p_low,
                        "lacking": p_low < alpha,
                    }
                )
    schema = {
        "category": pl.Utf8(),
        "class": pl.Utf8(),
        "part": pl.Utf8(),
        "studies": pl.Int64(),
        "rows": pl.Int64(),
        "expected": pl.Float64(),
        "p_low": pl.Float64(),
        "lacking": pl.Boolean(),
    }
    return pl.DataFrame(rows, schema=schema)


def class_counts_markdown(counts: pl.DataFrame) -> str:
    """Category × class rows, one column per part: ``label rows (studies)``; ``!`` marks a lacking cell."""
    cell = pl.format("{} ({})", pl.col("rows"), pl.col("studies"))
    cell = pl.when(pl.col("lacking")).then(pl.format("{} !", cell)).otherwise(cell)
    parts = counts["part"].unique(maintain_order=True).to_list()
    wide = (
        counts.with_columns(cell.alias("cell"))
        .pivot(on="part", index=["category", "class"], values="cell")
        .select("category", "class", *parts)
    )
    return markdown_table(wide)


def check_splits(
    splits: pl.DataFrame, labels: pl.DataFrame, *, alpha: float = DEFAULT_ALPHA
) -> dict[str, Any]:
    """Facts the ``data_splits`` check asserts.

    ``passed``: every study of ``labels`` has exactly one row, cv rows have a fold and test rows
    none, no fold is empty, and no part lacks a class badly (``class_counts``'s ``lacking``).
    """
    for col in SPLITS_SCHEMA:
        if col not in splits.columns:
            raise ValueError(f"data_splits lacks column {col!r}; has {splits.columns}")
    rows_per_study = splits.group_by("study_id").len()
    in_several = sorted(rows_per_study.filter(pl.col("len") > 1)["study_id"].to_list())
    label_studies = labels.select(pl.col("study_id").cast(pl.Int64)).unique()
    without = sorted(
        label_studies.join(splits.select("study_id"), on="study_id", how="anti")["study_id"].to_list()
    )
    malformed = splits.filter(
        ~pl.col("split").is_in([CV, TEST])
        | ((pl.col("split") == CV) & pl.col("fold").is_null())
        | ((pl.col("split") == TEST) & pl.col("fold").is_not_null())
    )
    n_folds = n_folds_of(splits)
    fold_sizes = dict(splits.filter(pl.col("split") == CV).group_by("fold").len().sort("fold").iter_rows())
    counts = class_counts(splits, labels, alpha=alpha)
    lacking = counts.filter(pl.col("lacking")).select(
        "category", "class", "part", "studies", "expected", "p_low"
    )
    return {
        "passed": not in_several
        and not without
        and malformed.is_empty()
        and lacking.is_empty()
        and n_folds >= 2,
        "n_studies": int(splits["study_id"].n_unique()),
        "n_folds": n_folds,
        "test_studies": splits.filter(pl.col("split") == TEST).height,
        "fold_sizes": {str(k): int(v) for k, v in fold_sizes.items()},
        "studies_in_several_rows": in_several,
        "studies_without_split": without,
        "malformed_rows": malformed.height,
        "lacking": lacking.to_dicts(),
        "alpha": alpha,
    }


def write_splits(splits: pl.DataFrame, paths: Paths) -> Path:
    """Write ``data_splits.parquet`` atomically (schema checked)."""
    if dict(splits.schema) != SPLITS_SCHEMA:
        raise ValueError(f"splits table does not have the contract schema: {dict(splits.schema)}")
    return atomic.write_parquet(splits, paths.data_splits)


def read_splits(paths: Paths) -> pl.DataFrame:
    """The published splits; FileNotFoundError names the asset to materialize first."""
    if not paths.data_splits.is_file():
        raise FileNotFoundError(
            f"{paths.data_splits} does not exist: materialize the `data_splits` asset first"
        )
    return pl.read_parquet(paths.data_splits)
