"""The fold ensemble: every fold model of a partition behind one forward, as registered in MLflow.

The output is the log of the mean of the fold models' softmax: ``softmax(output)`` is the mean
probability (what the test predictions hold) and ``argmax`` the ensemble's grade, so callers
treat it like any model's logits. Any batch size; ``.eval()`` works (it is a plain ``nn.Module``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from lss_pipeline.core.constants import CLASS_NAMES
from lss_pipeline.core.paths import Paths
from lss_pipeline.core.train import checkpoint
from lss_pipeline.core.train.models import create_model


class FoldEnsemble(nn.Module):
    """Fold models averaged in probability space; returns log of the mean softmax, (batch, classes)."""

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("a fold ensemble needs at least one model")
        self.folds = nn.ModuleList(models)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        log_probs = torch.stack([torch.log_softmax(model(crops).float(), dim=1) for model in self.folds])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.folds))


def load_fold_model(fold_dir: str | os.PathLike) -> nn.Module:
    """A fold's best weights (``best.pt``) in the architecture its config names, CPU, eval mode."""
    path = Paths.checkpoint_best(Path(fold_dir))
    if not path.is_file():
        raise FileNotFoundError(f"best checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    config = ckpt["config"]
    n_classes = len(CLASS_NAMES)
    model = create_model(config["timm_name"], config["in_chans"], n_classes, img_size=config["crop_px"])
    model.load_state_dict(checkpoint.load_best_weights(path))
    return model.eval()


def load_fold_ensemble(paths: Paths, arch: str, category: str, folds: Sequence[int]) -> FoldEnsemble:
    """The ensemble of ``folds`` from a trained partition's fold folders (no MLflow needed)."""
    models = [load_fold_model(paths.model_fold_dir(arch, category, k)) for k in folds]
    return FoldEnsemble(models).eval()
