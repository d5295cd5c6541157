"""`dicom_metadata` and `labels`: the RSNA folder as tidy Parquet tables."""


import polars as pl
from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from lss_pipeline.assets._progress import log_progress
from lss_pipeline.core import dicom_metadata as dicom_core
from lss_pipeline.core import labels as labels_core
from lss_pipeline.core.atomic import write_json
from lss_pipeline.core.label_watch import read_label_snapshot
from lss_pipeline.core.constants import TRAIN_CSV
from lss_pipeline.core.markdown import markdown_table
from lss_pipeline.resources import LssSettings


def _require_raw(raw_dir) -> None:
    if not (raw_dir / TRAIN_CSV).exists() and not (raw_dir / "train_images").exists():
        raise Failure(
            description=(
                f"No RSNA dataset at {raw_dir}: put the Kaggle download there, set LSS_RAW_DIR, "
                "or run `lss-pipeline synth --out <dir>` for a synthetic one."
            )
        )


@asset(
    group_name="ingest",
    kinds={"parquet", "dicom"},
    description="One row per DICOM instance (geometry, encoding; no PHI) plus a quarantine table.",
)
def dicom_metadata(context: AssetExecutionContext, settings: LssSettings) -> MaterializeResult:
    cfg = settings.get()
    _require_raw(cfg.raw_dir)
    metadata, quarantine = dicom_core.scan_dicom_folder(
        cfg.raw_dir, progress=log_progress(context, "DICOM headers")
    )
    meta_path, quarantine_path = dicom_core.write_metadata(metadata, quarantine, cfg.processed_dir)
    by_reason = (
        quarantine.group_by("error_type").len().sort("len", descending=True)
        if quarantine.height
        else pl.DataFrame({"error_type": [], "len": []})
    )
    per_series = (
        metadata.group_by("series_description").len().sort("series_description")
        if metadata.height
        else pl.DataFrame()
    )
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(meta_path)),
            "quarantine_path": MetadataValue.path(str(quarantine_path)),
            "instances": metadata.height,
            "studies": metadata["study_id"].n_unique() if metadata.height else 0,
            "series": metadata["series_id"].n_unique() if metadata.height else 0,
            "quarantined": quarantine.height,
            "quarantine_by_reason": MetadataValue.md(markdown_table(by_reason)),
            "instances_by_series_description": MetadataValue.md(markdown_table(per_series)),
        }
    )


@asset(
    group_name="ingest",
    kinds={"parquet"},
    description="Long-form labels: one row per study × condition × side × level, joined with coordinates.",
)
def labels(context: AssetExecutionContext, settings: LssSettings) -> MaterializeResult:
    cfg = settings.get()
    _require_raw(cfg.raw_dir)
    try:
        table, stats = labels_core.build_labels(cfg.raw_dir)
    except labels_core.LabelValidationError as err:
        # Nothing was written: the error names file, row and column.
        raise Failure(description=str(err)) from err
    path = labels_core.write_labels(table, cfg.processed_dir)
    # The retraining sensor compares this with the files' current hash.
    labels_hash = read_label_snapshot(cfg.raw_dir, settle_seconds=0.0).labels_hash
    write_json(stats, cfg.processed_dir / "labels_stats.json")
    class_counts = (
        table.with_columns(pl.col("severity").fill_null("(blank)"))
        .group_by("category", "severity")
        .len()
        .sort("category", "severity")
    )
    context.log.info(f"labels: {table.height} rows; quirks: {stats}")
    # Numbers become their own metadata entries, which the UI plots across materializations.
    numeric_stats = {k: v for k, v in stats.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(path)),
            "labels_hash": labels_hash or "",
            "rows": table.height,
            "studies": table["study_id"].n_unique() if table.height else 0,
            "class_counts": MetadataValue.md(markdown_table(class_counts)),
            "stats": MetadataValue.json(stats),
            **numeric_stats,
        }
    )
