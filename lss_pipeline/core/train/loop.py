"""The training loop of one fold model: crops in, ``last.pt``/``best.pt`` and OOF + test probabilities out.

AdamW, linear warm-up then cosine decay (per step), early stopping and the best checkpoint on
the fold's own validation macro recall (test-split rows play no part in any choice). A resume
checkpoint (``last.pt``) is written atomically after every epoch; a rerun with the same config
and data continues from it and ends with the same weights as an uninterrupted run (on CPU,
where the loop is deterministic).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

from lss_pipeline.core.atomic import write_parquet
from lss_pipeline.core.constants import CLASS_NAMES
from lss_pipeline.core.train import checkpoint
from lss_pipeline.core.train.checkpoint import LoopState
from lss_pipeline.core.train.config import TrainConfig
from lss_pipeline.core.train.data import OOF_ID_COLUMNS, batch_as_is, make_dataset, open_crops
from lss_pipeline.core.train.device import deterministic_cpu, resolve_device
from lss_pipeline.core.train.fold import FoldPlan, FoldResult
from lss_pipeline.core.train.losses import build_loss
from lss_pipeline.core.train.models import count_macs, count_parameters, create_model
from lss_pipeline.core.train.predict import predict_logits, softmax, val_metrics, with_probabilities

module_log = logging.getLogger(__name__)


class Tracker(Protocol):
    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...


class Log(Protocol):
    """What the loop logs through: a ``logging.Logger`` or Dagster's ``context.log``."""

    def info(self, msg: str) -> Any: ...


class TrainingInterrupted(RuntimeError):
    """``should_stop`` asked to stop; ``last.pt`` holds the finished epochs."""


