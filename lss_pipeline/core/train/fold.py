"""One fold's training, before and after: the plan (rows, files, resumable checkpoint) and the result."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from torch import nn

from lss_pipeline.core.paths import Paths
from lss_pipeline.core.train import checkpoint
from lss_pipeline.core.train.config import TrainConfig
from lss_pipeline.core.train.data import FoldRows, data_fingerprint, fold_rows, open_crops, read_index


@dataclass
class FoldPlan:
    """Everything decided before a fold trains: its rows, files, and the checkpoint it resumes (if any)."""

    config: TrainConfig
    crops_path: Path
    index_path: Path
    class_weights: list[float] | None
    fold_dir: Path
    rows: FoldRows
    fingerprint: str
    resume: dict[str, Any] | None  # last.pt's content when it continues this training

    @property
    def last_path(self) -> Path:
        return Paths.checkpoint_last(self.fold_dir)

    @property
    def best_path(self) -> Path:
        return Paths.checkpoint_best(self.fold_dir)

    @property
    def oof_path(self) -> Path:
        return Paths.fold_oof(self.fold_dir)

    @property
    def resumed_from_epoch(self) -> int | None:
        """Epochs already done by an earlier, interrupted call (None: starts from scratch)."""
        return None if self.resume is None else int(self.resume["epoch"]) + 1

    @property
    def mlflow_run_id(self) -> str | None:
        """The MLflow run the interrupted call logged into (resumed in place)."""
        return (self.resume or {}).get("mlflow_run_id") or None


def plan_fold(
    config: TrainConfig,
    crops_path: str | os.PathLike,
    index_path: str | os.PathLike,
    class_weights: list[float] | None,
    fold_dir: str | os.PathLike,
) -> FoldPlan:
    """Check the inputs and read the fold's rows; find a ``last.pt`` that this training may resume."""
    config.validate()
    crops_path, index_path, fold_dir = Path(crops_path), Path(index_path), Path(fold_dir)
    crops = open_crops(crops_path, config.in_chans, config.crop_px)
    rows = fold_rows(read_index(index_path, crops.shape[0]), config.val_fold, index_path)
    fingerprint = data_fingerprint(crops_path, index_path, class_weights)
    resume = checkpoint.read_resumable(Paths.checkpoint_last(fold_dir), config.resume_key(), fingerprint)
    return FoldPlan(config, crops_path, index_path, class_weights, fold_dir, rows, fingerprint, resume)


@dataclass
class FoldResult:
    fold: int
    best_epoch: int  # 0-based
    best_metrics: dict[str, float]  # validation metrics of the best epoch
    history: list[dict[str, float]]  # per epoch, including epochs before a resume
    epochs_run: int  # epochs completed in total
    stopped_early: bool
    resumed_from_epoch: int | None  # epochs already done when this call started
    params: int
    macs: int
    train_images_per_s: float  # training-phase throughput of this call's epochs (NaN if none ran)
    device: str
    precision: str
    best_path: Path
    last_path: Path
    oof: pl.DataFrame = field(repr=False)  # this fold's validation rows with probabilities
    test_probs: np.ndarray = field(repr=False)  # (test rows, 3) softmax of the best weights
    model: nn.Module = field(repr=False)  # best weights, CPU, eval mode

    @property
    def best_val_macro_recall(self) -> float:
        return self.best_metrics["val_macro_recall"]

    def summary(self) -> dict[str, Any]:
        """JSON-ready facts for the fold's summary.json and MLflow."""
        return {
            "fold": self.fold,
            "best_epoch": self.best_epoch,
            "best_metrics": self.best_metrics,
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "resumed_from_epoch": self.resumed_from_epoch,
            "params": self.params,
            "macs": self.macs,
            "gmacs": self.macs / 1e9,
            "train_images_per_s": self.train_images_per_s,
            "device": self.device,
            "precision": self.precision,
            "n_val": self.oof.height,
        }
