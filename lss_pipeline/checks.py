"""Asset checks that guard the joins: coordinates ↔ instances, studies ↔ series, quarantine rate, folds."""


import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    Config,
    MetadataValue,
    asset_check,
)

from lss_pipeline.core.constants import CATEGORY_SERIES
from lss_pipeline.core.markdown import markdown_table
from lss_pipeline.resources import LssSettings


def _read(settings: LssSettings, name: str) -> pl.DataFrame:
    return pl.read_parquet(settings.get().processed_dir / name)


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
    present = metadata.select("study_id", "series_description").unique().with_columns(pl.lit(True).alias("present"))
    return (
        needed.join(present, on=["study_id", "series_description"], how="left")
        .filter(pl.col("present").is_null())
        .drop("present")
        .sort("study_id", "category")
    )


@asset_check(
    asset="labels",
    additional_deps=["dicom_metadata"],
    description="Every label coordinate points at an instance present in dicom_metadata and lies inside its image.",
)
def coordinates_point_at_instances(settings: LssSettings) -> AssetCheckResult:
    labels_df = _read(settings, "labels.parquet")
    metadata = _read(settings, "dicom_metadata.parquet")
    problems = coordinate_problems(labels_df, metadata)
    n_points = labels_df.filter(pl.col("x").is_not_null()).height
    by_problem = problems.group_by("problem").len().sort("problem")
    return AssetCheckResult(
        passed=problems.is_empty(),
        # The real dataset has a few such points; crops skip them, so this warns.
        severity=AssetCheckSeverity.WARN,
        metadata={
            "points_checked": n_points,
            "bad_points": problems.height,
            "by_problem": MetadataValue.json(dict(by_problem.iter_rows())),
            "examples": MetadataValue.md(markdown_table(problems, max_rows=10)),
        },
    )


@asset_check(
    asset="labels",
    additional_deps=["dicom_metadata"],
    description="Each labelled study has the series its categories need (SCS: Sagittal T2/STIR, NFS: Sagittal T1, SBS: Axial T2).",
)
def studies_have_required_series(settings: LssSettings) -> AssetCheckResult:
    labels_df = _read(settings, "labels.parquet")
    metadata = _read(settings, "dicom_metadata.parquet")
    missing = missing_series(labels_df, metadata)
    return AssetCheckResult(
        passed=missing.is_empty(),
        severity=AssetCheckSeverity.WARN,
        metadata={
            "studies_checked": labels_df["study_id"].n_unique(),
            "missing_pairs": missing.height,
            "by_category": MetadataValue.json(dict(missing.group_by("category").len().iter_rows())),
            "examples": MetadataValue.md(markdown_table(missing, max_rows=10)),
        },
    )


class QuarantineBoundConfig(Config):
    max_share: float = 0.05  # of all files seen; the real data loses far fewer


@asset_check(asset="dicom_metadata", description="The share of quarantined DICOM files stays under a configurable bound.")
def quarantine_share_below_bound(settings: LssSettings, config: QuarantineBoundConfig) -> AssetCheckResult:
    metadata = _read(settings, "dicom_metadata.parquet")
    quarantine = _read(settings, "quarantine.parquet")
    total = metadata.height + quarantine.height
    share = quarantine.height / total if total else 0.0
    return AssetCheckResult(
        passed=share <= config.max_share,
        metadata={
            "quarantined": quarantine.height,
            "files": total,
            "share": share,
            "bound": config.max_share,
            "by_reason": MetadataValue.json(dict(quarantine.group_by("error_type").len().iter_rows())),
        },
    )
