"""The metrics table: one row per trained architecture x category (fractions, not percent).

Headline columns (``test_*``) come from the held-out test split: the partition's test predictions,
with study-bootstrap intervals (``_lo`` / ``_hi``) and the labelled rows per class they rest on.
``oof_*`` columns come from the cross-validation (out-of-fold) table, which chose the epochs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from lss_pipeline.core.constants import CLASS_NAMES, PROB_COLUMNS
from lss_pipeline.core.evaluate.bootstrap import (
    paired_macro_recall_difference,
    recall_intervals,
    seed_for,
)
from lss_pipeline.core.evaluate.calibration import calibrate, calibrated_table
from lss_pipeline.core.evaluate.load import Grid, Partition
from lss_pipeline.core.evaluate.metrics import classification_metrics
from lss_pipeline.core.evaluate.options import EvaluationOptions

BASELINE_ARCH = "resnet"


def _with_ci(name: str) -> dict[str, Any]:
    return {name: pl.Float64, f"{name}_lo": pl.Float64, f"{name}_hi": pl.Float64}


METRICS_SCHEMA: dict[str, Any] = {
    "arch": pl.Utf8,
    "category": pl.Utf8,
    "timm_name": pl.Utf8,
    "params": pl.Int64,
    "macs": pl.Int64,
    "gmacs": pl.Float64,
    "loss": pl.Utf8,
    "weight_scheme": pl.Utf8,
    "n_folds": pl.Int64,
    "folds_trained": pl.Utf8,
    "registered_model": pl.Utf8,
    "model_version": pl.Utf8,
    "mlflow_run_id": pl.Utf8,
    # Held-out test split: the headline.
    "test_n_studies": pl.Int64,
    "test_n_rows": pl.Int64,
    **{f"test_n_{c}": pl.Int64 for c in CLASS_NAMES},
    **_with_ci("test_macro_recall"),
    **{k: v for c in CLASS_NAMES for k, v in _with_ci(f"test_recall_{c}").items()},
    **{f"test_{m}_{c}": pl.Float64 for m in ("precision", "f1") for c in CLASS_NAMES},
    "test_weighted_log_loss": pl.Float64,
    **{f"test_cm_true{i}_pred{j}": pl.Int64 for i in range(3) for j in range(3)},
    "test_macro_recall_pct_per_gmac": pl.Float64,
    **_with_ci("test_delta_vs_resnet_pts"),
    # Temperature scaling: T fitted on the out-of-fold rows, measured on the test split.
    "temperature": pl.Float64,
    "temperature_at_bound": pl.Boolean,
    "temperature_fit_rows": pl.Int64,
    "test_ece": pl.Float64,
    "test_ece_calibrated": pl.Float64,
    "test_log_loss": pl.Float64,
    "test_log_loss_calibrated": pl.Float64,
    "test_weighted_log_loss_calibrated": pl.Float64,
    # Cross-validation: every cv study scored by the fold model that did not train on it.
    "oof_cv_studies": pl.Int64,
    "oof_n_studies": pl.Int64,
    "oof_n_rows": pl.Int64,
    **{f"oof_n_{c}": pl.Int64 for c in CLASS_NAMES},
    "oof_macro_recall": pl.Float64,
    **{f"oof_recall_{c}": pl.Float64 for c in CLASS_NAMES},
}


def as_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def as_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _scored(table: pl.DataFrame) -> dict[str, Any]:
    labelled = table.filter(pl.col("label").is_not_null())
    return classification_metrics(
        labelled["label"].to_numpy().astype(np.int64), labelled.select(PROB_COLUMNS).to_numpy()
    )


def report_recall_seed(arch: str, category: str, seed: int) -> int:
    """Bootstrap seed of a model's test-split macro recall interval: the report row's, and the
    champion's (promote.py), so the two give one interval."""
    return seed_for(f"recall|{arch}|{category}", seed)


