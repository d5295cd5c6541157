"""The metrics table: one row per trained architecture x category (fractions, not percent)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from lss_pipeline.core.constants import CLASS_NAMES, PROB_COLUMNS
from lss_pipeline.core.evaluate.load import Grid, Partition
from lss_pipeline.core.evaluate.metrics import classification_metrics

BASELINE_ARCH = "resnet"

METRICS_SCHEMA: dict[str, Any] = {
    "arch": pl.Utf8,
    "category": pl.Utf8,
    "timm_name": pl.Utf8,
    "n_rows": pl.Int64,
    "n_studies": pl.Int64,
    "macro_recall": pl.Float64,
    "balanced_accuracy": pl.Float64,
    "severe_recall": pl.Float64,
    "weighted_log_loss": pl.Float64,
    **{f"{m}_{c}": pl.Float64 for m in ("recall", "precision", "f1") for c in CLASS_NAMES},
    **{f"cm_true{i}_pred{j}": pl.Int64 for i in range(3) for j in range(3)},
    "params": pl.Int64,
    "macs": pl.Int64,
    "gmacs": pl.Float64,
    "macro_recall_pct_per_gmac": pl.Float64,
    "delta_vs_resnet_pts": pl.Float64,
    "loss": pl.Utf8,
    "weight_scheme": pl.Utf8,
    "mlflow_run_id": pl.Utf8,
    "model_version": pl.Utf8,
    "registered_model": pl.Utf8,
    "val_macro_recall": pl.Float64,
}


def as_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def as_float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def as_str(value: Any) -> str | None:
    return None if value is None else str(value)


def partition_row(partition: Partition) -> dict[str, Any]:
    """One metrics row (METRICS_SCHEMA keys) of a partition's out-of-fold table and summary."""
    summary = partition.summary
    labelled = partition.oof.filter(pl.col("label").is_not_null())
    m = classification_metrics(
        labelled["label"].to_numpy().astype(np.int64), labelled.select(PROB_COLUMNS).to_numpy()
    )
    params, macs = as_int(summary.get("params")), as_int(summary.get("macs"))
    gmacs = macs / 1e9 if macs else None
    row: dict[str, Any] = {
        "arch": partition.arch,
        "category": partition.category,
        "timm_name": as_str(summary.get("timm_name")),
        "n_rows": m["n"],
        "n_studies": labelled["study_id"].n_unique(),
        "macro_recall": m["macro_recall"],
        "balanced_accuracy": m["balanced_accuracy"],
        "severe_recall": m["severe_recall"],
        "weighted_log_loss": m["weighted_log_loss"],
        "params": params,
        "macs": macs,
        "gmacs": gmacs,
        "macro_recall_pct_per_gmac": 100.0 * m["macro_recall"] / gmacs if gmacs else None,
        "delta_vs_resnet_pts": None,
        "loss": as_str(summary.get("loss")),
        "weight_scheme": as_str(summary.get("weight_scheme")),
        "mlflow_run_id": as_str(summary.get("mlflow_run_id")),
        "model_version": as_str(summary.get("model_version")),
        "registered_model": as_str(summary.get("registered_model")),
        "val_macro_recall": as_float(summary.get("val_macro_recall")),
    }
    for metric in ("recall", "precision", "f1"):
        for c in CLASS_NAMES:
            row[f"{metric}_{c}"] = m[f"{metric}_{c}"]
    for i in range(3):
        for j in range(3):
            row[f"cm_true{i}_pred{j}"] = m["confusion_matrix"][i][j]
    return row


def metrics_table(grid: Grid) -> pl.DataFrame:
    """Every partition's row, with the difference in macro recall to ResNet of the same category."""
    rows = [partition_row(p) for p in grid.partitions.values()]
    metrics = pl.DataFrame(rows, schema=METRICS_SCHEMA)
    baseline = metrics.filter(pl.col("arch") == BASELINE_ARCH).select(
        "category", pl.col("macro_recall").alias("_baseline")
    )
    return (
        metrics.drop("delta_vs_resnet_pts")
        .join(baseline, on="category", how="left", maintain_order="left")
        .with_columns(((pl.col("macro_recall") - pl.col("_baseline")) * 100.0).alias("delta_vs_resnet_pts"))
        .drop("_baseline")
        .select(list(METRICS_SCHEMA))
    )
