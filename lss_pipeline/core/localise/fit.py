"""Fit a :class:`~lss_pipeline.core.localise.model.PointLocaliser` on canvas samples (CPU or GPU)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from lss_pipeline.core.localise.augment import AugmentConfig, augment_batch
from lss_pipeline.core.localise.data import Sample
from lss_pipeline.core.localise.model import PointLocaliser, point_loss
from lss_pipeline.core.localise.spec import LocaliserSpec

log = logging.getLogger(__name__)
MetricsFn = Callable[[Mapping[str, float], int], None]


@dataclass(frozen=True)
class FitConfig:
    epochs: int = 40
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    widths: tuple[int, ...] = (24, 32, 48, 64, 96)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    device: str = "cpu"

    def as_params(self) -> dict[str, object]:
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "seed": self.seed,
            "widths": ",".join(map(str, self.widths)),
            "device": self.device,
        }


@dataclass
class FitResult:
    model: PointLocaliser
    history: list[dict[str, float]]
    seconds: float
    n_samples: int


def stack_samples(samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(np.stack([s.image for s in samples]))
    targets = torch.from_numpy(np.stack([s.target for s in samples]))
    masks = torch.from_numpy(np.stack([s.mask for s in samples]))
    return images, targets, masks


def fit_localiser(
    spec: LocaliserSpec,
    samples: list[Sample],
    config: FitConfig,
    *,
    on_epoch: MetricsFn | None = None,
) -> FitResult:
    """Train from scratch on ``samples``; every epoch's mean loss and point error (mm) in ``history``."""
    if not samples:
        raise ValueError(
            f"{spec.category}: no localiser training samples (no labelled points on readable series)"
        )
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    device = torch.device(config.device)
    images, targets, masks = stack_samples(samples)
    model = PointLocaliser(images.shape[1], spec.n_points, config.widths, canvas=spec.canvas.as_dict()).to(
        device
    )
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(samples) / config.batch_size))
    total = config.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.lr, total_steps=total, pct_start=0.15
    )
    history: list[dict[str, float]] = []
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(samples), generator=generator)
        sums = {"loss": 0.0, "ce": 0.0, "l1_mm": 0.0, "depth_l1_mm": 0.0}
        for start in range(0, len(samples), config.batch_size):
            idx = order[start : start + config.batch_size]
            x, t, m = augment_batch(
                images[idx],
                targets[idx],
                masks[idx],
                depth_step_mm=spec.canvas.depth_step_mm,
                mirror_swap=spec.mirror_swap,
                cfg=config.augment,
                generator=generator,
            )
            logits, depth_logits = model.raw(x.to(device))
            loss, parts = point_loss(
                logits,
                depth_logits,
                model.bin_mm,
                t.to(device),
                m.to(device),
                sigma_px=spec.sigma_px,
                mm_per_px=spec.canvas.mm_per_px,
            )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            n = len(idx)
            sums["loss"] += float(loss.detach()) * n
            for key in ("ce", "l1_mm", "depth_l1_mm"):
                sums[key] += parts[key] * n
        metrics = {f"train_{k}": v / len(samples) for k, v in sums.items()}
        history.append({"epoch": float(epoch), **metrics})
        if on_epoch is not None:
            on_epoch(metrics, epoch)
        if epoch == config.epochs - 1 or epoch % 5 == 0:
            log.info(
                "%s localiser epoch %d/%d: loss %.3f, point error %.1f mm, depth error %.1f mm",
                spec.category, epoch + 1, config.epochs, metrics["train_loss"], metrics["train_l1_mm"],
                metrics["train_depth_l1_mm"],
            )  # fmt: skip
    model.eval()
    return FitResult(model.cpu(), history, time.perf_counter() - started, len(samples))


def predict_samples(model: PointLocaliser, samples: list[Sample], batch_size: int = 16) -> np.ndarray:
    """(N, K, 4) column, row, depth, confidence for each sample's canvas."""
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(samples), batch_size):
            x = torch.from_numpy(np.stack([s.image for s in samples[start : start + batch_size]])).float()
            out.append(model(x).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0, 4), np.float32)
