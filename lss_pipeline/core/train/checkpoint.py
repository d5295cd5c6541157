"""Fold checkpoints: ``last.pt`` resumes a training exactly, ``best.pt`` holds the chosen epoch's weights.

``last.pt`` is written atomically after every epoch with everything a rerun needs to end with
the same weights as an uninterrupted run (model, optimizer, scheduler, RNG states, early-stopping
counters, history, and the MLflow run it logs into). It resumes only a training of the same
config (``TrainConfig.resume_key``) on the same data (``data_fingerprint``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lss_pipeline.core.atomic import atomic_path

CHECKPOINT_VERSION = 2


def rng_state() -> dict[str, Any]:
    np_state: tuple = np.random.get_state(legacy=True)  # type: ignore[assignment]
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    python_state = state["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))


def save_atomic(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


@dataclass
class LoopState:
    """Where a fold's training stands after its last finished epoch."""

    next_epoch: int = 0
    best_metric: float = -float("inf")
    best_epoch: int = -1  # 0-based; -1 before the first epoch
    since_best: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    mlflow_run_id: str | None = None  # the fold's MLflow run, resumed in place

    def done(self, epochs: int) -> bool:
        return self.stopped_early or self.next_epoch >= epochs


def save_last(
    path: Path,
    *,
    state: LoopState,
    resume_key: dict[str, Any],
    fingerprint: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> None:
    save_atomic(
        {
            "version": CHECKPOINT_VERSION,
            "resume_key": resume_key,
            "data": fingerprint,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": state.next_epoch - 1,
            "best_metric": state.best_metric,
            "best_epoch": state.best_epoch,
            "since_best": state.since_best,
            "stopped_early": state.stopped_early,
            "history": state.history,
            "mlflow_run_id": state.mlflow_run_id or "",
            "rng": rng_state(),
        },
        path,
    )


def read_resumable(path: Path, resume_key: dict[str, Any], fingerprint: str) -> dict[str, Any] | None:
    """``last.pt``'s content when it continues this config on this data, else None."""
    if not path.is_file():
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if (
        ckpt.get("version") != CHECKPOINT_VERSION
        or ckpt.get("resume_key") != resume_key
        or ckpt.get("data") != fingerprint
    ):
        return None
    return ckpt


def restore(
    ckpt: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> LoopState:
    """Load a resumable checkpoint into the loop's objects and the RNGs; the loop state to go on from."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    set_rng_state(ckpt["rng"])
    return LoopState(
        next_epoch=ckpt["epoch"] + 1,
        best_metric=ckpt["best_metric"],
        best_epoch=ckpt["best_epoch"],
        since_best=ckpt["since_best"],
        stopped_early=ckpt["stopped_early"],
        history=list(ckpt["history"]),
        mlflow_run_id=ckpt.get("mlflow_run_id") or None,
    )


def save_best(
    path: Path, model: torch.nn.Module, epoch: int, metrics: dict[str, float], config: dict
) -> None:
    save_atomic({"model": model.state_dict(), "epoch": epoch, "metrics": metrics, "config": config}, path)


def load_best_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"best checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)["model"]
