"""Train one partition (architecture x category) end to end: every fold, MLflow runs, registry, summary.

Cross-validation over the cv split: fold model k trains on the other folds' cv rows and chooses its
epoch on fold k's rows; the test split is only predicted (mean of the fold models' softmax). One
MLflow run per partition in experiment ``lss-{category}``, with a nested run per fold; the fold
ensemble is registered as ``lss-{category}`` (one version per trained partition).

An interrupted training (killed process, error, Dagster termination) is **resumed in place** by the
next call with the same config and data: ``paths.model_training_state`` names the partition's MLflow
run, each fold's ``last.pt`` its fold run; both are reopened and continue where the checkpoints
stand, so every epoch is logged once and the final weights equal an uninterrupted run's (on CPU).
A leftover that cannot be resumed (other config or data) has its runs marked KILLED and starts over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lss_pipeline.core.atomic import write_json, write_parquet
from lss_pipeline.core.paths import Paths
from lss_pipeline.core.settings import Settings
from lss_pipeline.core.train import ensemble as ensemble_module
from lss_pipeline.core.train import models as models_module
from lss_pipeline.core.train import outputs, tracking
from lss_pipeline.core.train.config import TrainConfig
from lss_pipeline.core.train.data import class_weights_for, cv_folds, read_index
from lss_pipeline.core.train.ensemble import FoldEnsemble
from lss_pipeline.core.train.fold import FoldResult, plan_fold
from lss_pipeline.core.train.loop import Log, train_fold
from lss_pipeline.core.train.resume import TrainingState, abandon, clear_folds, partition_fingerprint

module_log = logging.getLogger(__name__)


def registered_model_name(category: str) -> str:
    return f"lss-{category}"


def experiment_name(category: str) -> str:
    return f"lss-{category}"


@dataclass
class PartitionResult:
    arch: str
    category: str
    folds: list[FoldResult]
    n_folds: int  # K of the data's cv split
    oof: pl.DataFrame = field(repr=False)
    test_predictions: pl.DataFrame = field(repr=False)
    summary: dict[str, Any] = field(repr=False)
    summary_path: Path
    oof_path: Path
    test_predictions_path: Path
    mlflow_run_id: str
    experiment_id: str
    registered_model: str
    model_version: int | None
    resumed: bool
    ensemble: FoldEnsemble = field(repr=False)

    @property
    def oof_macro_recall(self) -> float:
        return float(self.summary["oof_macro_recall"])

    def history_markdown(self) -> str:
        return outputs.history_markdown(self.folds)


def train_partition(
    settings: Settings,
    config: TrainConfig,
    *,
    max_folds: int | None = None,
    tags: Mapping[str, Any] | None = None,
    log: Log = module_log,
    register: bool = True,
    should_stop: Callable[[], bool] | None = None,
    variant: str | None = None,
) -> PartitionResult:
    """Train every cv fold (or the first ``max_folds``) of ``config.arch`` x ``config.category``.

    ``variant`` (e.g. ``"focal"``): a second training of the partition with another recipe, kept
    beside it in ``paths.model_dir(Paths.variant_arch(arch, variant), category)``, logged as its own
    run in the same experiment (tag ``variant``) and never registered: the report compares it, the
    champion choice does not see it.

    Reads the category's crops, index and class weights from ``settings.paths``; writes each fold's
    checkpoints, OOF and summary in ``paths.model_fold_dir``, then the partition's OOF, test
    predictions and ``summary.json``. MLflow must be configured (``tracking.configure_mlflow``).
    ``log`` receives progress lines (pass Dagster's ``context.log``).
    """
    config.validate()
    if max_folds is not None and max_folds < 1:
        raise ValueError(f"max_folds must be >= 1 or None, got {max_folds}")
    paths, arch, category = settings.paths, config.arch, config.category
    key_arch = arch if variant is None else Paths.variant_arch(arch, variant)  # the output folder's
    register = register and variant is None
    crops_path, index_path = paths.crops_array(category), paths.crops_index(category)
    weights_path = paths.class_weights(category)
    for path in (crops_path, index_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (materialize level_crops for {category} first)")

    key = {
        "config": {k: v for k, v in config.resume_key().items() if k != "val_fold"},
        "max_folds": max_folds,
    }
    fingerprint = partition_fingerprint(crops_path, index_path, weights_path)
    state_path = paths.model_training_state(key_arch, category)
    previous = TrainingState.read(state_path)
    resume_run_id = previous.resumable_run(key, fingerprint) if previous is not None else None
    if resume_run_id is None and previous is not None:
        abandon(previous, log)

    experiment = experiment_name(category)
    run_tags = {**(tags or {}), "arch": arch, "category": category}
    if variant is not None:
        run_tags["variant"] = variant
    run_name = f"{arch}-{category}" + (f"-{variant}" if variant else "")
    # Everything below, input checks included, happens inside the run: a failure leaves it FAILED.
    with tracking.start_run(experiment, run_name, run_tags, run_id=resume_run_id) as parent:
        index = read_index(index_path, int(np.load(crops_path, mmap_mode="r").shape[0]))
        all_folds = cv_folds(index)
        if not all_folds:
            raise ValueError(f"{index_path}: no cv row, nothing to train on")
        folds = all_folds[:max_folds]
        if resume_run_id is not None:
            log.info(f"{arch}/{category}: resuming the interrupted training in MLflow run {parent.run_id}")
        else:
            clear_folds(paths, key_arch, category, folds)
            TrainingState(parent.run_id, key, fingerprint).write(state_path)
            parent.log_params(
                {
                    **{k: v for k, v in config.to_dict().items() if k != "val_fold"},
                    "profile": settings.profile_name,
                    "folds": folds,
                    "n_folds": len(all_folds),
                    "variant": variant or "",
                }
            )
        results = [
            _fold(
                settings, config.for_fold(k), key_arch, experiment, run_tags, weights_path, log, should_stop
            )
            for k in folds
        ]
        for orphan in tracking.child_run_ids(parent.run_id):
            tracking.mark_killed(orphan)  # a fold run opened by a killed attempt that wrote no checkpoint
        result = _publish(
            settings, config, key_arch, variant, index, results, len(all_folds), parent, register, log
        )
        result.resumed = resume_run_id is not None
    state_path.unlink(missing_ok=True)
    return result


def _fold(
    settings: Settings,
    config: TrainConfig,
    key_arch: str,
    experiment: str,
    tags: Mapping[str, Any],
    weights_path: Path,
    log: Log,
    should_stop: Callable[[], bool] | None,
) -> FoldResult:
    """Train (or resume, or reload) one fold inside the active partition run."""
    paths, k = settings.paths, config.val_fold
    fold_dir = paths.model_fold_dir(key_arch, config.category, k)
    weights = class_weights_for(weights_path, k, config.weight_scheme)
    plan = plan_fold(
        config, paths.crops_array(config.category), paths.crops_index(config.category), weights, fold_dir
    )
    summary_path = Paths.fold_summary(fold_dir)
    finished_run = plan.mlflow_run_id if plan.resume is not None else None
    if (
        finished_run is not None
        and summary_path.is_file()
        and tracking.run_status(finished_run) == "FINISHED"
    ):
        log.info(f"{config.arch}/{config.category} fold {k}: finished by an earlier attempt; reloading it")
        return train_fold(plan, log=log)

    resume_run = plan.mlflow_run_id if plan.resume is not None else None
    if resume_run is not None and tracking.run_status(resume_run) is None:
        resume_run = None  # the fold's run was deleted: log the rest into a new one
    fold_tags = {**tags, "fold": k}
    with tracking.start_run(
        experiment, f"{key_arch}-{config.category}-fold{k}", fold_tags, run_id=resume_run, nested=True
    ) as fold_run:
        if plan.resume is not None:
            # Checkpointed epochs this run lacks (killed between checkpoint and log, or a new run
            # for a deleted one) are logged now, once.
            last_logged = tracking.last_step(fold_run.run_id, "val_macro_recall")
            for step, metrics in enumerate(plan.resume["history"]):
                if step > last_logged:
                    fold_run.log_metrics(metrics, step=step)
        result = train_fold(
            plan,
            tracker=fold_run,
            log=log,
            should_stop=should_stop,
            mlflow_run_id=fold_run.run_id,
            log_params=resume_run is None,
        )
        write_json({**result.summary(), "mlflow_run_id": fold_run.run_id}, summary_path)
    return result


def _publish(
    settings: Settings,
    config: TrainConfig,
    key_arch: str,
    variant: str | None,
    index: pl.DataFrame,
    folds: list[FoldResult],
    n_folds: int,
    parent: tracking.MlflowTracker,
    register: bool,
    log: Log,
) -> PartitionResult:
    """Partition outputs from the fold results: tables, parent-run metrics, registered ensemble, summary."""
    paths, arch, category = settings.paths, config.arch, config.category
    oof = outputs.oof_table(folds)
    test = outputs.test_table(index.filter(pl.col("split") == "test"), folds)
    oof_path = write_parquet(oof, paths.model_oof(key_arch, category))
    test_path = write_parquet(test, paths.model_test_predictions(key_arch, category))
    cover = outputs.coverage(index, oof)
    oof_metrics = outputs.table_recalls(oof, "oof_")
    # Test-split recalls are logged for reading (the loss comparison, the ablation), never used to choose.
    test_metrics = outputs.table_recalls(test, "test_")
    fold_recalls = [f.best_val_macro_recall for f in folds]
    parent.log_metrics(
        {
            **oof_metrics,
            **test_metrics,
            "fold_val_macro_recall_mean": float(np.nanmean(fold_recalls)),
            "folds_trained": len(folds),
            "oof_study_share": cover["oof_study_share"],
        }
    )
    ensemble = FoldEnsemble([f.model for f in folds]).eval()
    registered = registered_model_name(category)
    version = None
    if register:
        example = np.zeros((2, config.in_chans, config.crop_px, config.crop_px), np.float32)
        version = tracking.log_and_register_model(
            ensemble,
            example,
            registered,
            by_value_modules=[models_module, ensemble_module],
            version_tags={
                "arch": arch,
                "timm_name": config.timm_name,
                "folds": ",".join(str(f.fold) for f in folds),
                "in_chans": config.in_chans,
                "crop_px": config.crop_px,
                "flip_merge": config.flip_merge,
                "profile": settings.profile_name,
            },
        )
        log.info(f"{arch}/{category}: registered the {len(folds)}-fold ensemble as {registered} v{version}")
    experiment_id = tracking.ensure_experiment(experiment_name(category))
    first = folds[0]
    summary = {
        "arch": arch,
        "variant": variant,
        "timm_name": config.timm_name,
        "category": category,
        "profile": settings.profile_name,
        "loss": config.loss,
        "weight_scheme": config.weight_scheme,
        "gamma": config.gamma,
        "flip_merge": config.flip_merge,
        "in_chans": config.in_chans,
        "crop_px": config.crop_px,
        "epochs": config.epochs,
        "n_folds": n_folds,
        "folds_trained": [f.fold for f in folds],
        "coverage": cover,
        "n_test_rows": test.height,
        "n_test_studies": test["study_id"].n_unique(),
        "test_predictions": "mean of the fold models' softmax",
        **oof_metrics,
        **test_metrics,
        "val_macro_recall": oof_metrics.get("oof_macro_recall"),
        "fold_val_macro_recall": fold_recalls,
        "folds": [f.summary() for f in folds],
        "params": first.params,
        "macs": first.macs,
        "gmacs": first.macs / 1e9,
        "ensemble_params": first.params * len(folds),
        "device": first.device,
        "precision": first.precision,
        "train_images_per_s": float(np.nanmean([f.train_images_per_s for f in folds])),
        "mlflow_run_id": parent.run_id,
        "mlflow_experiment_id": experiment_id,
        "registered_model": registered,
        "model_version": version,
    }
    summary_path = write_json(summary, paths.model_summary(key_arch, category))
    return PartitionResult(
        arch=arch,
        category=category,
        folds=folds,
        n_folds=n_folds,
        oof=oof,
        test_predictions=test,
        summary=summary,
        summary_path=summary_path,
        oof_path=oof_path,
        test_predictions_path=test_path,
        mlflow_run_id=parent.run_id,
        experiment_id=experiment_id,
        registered_model=registered,
        model_version=version,
        resumed=False,
        ensemble=ensemble,
    )
