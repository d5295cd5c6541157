"""The Kaggle metric of one architecture, over its three categories' prediction tables."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from lss_pipeline.core.constants import CATEGORIES, CLASS_NAMES, CONDITIONS, PROB_COLUMNS
from lss_pipeline.core.evaluate.bootstrap import ratio_interval
from lss_pipeline.core.evaluate.metrics import (
    COMPETITION_GROUPS,
    COMPETITION_TERMS,
    GROUP_OF_CATEGORY,
    SEVERE_LABEL,
    competition_score,
    normalise_probabilities,
    parse_row_id,
    severity_weights,
)

MISSING_ROWS_POLICY = (
    "Kaggle's metric needs a prediction for every labelled row. It is computed per "
    "architecture over the studies present in all three categories' prediction tables; "
    "a labelled row of such a study that has no prediction (e.g. its crop was skipped) is "
    "predicted with the class prior of its category, as a submission would have to. The "
    "number of filled rows is shown. "
    "Without a labels table, only rows present in the prediction tables are known and scored."
)

_CATEGORY_OF_STEM: dict[str, str] = {stem: cat for (_, cat, _, stem) in CONDITIONS}


def dedupe(predictions: pl.DataFrame) -> pl.DataFrame:
    """One prediction per row id: several crops of one row (should not happen) are averaged."""
    return predictions.group_by("row_id", maintain_order=True).agg(
        pl.col("study_id").first(), pl.col("label").first(), *[pl.col(c).mean() for c in PROB_COLUMNS]
    )


def priors_of(tables: dict[str, pl.DataFrame]) -> dict[str, np.ndarray]:
    """Class shares of each category's labelled rows (the prior a submission falls back to)."""
    priors = {}
    for cat, df in tables.items():
        counts = np.bincount(df["label"].drop_nulls().to_numpy().astype(np.int64), minlength=3)
        priors[cat] = counts / counts.sum()
    return priors


