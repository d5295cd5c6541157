"""`level_crops` [category] with its checks, `class_weights` [category]: what training reads.

The crop checks run inside `level_crops` (check specs), once per category partition.
"""

import base64
import contextlib
from collections.abc import Iterator

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from filelock import Timeout

from lss_pipeline.assets._progress import log_progress
from lss_pipeline.core.crops import quality
from lss_pipeline.core.markdown import markdown_table
from lss_pipeline.partitions import category_partitions
from lss_pipeline.resources import LssSettings


@contextlib.contextmanager
def _fail_clearly() -> Iterator[None]:
    """Errors whose message tells the user what is wrong reach the UI as a failure, not a traceback."""
    try:
        yield
    except (FileNotFoundError, PermissionError, Timeout, ValueError) as err:
        raise Failure(description=str(err)) from err


class CropConfig(Config):
    """Zero means: take the value from the profile (LSS_PROFILE)."""

    crop_mm: float = 0.0
    crop_px: int = 0
    slices: int = 0
    workers: int = 0
    # Bounds of the skipped-share check, of labelled rows with a coordinate; the real data
    # loses ~1-2 % (core/crops/quality.py).
    max_skipped_share: float = quality.MAX_SKIPPED_SHARE
    max_unreadable_share: float = quality.MAX_UNREADABLE_SHARE
    # Leave out the label rows the labels_make_anatomical_sense check lists (core/labels/anatomy.py).
    exclude_implausible_labels: bool = False


# Checked inside the asset, per category partition; blocking, so a failed check stops
# class_weights and training of that category in the same run.
SKIPPED_SHARE_CHECK = AssetCheckSpec(
    "skipped_share_within_bound",
    asset="level_crops",
    blocking=True,
    description=(
        "The share of labelled rows that got no crop stays under a bound, and some crops exist: a decoder "
        "or geometry bug must not pass as 'all skipped'."
    ),
)
INDEX_CHECK = AssetCheckSpec(
    "index_matches_crops",
    asset="level_crops",
    blocking=True,
    description="index.parquet and crops.npy hold the same crops (rows, crop_index order, values in [0, 1]).",
)


@asset(
    group_name="preprocess",
    partitions_def=category_partitions,
    deps=["dicom_metadata", "labels", "data_splits"],
    kinds={"numpy", "parquet"},
    check_specs=[SKIPPED_SHARE_CHECK, INDEX_CHECK],
    description="2.5D crops around each labelled level (neighbouring slices as channels) + Parquet index.",
)
def level_crops(
    context: AssetExecutionContext, settings: LssSettings, config: CropConfig
) -> MaterializeResult:
    from lss_pipeline.core.crops import store  # OpenCV, pydicom decoders

    cfg = settings.get()
    category = context.partition_key
    with _fail_clearly():
        result = store.crop_category(
            cfg.paths,
            category,
            crop_mm=config.crop_mm or cfg.profile.crop_mm,
            crop_px=config.crop_px or cfg.profile.crop_px,
            slices=config.slices or cfg.profile.slices,
            workers=config.workers or None,
            progress=log_progress(context, f"{category} crops (studies)"),
            exclude_implausible_labels=config.exclude_implausible_labels,
        )
        skipped = quality.skipped_share_report(
            result.n_crops,
            result.skipped,
            max_skipped_share=config.max_skipped_share,
            max_unreadable_share=config.max_unreadable_share,
        )
        consistency = store.index_matches_array(cfg.paths, category)
    by_reason = pl.DataFrame(
        {"reason": list(result.skipped_by_reason), "crops": list(result.skipped_by_reason.values())},
        schema={"reason": pl.Utf8, "crops": pl.Int64},
    )
    samples_png = result.paths["samples"]
    context.log.info(
        f"{category}: {result.n_crops} crops, {result.padded} padded, {result.skipped.height} skipped"
    )
    return MaterializeResult(
        metadata={
            "crops_path": MetadataValue.path(str(result.paths["crops"])),
            "index_path": MetadataValue.path(str(result.paths["index"])),
            "crops": result.n_crops,
            "studies": result.n_studies,
            "class_counts": MetadataValue.json(result.class_counts),
            "padded_crops": result.padded,
            "edge_replicated_crops": result.edge_replicated,
            "skipped": result.skipped.height,
            "skipped_share": skipped["skipped_share"],
            "skipped_by_reason": MetadataValue.md(markdown_table(by_reason)),
            "samples": MetadataValue.path(str(samples_png)),
            "samples_preview": MetadataValue.md(
                "![sample crops per class](data:image/png;base64,"
                f"{base64.b64encode(samples_png.read_bytes()).decode()})"
            ),
            "timings_s": MetadataValue.json({k: round(v, 2) for k, v in result.timings.items()}),
        },
        check_results=[
            AssetCheckResult(
                check_name=SKIPPED_SHARE_CHECK.name,
                passed=bool(skipped["passed"]),
                severity=AssetCheckSeverity.ERROR,
                metadata={
                    "skipped_share": skipped["skipped_share"],
                    "unreadable_share": skipped["unreadable_share"],
                    "crops": skipped["crops"],
                    "rows_with_coordinate": skipped["rows_with_coordinate"],
                    "problems": MetadataValue.md("\n".join(f"- {p}" for p in skipped["problems"]) or "none"),
                    "report": MetadataValue.json(skipped),
                },
            ),
            AssetCheckResult(
                check_name=INDEX_CHECK.name,
                passed=bool(consistency["passed"]),
                severity=AssetCheckSeverity.ERROR,
                metadata={"report": MetadataValue.json(consistency)},
            ),
        ],
    )


class ClassWeightsConfig(Config):
    # effective-number β (Cui et al. 2019); None: (N-1)/N of each fold's training count (no saturation)
    beta: float | None = None


@asset(
    group_name="preprocess",
    partitions_def=category_partitions,
    deps=["level_crops", "data_splits"],
    kinds={"json"},
    description=(
        "Class counts over the training folds and weights: inverse frequency, effective number, "
        "competition 1/2/4."
    ),
)
def class_weights(
    context: AssetExecutionContext, settings: LssSettings, config: ClassWeightsConfig
) -> MaterializeResult:
    from lss_pipeline.core.crops import store
    from lss_pipeline.core.labels.class_weights import class_weights_markdown

    with _fail_clearly():
        weights, path = store.class_weights_for_category(
            settings.get().paths, context.partition_key, beta=config.beta
        )
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(path)),
            "beta": str(weights["beta"]),
            "weights": MetadataValue.md(class_weights_markdown(weights)),
            "json": MetadataValue.json(weights),
        }
    )
