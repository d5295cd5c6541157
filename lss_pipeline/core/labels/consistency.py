"""Labels against the DICOM headers: points on instances that exist and inside their image;
each labelled study has the series its categories are graded on."""

from __future__ import annotations

import polars as pl

from lss_pipeline.core.constants import CATEGORY_SERIES


def coordinate_problems(labels: pl.DataFrame, metadata: pl.DataFrame) -> pl.DataFrame:
    """Labelled points whose instance is missing from the metadata or that lie outside its image."""
    points = labels.filter(pl.col("x").is_not_null())
    instances = metadata.select("study_id", "series_id", "instance_number", "rows", "columns")
    joined = points.join(instances, on=["study_id", "series_id", "instance_number"], how="left")
    return (
        joined.with_columns(
            pl.when(pl.col("rows").is_null())
            .then(pl.lit("instance not in dicom_metadata"))
            .when(
                (pl.col("x") < 0)
                | (pl.col("y") < 0)
                | (pl.col("x") >= pl.col("columns"))
                | (pl.col("y") >= pl.col("rows"))
            )
            .then(pl.lit("point outside the image"))
            .otherwise(None)
            .alias("problem")
        )
        .filter(pl.col("problem").is_not_null())
        .select("study_id", "series_id", "instance_number", "condition", "level", "x", "y", "problem")
    )


def missing_series(labels: pl.DataFrame, metadata: pl.DataFrame) -> pl.DataFrame:
    """Labelled (study, category) pairs whose study has no readable series of the category's kind."""
    needed = (
        labels.filter(pl.col("label").is_not_null())
        .select("study_id", "category")
        .unique()
        .with_columns(pl.col("category").replace_strict(CATEGORY_SERIES).alias("series_description"))
    )
    present = (
        metadata.select("study_id", "series_description").unique().with_columns(pl.lit(True).alias("present"))
    )
    return (
        needed.join(present, on=["study_id", "series_description"], how="left")
        .filter(pl.col("present").is_null())
        .drop("present")
        .sort("study_id", "category")
    )
