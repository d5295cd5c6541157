"""Study-grouped, stratified K folds (``data_splits``) and the check that guards them.

Stratification unit: the study's label profile, read as the multiset of its (category,
class) labels. Every labelled row of ``labels`` is one sample with target
``"{category}:{label}"`` and group ``study_id``; scikit-learn's ``StratifiedGroupKFold``
then keeps each study in one fold while balancing how often every class of every category
lands in each fold. This needs no hand-made stratum strings, so no stratum is ever "too
small" (rare classes are spread greedily). A repair pass then moves whole studies so that
every class with at least K studies appears in every validation fold.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.model_selection import StratifiedGroupKFold

from lss_pipeline.core import atomic, constants
from lss_pipeline.core.paths import Paths

UNLABELLED = "unlabelled"


def _targets(labels: pl.DataFrame) -> pl.DataFrame:
    """study_id, target rows: one per labelled row, one 'unlabelled' row per study without labels."""
    for col in ("study_id", "category", "label"):
        if col not in labels.columns:
            raise ValueError(f"labels lacks column {col!r}; has {labels.columns}")
    labelled = labels.filter(pl.col("label").is_not_null()).select(
        pl.col("study_id").cast(pl.Int64),
        pl.format("{}:{}", pl.col("category"), pl.col("label").cast(pl.Int64)).alias("target"),
    )
    studies = labels.select(pl.col("study_id").cast(pl.Int64)).unique()
    empty = studies.join(labelled.select("study_id").unique(), on="study_id", how="anti").with_columns(
        pl.lit(UNLABELLED).alias("target")
    )
    return pl.concat([labelled, empty]).sort(["study_id", "target"])


def make_splits(labels: pl.DataFrame, n_folds: int = 5, seed: int = 0) -> pl.DataFrame:
    """``study_id, fold`` (Int64, Int8): every study of ``labels`` in exactly one of ``n_folds`` folds.

    Deterministic for a given ``labels`` content and ``seed`` (row order does not matter).
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    rows = _targets(labels)
    study_ids = rows["study_id"].unique().sort().to_numpy()
    if len(study_ids) < n_folds:
        raise ValueError(f"{len(study_ids)} studies cannot fill {n_folds} folds")
    groups = rows["study_id"].to_numpy()
    y = rows["target"].to_numpy()
    sgkf = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold_of: dict[int, int] = {}
    with warnings.catch_warnings():
        # "least populated class has only k members": expected for rare classes; the repair handles it.
        warnings.simplefilter("ignore", UserWarning)
        for fold, (_, val_idx) in enumerate(sgkf.split(np.zeros(len(y)), y, groups)):
            for sid in np.unique(groups[val_idx]):
                fold_of[int(sid)] = fold
    fold_of = _repair(rows, fold_of, n_folds)
    return pl.DataFrame(
        {"study_id": study_ids, "fold": [fold_of[int(s)] for s in study_ids]},
        schema={"study_id": pl.Int64, "fold": pl.Int8},
    )


def _repair(
    rows: pl.DataFrame, fold_of: dict[int, int], n_folds: int, max_moves: int = 200
) -> dict[int, int]:
    """Move single studies into validation folds that miss a class the data could give them.

    A study moves from a donor fold that holds the class in >= 2 studies, and only if the
    move takes no class away from the donor that the donor would then miss. Bounded and
    deterministic (studies tried in id order).
    """
    study_targets: dict[int, set[str]] = {}
    for sid, target in rows.iter_rows():
        study_targets.setdefault(int(sid), set()).add(target)
    fold_of = dict(fold_of)

    def holders(target: str, fold: int) -> list[int]:
        return sorted(s for s, ts in study_targets.items() if fold_of[s] == fold and target in ts)

    targets = sorted({t for ts in study_targets.values() for t in ts} - {UNLABELLED})
    for _ in range(max_moves):
        moved = False
        for target in targets:
            n_studies = sum(target in ts for ts in study_targets.values())
            if n_studies < n_folds:
                continue  # the data cannot put it in every fold
            for fold in range(n_folds):
                if holders(target, fold):
                    continue
                donors = sorted(range(n_folds), key=lambda f: -len(holders(target, f)))
                for donor in donors:
                    if len(holders(target, donor)) < 2:
                        break
                    for sid in holders(target, donor):
                        # Moving sid must not empty the donor of any class sid carries.
                        if all(len(holders(t, donor)) >= 2 for t in study_targets[sid]):
                            fold_of[sid] = fold
                            moved = True
                            break
                    if moved:
                        break
                if moved:
                    break
            if moved:
                break
        if not moved:
            break
    return fold_of


