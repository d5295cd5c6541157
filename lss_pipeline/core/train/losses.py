"""Losses against class imbalance: weighted cross-entropy and weighted focal loss."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LOSS_NAMES: tuple[str, ...] = ("weighted_ce", "focal")


def _weight_buffer(weights: Sequence[float] | torch.Tensor | None, num_classes: int) -> torch.Tensor:
    if weights is None:
        return torch.ones(num_classes, dtype=torch.float32)
    tensor = torch.as_tensor(weights, dtype=torch.float32).flatten()
    if tensor.numel() != num_classes:
        raise ValueError(f"expected {num_classes} class weights, got {tensor.numel()}")
    if not torch.isfinite(tensor).all() or (tensor <= 0).any():
        raise ValueError(f"class weights must be finite and positive, got {tensor.tolist()}")
    return tensor


class WeightedCrossEntropyLoss(nn.Module):
    """Cross-entropy, mean over samples weighted by their class weight (as torch's ``weight``)."""

    weight: torch.Tensor

    def __init__(self, weights: Sequence[float] | torch.Tensor | None = None, num_classes: int = 3):
        super().__init__()
        self.register_buffer("weight", _weight_buffer(weights, num_classes))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Loss in fp32 even under bf16 autocast: log-softmax of bf16 logits loses too much.
        return F.cross_entropy(logits.float(), target, weight=self.weight)


class WeightedFocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017) ``-w_y (1 - p_y)^gamma log p_y``, normalised by ``sum w_y``.

    The same normalisation as weighted cross-entropy, so ``gamma = 0`` gives exactly that.
    """

    weight: torch.Tensor

    def __init__(
        self, weights: Sequence[float] | torch.Tensor | None = None, gamma: float = 2.0, num_classes: int = 3
    ):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.register_buffer("weight", _weight_buffer(weights, num_classes))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_prob = F.log_softmax(logits.float(), dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
        prob = log_prob.exp()
        sample_weight = self.weight[target]
        focal = (1.0 - prob).clamp_min(0.0).pow(self.gamma) if self.gamma else torch.ones_like(prob)
        return -(sample_weight * focal * log_prob).sum() / sample_weight.sum()


def build_loss(
    name: str, weights: Sequence[float] | torch.Tensor | None = None, gamma: float = 2.0, num_classes: int = 3
) -> nn.Module:
    """``weighted_ce`` or ``focal``; ``weights`` None means all ones."""
    if name == "weighted_ce":
        return WeightedCrossEntropyLoss(weights, num_classes)
    if name == "focal":
        return WeightedFocalLoss(weights, gamma, num_classes)
    raise ValueError(f"unknown loss {name!r}; expected one of {LOSS_NAMES}")
