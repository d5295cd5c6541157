"""Training augmentation of canvas batches, with the point targets moved alike (torch, batched).

In-plane: a random rotation, scale and shift (one affine per sample). Across depth: a shift
by whole channels and a mirror (patient left <-> right; the sided point channels swap with
it). Intensity: gamma, contrast and noise. Everything runs on the batch tensor, so a canvas
is resampled from the DICOMs once, not once per epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    rotate_deg: float = 10.0
    scale: float = 0.1  # +- share
    shift: float = 0.08  # +- share of the canvas side
    depth_shift: int = 1  # +- channels
    mirror: bool = True  # only for canvases with depth > 1
    gamma: float = 0.35  # log-uniform in [1 / (1 + g), 1 + g]
    contrast: float = 0.2
    noise: float = 0.04


def _affine(batch: int, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """(B, 2, 3) output -> input maps in normalised coordinates."""
    u = torch.rand(batch, 4, generator=generator) * 2 - 1
    angle = u[:, 0] * math.radians(cfg.rotate_deg)
    scale = 1 + u[:, 1] * cfg.scale
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    theta[:, 0, 2], theta[:, 1, 2] = u[:, 2] * 2 * cfg.shift, u[:, 3] * 2 * cfg.shift
    return theta


def augment_batch(
    images: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    *,
    depth_step_mm: float,
    mirror_swap: list[int] | None,
    cfg: AugmentConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augmented (images, targets, mask); targets (B, K, 3) are column, row (pixels) and depth mm.

    ``mirror_swap``: the point index each point becomes under a left-right mirror (None: no
    mirror). Points pushed off the canvas are masked out.
    """
    b, d, h, w = images.shape
    images, targets, mask = images.float(), targets.clone().float(), mask.clone()
    theta = _affine(b, cfg, generator)
    grid = F.affine_grid(theta, [b, d, h, w], align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Targets: input point = A out + t  ->  out = A^-1 (in - t), in normalised coordinates.
    size = torch.tensor([w, h], dtype=torch.float32)
    p_in = targets[..., :2] / size * 2 - 1
    a_inv = torch.linalg.inv(theta[:, :, :2])
    p_out = torch.einsum("bij,bkj->bki", a_inv, p_in - theta[:, None, :, 2])
    targets[..., :2] = (p_out + 1) / 2 * size
    inside = (targets[..., 0] >= 0) & (targets[..., 0] < w) & (targets[..., 1] >= 0) & (targets[..., 1] < h)
    mask = mask & inside

    if d > 1 and cfg.depth_shift > 0:
        shifts = torch.randint(-cfg.depth_shift, cfg.depth_shift + 1, (b,), generator=generator)
        for i, s in enumerate(shifts.tolist()):
            if s:
                images[i] = torch.roll(images[i], s, dims=0)
                if s > 0:
                    images[i, :s] = 0
                else:
                    images[i, s:] = 0
                targets[i, :, 2] += s * depth_step_mm
    if d > 1 and cfg.mirror and mirror_swap is not None:
        flip = torch.rand(b, generator=generator) < 0.5
        if flip.any():
            images[flip] = images[flip].flip(1)
            swapped_t = targets[flip][:, mirror_swap]
            swapped_t[..., 2] = -swapped_t[..., 2]
            targets[flip] = swapped_t
            mask[flip] = mask[flip][:, mirror_swap]

    gamma = torch.exp((torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1) * math.log1p(cfg.gamma))
    contrast = 1 + (torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1) * cfg.contrast
    images = images.clamp(0, 1) ** gamma * contrast
    sigma = torch.rand(b, 1, 1, 1, generator=generator) * cfg.noise
    images = images + torch.randn(images.shape, generator=generator) * sigma
    return images.clamp(0, 1.5), targets, mask