def warmup_cosine(total_steps: int, warmup_steps: int, min_lr_ratio: float) -> Callable[[int], float]:
    """LR multiplier: linear from 1/warmup to 1, then cosine down to ``min_lr_ratio``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def epoch_line(config: TrainConfig, epoch: int, metrics: dict[str, float]) -> str:
    shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))
    return (
        f"{config.arch}/{config.category} fold {config.val_fold} epoch {epoch + 1}/{config.epochs}: {shown}"
    )


# ----------------------------------------------------------------------------- the loop


class _Fold:
    """Model, optimiser, schedule, loaders and loss of one fold, built the same way fresh or resumed."""

    def __init__(self, plan: FoldPlan):
        config = plan.config
        self.plan, self.config = plan, config
        self.device, self.amp_dtype, self.channels_last = resolve_device(
            config.device, config.precision, config.channels_last
        )
        self.precision = "bf16" if self.amp_dtype is not None else "fp32"
        crops = open_crops(plan.crops_path, config.in_chans, config.crop_px)
        rows = plan.rows
        n_rows = rows.train.height + rows.val.height + rows.test.height
        in_memory = (
            n_rows * int(np.prod(crops.shape[1:])) * crops.dtype.itemsize <= config.in_memory_max_bytes
        )

        def dataset(frame: pl.DataFrame, train: bool):
            return make_dataset(
                plan.crops_path,
                frame,
                train=train,
                augment=config.augment,
                seed=config.seed,
                flip_merge=config.flip_merge,
                category=config.category,
                in_memory=in_memory,
            )

        self.train_set = dataset(rows.train, True)
        self.loader_kwargs: dict[str, Any] = dict(
            collate_fn=batch_as_is, num_workers=config.num_workers, pin_memory=self.device.type == "cuda"
        )
        self.val_loader = self._eval_loader(dataset(rows.val, False))
        self.test_loader = self._eval_loader(dataset(rows.test, False)) if rows.test.height else None

        torch.manual_seed(config.seed)
        model = create_model(
            config.timm_name,
            config.in_chans,
            len(CLASS_NAMES),
            img_size=config.crop_px,
            pretrained=config.pretrained,
        )
        self.params = count_parameters(model)
        self.macs = count_macs(model, (1, config.in_chans, config.crop_px, config.crop_px))
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.model = model
        self.criterion = build_loss(config.loss, plan.class_weights, config.gamma, len(CLASS_NAMES)).to(
            self.device
        )
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        # Drop the ragged last batch: a batch of one breaks BatchNorm, and shuffling
        # means a different remainder sits out each epoch.
        self.drop_last = len(self.train_set) > config.batch_size
        steps = len(self.train_set) // config.batch_size if self.drop_last else 1
        self.steps_per_epoch = min(steps, config.max_train_batches or steps)
        schedule = warmup_cosine(
            self.steps_per_epoch * config.epochs,
            round(self.steps_per_epoch * config.warmup_epochs),
            config.min_lr_ratio,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)

    def _eval_loader(self, dataset) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size * 2,
            sampler=SequentialSampler(dataset),
            **self.loader_kwargs,
        )

    def train_epoch(self, epoch: int) -> tuple[float, int, float]:
        """One epoch of optimisation -> (mean train loss, images seen, seconds)."""
        config, model, device = self.config, self.model, self.device
        model.train()
        self.train_set.epoch = epoch
        shuffle = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        loader = DataLoader(
            self.train_set,
            batch_size=config.batch_size,
            drop_last=self.drop_last,
            sampler=RandomSampler(self.train_set, generator=shuffle),
            **self.loader_kwargs,
        )
        loss_sum = torch.zeros((), device=device)
        seen = 0
        started = time.perf_counter()
        for batch_number, (x, y) in enumerate(loader):
            if batch_number >= self.steps_per_epoch:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                logits = model(x)
            loss = self.criterion(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            loss_sum += loss.detach() * len(y)  # no per-batch host sync
            seen += len(y)
        train_loss = float(loss_sum) / max(seen, 1)  # syncs the device once
        return train_loss, seen, time.perf_counter() - started

    def predict(self, loader: DataLoader | None) -> tuple[np.ndarray, np.ndarray]:
        if loader is None:
            return np.zeros((0, len(CLASS_NAMES)), np.float32), np.zeros(0, np.int64)
        return predict_logits(self.model, loader, self.device, self.amp_dtype, self.channels_last)

    def validate(self) -> dict[str, float]:
        logits, labels = self.predict(self.val_loader)
        metrics = val_metrics(logits, labels, self.criterion)
        self.criterion.to(self.device)
        return metrics


def train_fold(
    plan: FoldPlan,
    *,
    tracker: Tracker | None = None,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    log: Log = module_log,
    mlflow_run_id: str | None = None,
    log_params: bool | None = None,
) -> FoldResult:
    """Train ``plan.config`` on the other folds' cv rows, choose the epoch on its own fold's rows.

    Writes ``last.pt`` (each epoch), ``best.pt`` and the fold's ``oof.parquet`` into ``plan.fold_dir``;
    predicts the test rows with the best weights. ``progress(epoch, epochs, metrics)`` runs after each
    epoch's checkpoint; ``should_stop()`` returning True then raises :class:`TrainingInterrupted`
    (rerun to resume). ``mlflow_run_id`` is stored in ``last.pt`` so that a resume logs into the same run.
    Params go to ``tracker`` when ``log_params`` (default: when not resuming, as a resumed run has them).
    """
    config = plan.config
    plan.fold_dir.mkdir(parents=True, exist_ok=True)
    on_cpu = resolve_device(config.device, config.precision, config.channels_last)[0].type == "cpu"
    with deterministic_cpu(on_cpu):
        fold = _Fold(plan)
        state = LoopState(mlflow_run_id=mlflow_run_id)
        if plan.resume is not None:
            state = checkpoint.restore(plan.resume, fold.model, fold.optimizer, fold.scheduler)
            state.mlflow_run_id = mlflow_run_id or state.mlflow_run_id
            if not state.done(config.epochs):
                log.info(
                    f"{config.arch}/{config.category} fold {config.val_fold}: resumed from epoch "
                    f"{state.next_epoch} of {config.epochs} ({plan.last_path})"
                )
        if tracker is not None and (plan.resume is None if log_params is None else log_params):
            tracker.log_params(
                {
                    **config.to_dict(),
                    "params": fold.params,
                    "macs": fold.macs,
                    "gmacs": round(fold.macs / 1e9, 4),
                    "precision": fold.precision,
                    "n_train": len(fold.train_set),
                    "n_val": plan.rows.val.height,
                    "n_test": plan.rows.test.height,
                }
            )
        resumed_from = plan.resumed_from_epoch
        train_images, train_seconds = _run_epochs(fold, state, tracker, progress, should_stop, log)

        if state.best_epoch < 0 or not plan.best_path.is_file():
            raise RuntimeError(f"{plan.fold_dir}: no best checkpoint after training")
        fold.model.load_state_dict(checkpoint.load_best_weights(plan.best_path))
        val_logits, _ = fold.predict(fold.val_loader)
        test_logits, _ = fold.predict(fold.test_loader)

    oof = with_probabilities(plan.rows.val, OOF_ID_COLUMNS, softmax(val_logits))
    write_parquet(oof, plan.oof_path)
    best_metrics = state.history[state.best_epoch]
    if tracker is not None:
        best = {f"best_{k}": v for k, v in best_metrics.items() if k.startswith("val_")}
        tracker.log_metrics(best | {"best_epoch": state.best_epoch, "epochs_run": len(state.history)})
    model = fold.model.to("cpu").to(memory_format=torch.contiguous_format).eval()
    return FoldResult(
        fold=config.val_fold,
        best_epoch=state.best_epoch,
        best_metrics=best_metrics,
        history=state.history,
        epochs_run=len(state.history),
        stopped_early=state.stopped_early,
        resumed_from_epoch=resumed_from,
        params=fold.params,
        macs=fold.macs,
        train_images_per_s=train_images / train_seconds if train_seconds > 0 else float("nan"),
        device=str(fold.device),
        precision=fold.precision,
        best_path=plan.best_path,
        last_path=plan.last_path,
        oof=oof,
        test_probs=softmax(test_logits),
        model=model,
    )


def _run_epochs(
    fold: _Fold,
    state: LoopState,
    tracker: Tracker | None,
    progress: Callable[[int, int, dict[str, float]], None] | None,
    should_stop: Callable[[], bool] | None,
    log: Log,
) -> tuple[int, float]:
    """Epochs from ``state.next_epoch`` until the last or early stop; -> (images, seconds) trained."""
    config, plan = fold.config, fold.plan
    train_images, train_seconds = 0, 0.0
    while not state.done(config.epochs):
        epoch = state.next_epoch
        train_loss, seen, seconds = fold.train_epoch(epoch)
        train_images, train_seconds = train_images + seen, train_seconds + seconds
        metrics = {"train_loss": train_loss, **fold.validate(), "lr": fold.optimizer.param_groups[0]["lr"]}
        state.history.append(metrics)
        if metrics["val_macro_recall"] > state.best_metric:
            state.best_metric, state.best_epoch, state.since_best = metrics["val_macro_recall"], epoch, 0
            checkpoint.save_best(plan.best_path, fold.model, epoch, metrics, config.to_dict())
        else:
            state.since_best += 1
        state.next_epoch = epoch + 1
        state.stopped_early = (
            config.patience > 0 and state.since_best >= config.patience and state.next_epoch < config.epochs
        )
        checkpoint.save_last(
            plan.last_path,
            state=state,
            resume_key=config.resume_key(),
            fingerprint=plan.fingerprint,
            model=fold.model,
            optimizer=fold.optimizer,
            scheduler=fold.scheduler,
        )
        if tracker is not None:
            tracker.log_metrics(metrics, step=epoch)
        log.info(epoch_line(config, epoch, metrics))
        if progress is not None:
            progress(epoch, config.epochs, metrics)
        if should_stop is not None and should_stop():
            raise TrainingInterrupted(f"stopped after epoch {epoch}; {plan.last_path} resumes it")
    return train_images, train_seconds