def partition_row(partition: Partition, options: EvaluationOptions) -> dict[str, Any]:
    """One metrics row (METRICS_SCHEMA keys, the ResNet difference left empty)."""
    summary = partition.summary
    params, macs = as_int(summary.get("params")), as_int(summary.get("macs"))
    gmacs = macs / 1e9 if macs else None
    folds = summary.get("folds_trained")
    row: dict[str, Any] = {
        "arch": partition.arch,
        "category": partition.category,
        "timm_name": as_str(summary.get("timm_name")),
        "params": params,
        "macs": macs,
        "gmacs": gmacs,
        "loss": as_str(summary.get("loss")),
        "weight_scheme": as_str(summary.get("weight_scheme")),
        "n_folds": as_int(summary.get("n_folds")),
        "folds_trained": ",".join(str(f) for f in folds) if isinstance(folds, list) else as_str(folds),
        "registered_model": as_str(summary.get("registered_model")),
        "model_version": as_str(summary.get("model_version")),
        "mlflow_run_id": as_str(summary.get("mlflow_run_id")),
    }

    test = _scored(partition.test)
    ci = recall_intervals(
        partition.test, options.n_boot, report_recall_seed(partition.arch, partition.category, options.seed)
    )
    row.update(
        test_n_studies=ci.n_studies,
        test_n_rows=ci.n_rows,
        test_weighted_log_loss=test["weighted_log_loss"],
        **ci.macro.as_dict("test_macro_recall"),
        test_macro_recall_pct_per_gmac=100.0 * ci.macro.point / gmacs if gmacs else None,
    )
    for c, name in enumerate(CLASS_NAMES):
        row[f"test_n_{name}"] = ci.class_counts[c]
        row.update(ci.per_class[c].as_dict(f"test_recall_{name}"))
        row[f"test_precision_{name}"] = test[f"precision_{name}"]
        row[f"test_f1_{name}"] = test[f"f1_{name}"]
    for i in range(3):
        for j in range(3):
            row[f"test_cm_true{i}_pred{j}"] = test["confusion_matrix"][i][j]

    calibration = calibrate(partition.oof, partition.test)
    row.update(
        temperature=calibration.temperature,
        temperature_at_bound=calibration.at_bound,
        temperature_fit_rows=calibration.n_fit_rows,
        test_ece=calibration.ece_before,
        test_ece_calibrated=calibration.ece_after,
        test_log_loss=calibration.nll_before,
        test_log_loss_calibrated=calibration.nll_after,
        test_weighted_log_loss_calibrated=_scored(calibrated_table(partition.test, calibration.temperature))[
            "weighted_log_loss"
        ],
    )

    oof = _scored(partition.oof)
    coverage = summary.get("coverage")
    coverage = coverage if isinstance(coverage, dict) else {}
    row.update(
        oof_cv_studies=as_int(coverage.get("cv_studies")),
        oof_n_studies=partition.oof.filter(pl.col("label").is_not_null())["study_id"].n_unique(),
        oof_n_rows=oof["n"],
        oof_macro_recall=oof["macro_recall"],
    )
    for c, name in enumerate(CLASS_NAMES):
        row[f"oof_n_{name}"] = oof["class_counts"][c]
        row[f"oof_recall_{name}"] = oof[f"recall_{name}"]
    return row


def metrics_table(grid: Grid, options: EvaluationOptions) -> pl.DataFrame:
    """Every partition's row; ``test_delta_vs_resnet_pts`` is a paired bootstrap on the same test studies."""
    rows = []
    for partition in grid.partitions.values():
        row = partition_row(partition, options)
        baseline = grid.get(BASELINE_ARCH, partition.category)
        if baseline is not None:
            diff = paired_macro_recall_difference(
                partition.test,
                baseline.test,
                options.n_boot,
                seed_for(f"paired|{partition.arch}|{BASELINE_ARCH}|{partition.category}", options.seed),
            ).difference
            row.update(
                test_delta_vs_resnet_pts=100 * diff.point,
                test_delta_vs_resnet_pts_lo=100 * diff.lo,
                test_delta_vs_resnet_pts_hi=100 * diff.hi,
            )
        rows.append(row)
    return pl.DataFrame(rows, schema=METRICS_SCHEMA)