def kaggle_frames(
    tables: dict[str, pl.DataFrame],
    labels: pl.DataFrame | None = None,
    priors: dict[str, np.ndarray] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """(solution, submission, facts) of one architecture, as the Kaggle metric takes them.

    See MISSING_ROWS_POLICY. ``labels`` (optional) is ``labels.parquet`` (``study_id, row_id,
    label``); without it the solution is the labelled prediction rows. ``priors``: category ->
    class shares for unpredicted rows (default: the shares of the tables' own labelled rows).
    """
    missing = [c for c in CATEGORIES if c not in tables]
    if missing:
        raise ValueError(f"competition metric needs all three categories; missing {missing}")
    per_category = {c: dedupe(tables[c]) for c in CATEGORIES}
    studies = set.intersection(*(set(df["study_id"].to_list()) for df in per_category.values()))
    if not studies:
        raise ValueError("no study is present in all three categories' prediction tables")
    study_list = sorted(studies)
    predictions = pl.concat(
        [
            df.filter(pl.col("study_id").is_in(study_list)).select(
                "row_id", "study_id", "label", *PROB_COLUMNS
            )
            for df in per_category.values()
        ],
        how="vertical_relaxed",
    )
    if labels is not None:
        for col in ("study_id", "row_id", "label"):
            if col not in labels.columns:
                raise ValueError(f"labels: missing column {col!r}")
        solution = labels.filter(pl.col("study_id").is_in(study_list)).select(
            "row_id", pl.col("label").cast(pl.Int64)
        )
        source = "labels table"
    else:
        solution = predictions.select("row_id", pl.col("label").cast(pl.Int64))
        source = "prediction rows"

    submission = predictions.select(
        "row_id", *[pl.col(p).alias(c) for p, c in zip(PROB_COLUMNS, CLASS_NAMES, strict=True)]
    )
    unpredicted = solution.filter(pl.col("label").is_not_null()).join(submission, on="row_id", how="anti")
    if len(unpredicted):
        shares = priors if priors is not None else priors_of(per_category)
        fill_rows = [
            (row_id, *(float(p) for p in shares[_CATEGORY_OF_STEM[parse_row_id(row_id)[1]]]))
            for row_id in unpredicted["row_id"].to_list()
        ]
        fill_schema = {"row_id": pl.Utf8, **{c: pl.Float64 for c in CLASS_NAMES}}
        fill = pl.DataFrame(fill_rows, schema=fill_schema, orient="row")
        submission = pl.concat([submission, fill], how="vertical_relaxed")
    return solution, submission, {"n_filled_rows": len(unpredicted), "solution_source": source}


def terms_by_study(solution: pl.DataFrame, submission: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per study, the numerator and denominator of each COMPETITION_TERMS term: (n_studies, 4) each.

    ``Σ num / Σ den`` over all studies is ``competition_score``'s term (same clipping and weights),
    so a bootstrap over studies resamples rows of these two matrices.
    """
    scored = solution.filter(pl.col("label").is_not_null()).join(
        submission.select("row_id", *CLASS_NAMES), on="row_id", how="left"
    )
    parsed = [parse_row_id(r) for r in scored["row_id"].to_list()]
    studies, codes = np.unique(np.array([p[0] for p in parsed], dtype=np.int64), return_inverse=True)
    groups = np.array([COMPETITION_GROUPS.index(GROUP_OF_CATEGORY[_CATEGORY_OF_STEM[p[1]]]) for p in parsed])
    y_true = scored["label"].to_numpy().astype(np.int64)
    proba = normalise_probabilities(scored.select(CLASS_NAMES).to_numpy(), what="submission")
    eps = np.finfo(np.float64).eps
    weights = severity_weights(y_true)
    nll = -np.log(np.clip(proba[np.arange(len(y_true)), y_true], eps, 1 - eps))
    num = np.zeros((len(studies), len(COMPETITION_TERMS)))
    den = np.zeros_like(num)
    np.add.at(num, (codes, groups), weights * nll)
    np.add.at(den, (codes, groups), weights)
    # any_severe_spinal: one binary term per study with spinal rows (max label, max p, max weight).
    spinal = groups == COMPETITION_GROUPS.index("spinal")
    last = len(COMPETITION_TERMS) - 1
    is_severe = np.zeros(len(studies), bool)
    p_severe = np.full(len(studies), -np.inf)
    weight = np.zeros(len(studies))
    np.logical_or.at(is_severe, codes[spinal], y_true[spinal] == SEVERE_LABEL)
    np.maximum.at(p_severe, codes[spinal], proba[spinal, SEVERE_LABEL])
    np.maximum.at(weight, codes[spinal], weights[spinal])
    has_spinal = np.isfinite(p_severe)
    p_true = np.where(is_severe, p_severe, 1 - p_severe)[has_spinal]
    num[has_spinal, last] = weight[has_spinal] * -np.log(np.clip(p_true, eps, 1 - eps))
    den[has_spinal, last] = weight[has_spinal]
    return num, den


def competition_for_arch(
    tables: dict[str, pl.DataFrame],
    labels: pl.DataFrame | None = None,
    priors: dict[str, np.ndarray] | None = None,
    *,
    n_boot: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Kaggle metric of one architecture from its three categories' prediction tables.

    Keys of ``competition_score`` plus ``n_filled_rows``, ``solution_source``, ``class_counts``
    (labelled rows scored per class) and, with ``n_boot`` > 0, ``score_lo`` / ``score_hi`` (the
    study-bootstrap interval).
    """
    solution, submission, facts = kaggle_frames(tables, labels, priors)
    result = competition_score(solution, submission)
    result.update(facts)
    counts = np.bincount(solution["label"].drop_nulls().to_numpy().astype(np.int64), minlength=3)
    result["class_counts"] = [int(c) for c in counts]
    if n_boot > 0:
        num, den = terms_by_study(solution, submission)
        ci = ratio_interval(num, den, n_boot, seed)
        result["score_lo"], result["score_hi"] = ci.lo, ci.hi
    return result