def check_splits(splits: pl.DataFrame, labels: pl.DataFrame) -> dict:
    """Facts an asset check asserts on ``data_splits``.

    Returns ``passed`` (no study in two folds, every labelled study has a fold, and no class
    with >= K studies is missing from a validation fold), ``studies_in_several_folds``,
    ``studies_without_fold``, ``fold_sizes``, ``missing_classes`` (category -> fold ->
    class names absent from that validation fold) and ``missing_where_data_allows`` (the
    subset of those whose class has at least K studies in the category).
    """
    for col in ("study_id", "fold"):
        if col not in splits.columns:
            raise ValueError(f"data_splits lacks column {col!r}; has {splits.columns}")
    splits = splits.select(pl.col("study_id").cast(pl.Int64), pl.col("fold").cast(pl.Int64))
    folds_per_study = splits.unique().group_by("study_id").agg(pl.col("fold").n_unique().alias("n"))
    crossing = sorted(folds_per_study.filter(pl.col("n") > 1)["study_id"].to_list())
    fold_ids = sorted(splits["fold"].unique().to_list())
    n_folds = len(fold_ids)
    label_studies = labels.select(pl.col("study_id").cast(pl.Int64)).unique()
    without = sorted(label_studies.join(splits, on="study_id", how="anti")["study_id"].to_list())
    per_study_fold = splits.unique("study_id", keep="first")
    labelled = (
        labels.filter(pl.col("label").is_not_null())
        .select(pl.col("study_id").cast(pl.Int64), "category", pl.col("label").cast(pl.Int64))
        .join(per_study_fold, on="study_id", how="inner")
    )
    missing: dict[str, dict[str, list[str]]] = {}
    missing_allowed: dict[str, dict[str, list[str]]] = {}
    for category in constants.CATEGORIES:
        cat = labelled.filter(pl.col("category") == category)
        if cat.height == 0:
            continue
        for cls, name in enumerate(constants.CLASS_NAMES):
            has = cat.filter(pl.col("label") == cls)
            n_studies = has["study_id"].n_unique()
            present = set(has["fold"].unique().to_list())
            for fold in fold_ids:
                if fold not in present:
                    missing.setdefault(category, {}).setdefault(str(fold), []).append(name)
                    if n_studies >= n_folds:
                        missing_allowed.setdefault(category, {}).setdefault(str(fold), []).append(name)
    sizes = splits.unique("study_id").group_by("fold").len().sort("fold")
    return {
        "passed": not crossing and not without and not missing_allowed,
        "n_studies": int(splits["study_id"].n_unique()),
        "n_folds": n_folds,
        "fold_sizes": {str(f): int(n) for f, n in zip(sizes["fold"], sizes["len"])},
        "studies_in_several_folds": crossing,
        "studies_without_fold": without,
        "missing_classes": missing,
        "missing_where_data_allows": missing_allowed,
    }


def write_splits(splits: pl.DataFrame, paths: Paths) -> Path:
    """Write ``data_splits.parquet`` atomically."""
    return atomic.write_parquet(splits, paths.data_splits)


def read_splits(paths: Paths) -> pl.DataFrame:
    """The published splits; FileNotFoundError names the asset to materialize first."""
    if not paths.data_splits.is_file():
        raise FileNotFoundError(
            f"{paths.data_splits} does not exist: materialize the `data_splits` asset first"
        )
    return pl.read_parquet(paths.data_splits)
