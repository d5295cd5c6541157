"""The Kaggle metric of one architecture, over its three categories' prediction tables."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from lss_pipeline.core.constants import CATEGORIES, CLASS_NAMES, CONDITIONS, PROB_COLUMNS
from lss_pipeline.core.evaluate.metrics import competition_score, parse_row_id

MISSING_ROWS_POLICY = (
    "Kaggle's metric needs a prediction for every labelled row. It is computed per "
    "architecture over the studies present in all three categories' prediction tables; "
    "a labelled row of such a study that has no prediction (e.g. its crop was skipped) is "
    "predicted with the class prior of its category (the label shares of that category's "
    "predicted rows), as a submission would have to. The number of filled rows is shown. "
    "Without a labels table, only rows present in the prediction tables are known and scored."
)

_CATEGORY_OF_STEM: dict[str, str] = {stem: cat for (_, cat, _, stem) in CONDITIONS}


def dedupe(predictions: pl.DataFrame) -> pl.DataFrame:
    """One prediction per row id: several crops of one row (should not happen) are averaged."""
    return predictions.group_by("row_id", maintain_order=True).agg(
        pl.col("study_id").first(), pl.col("label").first(), *[pl.col(c).mean() for c in PROB_COLUMNS]
    )


def competition_for_arch(
    tables: dict[str, pl.DataFrame], labels: pl.DataFrame | None = None
) -> dict[str, Any]:
    """Kaggle metric of one architecture from its three categories' prediction tables.

    See MISSING_ROWS_POLICY. ``labels`` (optional) is ``labels.parquet`` (``study_id, row_id,
    label``); without it the solution is the labelled prediction rows.
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
    n_filled = len(unpredicted)
    if n_filled:
        priors = {}
        for cat, df in per_category.items():
            counts = np.bincount(df["label"].drop_nulls().to_numpy().astype(np.int64), minlength=3)
            priors[cat] = counts / counts.sum()
        fill_rows = [
            (row_id, *(float(p) for p in priors[_CATEGORY_OF_STEM[parse_row_id(row_id)[1]]]))
            for row_id in unpredicted["row_id"].to_list()
        ]
        fill_schema = {"row_id": pl.Utf8, **{c: pl.Float64 for c in CLASS_NAMES}}
        fill = pl.DataFrame(fill_rows, schema=fill_schema, orient="row")
        submission = pl.concat([submission, fill], how="vertical_relaxed")

    result = competition_score(solution, submission)
    result["n_filled_rows"] = n_filled
    result["solution_source"] = source
    return result
