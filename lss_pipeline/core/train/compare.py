"""The loss comparison of the thesis (weighted cross-entropy vs weighted focal loss) on one partition.

The partition is trained as usual with its configured loss; the other loss is trained as a variant
beside it (``train_partition(..., variant=...)``: its own folder, its own MLflow run in the same
experiment with ``loss`` as a param, never registered). Both see the same folds, class weights,
epochs and test studies, so their test-split predictions compare row for row. The partition's
``summary.json`` gets a ``loss_comparison`` entry naming both; the report reads the runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from lss_pipeline.core.atomic import write_json
from lss_pipeline.core.markdown import markdown_rows
from lss_pipeline.core.settings import Settings
from lss_pipeline.core.train.config import TrainConfig
from lss_pipeline.core.train.loop import Log
from lss_pipeline.core.train.run import PartitionResult, module_log, train_partition

OTHER_LOSS: dict[str, str] = {"weighted_ce": "focal", "focal": "weighted_ce"}
COMPARED_KEYS: tuple[str, ...] = (
    "loss",
    "oof_macro_recall",
    "test_macro_recall",
    "test_recall_normal_mild",
    "test_recall_moderate",
    "test_recall_severe",
    "mlflow_run_id",
)


def train_other_loss(
    settings: Settings,
    config: TrainConfig,
    trained: PartitionResult,
    *,
    max_folds: int | None = None,
    tags: Mapping[str, Any] | None = None,
    log: Log = module_log,
) -> dict[str, Any]:
    """Train ``config`` with the other loss as a variant of ``trained``; -> the comparison entry."""
    other = OTHER_LOSS[config.loss]
    log.info(f"{config.arch}/{config.category}: training the {other} variant for the loss comparison")
    variant = train_partition(
        settings,
        dataclasses.replace(config, loss=other),
        max_folds=max_folds,
        tags=tags,
        log=log,
        variant=other,
    )
    comparison = {
        "variant": other,
        "variant_summary": str(variant.summary_path),
        "runs": [{k: s.get(k) for k in COMPARED_KEYS} for s in (trained.summary, variant.summary)],
    }
    trained.summary["loss_comparison"] = comparison
    write_json(trained.summary, trained.summary_path)
    return comparison


def comparison_markdown(comparison: Mapping[str, Any]) -> str:
    """One row per loss: out-of-fold and test-split macro recall, moderate recall, the MLflow run."""
    rows = [
        [
            r["loss"],
            r["oof_macro_recall"],
            r["test_macro_recall"],
            r["test_recall_moderate"],
            r["mlflow_run_id"],
        ]
        for r in comparison["runs"]
    ]
    return markdown_rows(
        ["loss", "OOF macro recall", "test macro recall", "test moderate recall", "MLflow run"], rows
    )
