"""Predictions of a model over a loader, the validation metrics they give, and prediction tables."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
from sklearn.metrics import recall_score
from torch import nn
from torch.utils.data import DataLoader

from lss_pipeline.core.constants import CLASS_NAMES, PROB_COLUMNS


def recalls(labels: np.ndarray, preds: np.ndarray) -> tuple[float, list[float]]:
    """Macro and per-class recall; a class absent from ``labels`` has no recall and the macro skips it."""
    per_class = recall_score(labels, preds, labels=[0, 1, 2], average=None, zero_division=np.nan)
    macro = float(np.nanmean(per_class)) if not np.all(np.isnan(per_class)) else float("nan")
    return macro, [float(r) for r in per_class]


def predict_logits(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (float32) and labels of a whole loader."""
    model.eval()
    logits_list, labels_list = [], []
    with torch.inference_mode():
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(x)
            logits_list.append(logits.float().cpu())
            labels_list.append(y)
    if not logits_list:
        return np.zeros((0, len(CLASS_NAMES)), np.float32), np.zeros(0, np.int64)
    return torch.cat(logits_list).numpy(), torch.cat(labels_list).numpy()


def val_metrics(logits: np.ndarray, labels: np.ndarray, criterion: nn.Module) -> dict[str, float]:
    known = labels >= 0
    with torch.no_grad():
        val_loss = float(criterion.cpu()(torch.from_numpy(logits[known]), torch.from_numpy(labels[known])))
    macro, per_class = recalls(labels[known], logits[known].argmax(1))
    metrics = {"val_loss": val_loss, "val_macro_recall": macro}
    metrics.update({f"val_recall_{name}": r for name, r in zip(CLASS_NAMES, per_class, strict=True)})
    return metrics


def softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy().astype(np.float64)


def with_probabilities(rows: pl.DataFrame, id_columns: tuple[str, ...], probs: np.ndarray) -> pl.DataFrame:
    return rows.select(id_columns).with_columns(
        [pl.Series(name, probs[:, i]) for i, name in enumerate(PROB_COLUMNS)]
    )
