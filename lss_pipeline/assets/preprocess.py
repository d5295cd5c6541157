"""`data_splits`, `level_crops` [category], `class_weights` [category]: what training reads."""


import base64
import json

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from lss_pipeline.assets._progress import log_progress
from lss_pipeline.core.atomic import write_parquet
from lss_pipeline.core.markdown import markdown_table
from lss_pipeline.partitions import category_partitions
from lss_pipeline.resources import LssSettings


class SplitsConfig(Config):
    n_folds: int = 5
    seed: int = 0


@asset(
    group_name="preprocess",
    deps=["labels"],
    kinds={"parquet"},
    description="Study-level K folds, stratified on the study's label profile, grouped by study.",
)
def data_splits(context: AssetExecutionContext, settings: LssSettings, config: SplitsConfig) -> MaterializeResult:
    from lss_pipeline.core import splits as splits_core  # scikit-learn loads with it

    cfg = settings.get()
    labels_df = pl.read_parquet(cfg.processed_dir / "labels.parquet")
    splits = splits_core.make_splits(labels_df, n_folds=config.n_folds, seed=config.seed)
    path = cfg.processed_dir / "data_splits.parquet"
    write_parquet(splits, path)
    per_fold = splits.group_by("fold").len().sort("fold")
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(path)),
            "studies": splits.height,
            "n_folds": config.n_folds,
            "seed": config.seed,
            "studies_per_fold": MetadataValue.md(markdown_table(per_fold)),
        }
    )


@asset_check(asset="data_splits", additional_deps=["labels"], description="No study crosses folds; every class appears in every validation fold where the data allows.")
def folds_are_study_grouped_and_stratified(settings: LssSettings) -> AssetCheckResult:
    from lss_pipeline.core import splits as splits_core

    cfg = settings.get()
    splits = pl.read_parquet(cfg.processed_dir / "data_splits.parquet")
    labels_df = pl.read_parquet(cfg.processed_dir / "labels.parquet")
    report = splits_core.check_splits(splits, labels_df)
    return AssetCheckResult(passed=bool(report["passed"]), metadata={"report": MetadataValue.json(report)})


class CropConfig(Config):
    """Zero means: take the value from the profile (LSS_PROFILE)."""

    crop_mm: float = 0.0
    crop_px: int = 0
    slices: int = 0
    workers: int = 0


@asset(
    group_name="preprocess",
    partitions_def=category_partitions,
    deps=["dicom_metadata", "labels", "data_splits"],
    kinds={"numpy", "parquet"},
    description="2.5D crops around each labelled level (neighbouring slices as channels) + Parquet index.",
)
def level_crops(context: AssetExecutionContext, settings: LssSettings, config: CropConfig) -> MaterializeResult:
    from lss_pipeline.core import crops as crops_core  # OpenCV, pydicom decoders

    cfg = settings.get()
    category = context.partition_key
    profile = cfg.profile
    metadata = pl.read_parquet(cfg.processed_dir / "dicom_metadata.parquet")
    labels_df = pl.read_parquet(cfg.processed_dir / "labels.parquet")
    splits = pl.read_parquet(cfg.processed_dir / "data_splits.parquet")
    result = crops_core.build_level_crops(
        category,
        metadata,
        labels_df,
        splits,
        cfg.raw_dir,
        cfg.crops_dir / category,
        crop_mm=config.crop_mm or profile.crop_mm,
        crop_px=config.crop_px or profile.crop_px,
        slices=config.slices or profile.slices,
        workers=config.workers or None,
        progress=log_progress(context, f"{category} crops (studies)"),
    )
    skipped = result.skipped
    skipped_by_reason = pl.DataFrame(
        {"reason": list(result.skipped_by_reason), "crops": list(result.skipped_by_reason.values())}
    )
    samples_png = result.paths["samples"]
    context.log.info(f"{category}: {result.n_crops} crops, {result.padded} padded, {skipped.height} skipped")
    return MaterializeResult(
        metadata={
            "crops_path": MetadataValue.path(str(result.paths["crops"])),
            "index_path": MetadataValue.path(str(result.paths["index"])),
            "crops": result.n_crops,
            "studies": result.n_studies,
            "class_counts": MetadataValue.json(result.class_counts),
            "padded_crops": result.padded,
            "edge_replicated_crops": result.edge_replicated,
            "skipped": skipped.height,
            "skipped_by_reason": MetadataValue.md(markdown_table(skipped_by_reason)),
            "samples": MetadataValue.path(str(samples_png)),
            "samples_preview": MetadataValue.md(
                f"![sample crops per class](data:image/png;base64,{base64.b64encode(samples_png.read_bytes()).decode()})"
            ),
            "timings_s": MetadataValue.json({k: round(v, 2) for k, v in result.timings.items()}),
        }
    )


class ClassWeightsConfig(Config):
    beta: float = 0.999  # effective-number β (Cui et al. 2019)


@asset(
    group_name="preprocess",
    partitions_def=category_partitions,
    deps=["level_crops", "data_splits"],
    kinds={"json"},
    description="Class counts over the training folds and weights: inverse frequency, effective number, competition 1/2/4.",
)
def class_weights(context: AssetExecutionContext, settings: LssSettings, config: ClassWeightsConfig) -> MaterializeResult:
    from lss_pipeline.core import class_weights as weights_core

    cfg = settings.get()
    category = context.partition_key
    index = pl.read_parquet(cfg.crops_dir / category / "index.parquet")
    n_folds = pl.read_parquet(cfg.processed_dir / "data_splits.parquet")["fold"].n_unique()
    weights = weights_core.compute_class_weights(index, n_folds=n_folds, beta=config.beta, category=category)
    path = weights_core.write_class_weights(weights, cfg.crops_dir / category / "class_weights.json")
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(path)),
            "beta": config.beta,
            "weights": MetadataValue.md(weights_core.class_weights_markdown(weights)),
            "json": MetadataValue.json(json.loads(path.read_text())),
        }
    )
