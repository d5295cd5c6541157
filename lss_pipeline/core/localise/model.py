"""The localiser network: a small U-Net that puts one heatmap (and a depth estimate) per point.

Input: a canvas batch (B, channels, size, size). Output per point channel ``k``: a spatial
softmax over a (size / 2)² grid and, per cell, a softmax over the canvas's depth bins (the
depth channels' positions). The point is the probability-weighted mean of the cells around
the peak (sub-cell precision), its depth the same mean of each cell's expected depth, its
confidence the probability mass there. Depth as bins, not a regressed number: the net only
has to say which channel shows the structure, which it learns in a few epochs.

:class:`PointLocaliser` is what gets registered in MLflow: ``forward(canvas)`` returns
(B, K, 4) = column, row (canvas pixels), depth (mm), confidence; any batch size, ``.eval()``
works. Training uses :meth:`PointLocaliser.raw` and :func:`point_loss`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 2  # heatmap cell = 2 canvas pixels
PEAK_RADIUS = 2  # cells around the peak that the point is the mean of


def _conv(in_ch: int, out_ch: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)
    )


class HeatmapUNet(nn.Module):
    """Encoder to 1/32, decoder back to 1/2; heads: K heatmap logits, K x bins depth logits."""

    def __init__(self, in_channels: int, n_points: int, depth_bins: int, widths: Sequence[int]):
        super().__init__()
        w = list(widths)
        self.n_points, self.depth_bins = n_points, depth_bins
        self.encoders = nn.ModuleList()
        prev = in_channels
        for i, width in enumerate(w):
            layers = [_conv(prev, width, 2), _conv(width, width)]
            if i == len(w) - 1:  # the coarsest level sees the whole canvas: it tells levels apart
                layers.append(_conv(width, width))
            self.encoders.append(nn.Sequential(*layers))
            prev = width
        self.decoders = nn.ModuleList(_conv(w[i + 1] + w[i], w[i]) for i in reversed(range(len(w) - 1)))
        self.heat = nn.Conv2d(w[0], n_points, 1)
        self.depth = nn.Conv2d(w[0], n_points * depth_bins, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        y = skips[-1]
        for decoder, skip in zip(self.decoders, reversed(skips[:-1])):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = decoder(torch.cat([y, skip], dim=1))
        b, _, h, w = y.shape
        return self.heat(y), self.depth(y).view(b, self.n_points, self.depth_bins, h, w)


def cell_centres(n: int, device: torch.device) -> torch.Tensor:
    """Canvas-pixel coordinate of every heatmap cell centre along one axis."""
    return (torch.arange(n, device=device, dtype=torch.float32) + 0.5) * STRIDE


def expected_depth(depth_logits: torch.Tensor, bin_mm: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w) expected depth (mm) of every cell from its (B, K, bins, h, w) depth logits."""
    prob = torch.softmax(depth_logits.float(), dim=2)
    return (prob * bin_mm.view(1, 1, -1, 1, 1)).sum(2)


def decode(
    logits: torch.Tensor, depth_logits: torch.Tensor, bin_mm: torch.Tensor, radius: int = PEAK_RADIUS
) -> torch.Tensor:
    """(B, K, 4): column, row, depth, confidence from heatmap logits (B, K, h, w) and depth logits."""
    b, k, h, w = logits.shape
    prob = torch.softmax(logits.float().flatten(2), dim=2).view(b, k, h, w)
    peak = prob.flatten(2).argmax(dim=2)
    py, px = peak // w, peak % w
    ys = torch.arange(h, device=logits.device).view(1, 1, h, 1)
    xs = torch.arange(w, device=logits.device).view(1, 1, 1, w)
    window = ((ys - py[..., None, None]).abs() <= radius) & ((xs - px[..., None, None]).abs() <= radius)
    local = prob * window
    mass = local.flatten(2).sum(2).clamp_min(1e-12)
    col = (local * cell_centres(w, logits.device).view(1, 1, 1, w)).flatten(2).sum(2) / mass
    row = (local * cell_centres(h, logits.device).view(1, 1, h, 1)).flatten(2).sum(2) / mass
    dep = (local * expected_depth(depth_logits, bin_mm)).flatten(2).sum(2) / mass
    return torch.stack([col, row, dep, mass], dim=2)


def depth_bins_mm(canvas: dict[str, float | int] | None) -> torch.Tensor:
    """Depth (mm) of every depth channel of the canvas; one bin at 0 for a single-slice canvas."""
    depth = int((canvas or {}).get("depth", 1))
    step = float((canvas or {}).get("depth_step_mm", 0.0))
    return (torch.arange(depth, dtype=torch.float32) - (depth - 1) / 2.0) * step


class PointLocaliser(nn.Module):
    """The registered module: canvas batch -> (B, K, 4) column, row, depth mm, confidence."""

    def __init__(
        self,
        in_channels: int,
        n_points: int,
        widths: Sequence[int] = (24, 32, 48, 64, 96),
        canvas: dict[str, float | int] | None = None,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.n_points = n_points
        self.widths = tuple(widths)
        self.canvas = dict(canvas or {})  # the CanvasSpec fields the model was trained on
        bins = depth_bins_mm(self.canvas)
        self.net = HeatmapUNet(in_channels, n_points, len(bins), widths)
        self.bin_mm: torch.Tensor
        self.register_buffer("bin_mm", bins)
        # Axial: how far (mm, along the stack normal) the labelled slice sits from the canal point.
        self.depth_offset_mm: torch.Tensor
        self.register_buffer("depth_offset_mm", torch.zeros(()))

    def raw(self, canvas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(canvas)

    def forward(self, canvas: torch.Tensor) -> torch.Tensor:
        logits, depth_logits = self.net(canvas)
        return decode(logits, depth_logits, self.bin_mm)


def point_loss(
    logits: torch.Tensor,
    depth_logits: torch.Tensor,
    bin_mm: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    *,
    sigma_px: float,
    mm_per_px: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Heatmap cross-entropy against a Gaussian at the target, L1 (mm) of the expected point, and
    the depth bins' cross-entropy against a Gaussian at the target depth, weighted by the target heatmap.

    ``target`` (B, K, 3): column, row (canvas px), depth mm; ``mask`` (B, K): which points exist.
    """
    b, k, h, w = logits.shape
    valid = mask.bool()
    if not valid.any():
        zero = logits.sum() * 0.0 + depth_logits.sum() * 0.0
        return zero, {"ce": 0.0, "l1_mm": 0.0, "depth_l1_mm": 0.0}
    xs = cell_centres(w, logits.device).view(1, 1, 1, w)
    ys = cell_centres(h, logits.device).view(1, 1, h, 1)
    tx, ty, td = target[..., 0, None, None], target[..., 1, None, None], target[..., 2]
    gauss = torch.exp(-((xs - tx) ** 2 + (ys - ty) ** 2) / (2 * sigma_px**2))
    gauss = gauss / gauss.flatten(2).sum(2).clamp_min(1e-12)[..., None, None]
    log_prob = torch.log_softmax(logits.float().flatten(2), dim=2).view(b, k, h, w)
    ce = -(gauss * log_prob).flatten(2).sum(2)
    prob = log_prob.exp()
    ex = (prob * xs).flatten(2).sum(2)
    ey = (prob * ys).flatten(2).sum(2)
    l1 = ((ex - target[..., 0]).abs() + (ey - target[..., 1]).abs()) * mm_per_px
    loss = ce[valid].mean() + 0.1 * l1[valid].mean()

    n_bins = depth_logits.shape[2]
    if n_bins > 1:
        step = float(bin_mm[1] - bin_mm[0])
        bin_target = torch.exp(-((bin_mm.view(1, 1, -1) - td[..., None]) ** 2) / (2 * (0.6 * step) ** 2))
        bin_target = bin_target / bin_target.sum(2, keepdim=True).clamp_min(1e-12)  # (B, K, bins)
        depth_log_prob = torch.log_softmax(depth_logits.float(), dim=2)  # (B, K, bins, h, w)
        depth_ce_cells = -(bin_target[..., None, None] * depth_log_prob).sum(2)  # (B, K, h, w)
        depth_ce = (gauss * depth_ce_cells).flatten(2).sum(2)  # at the target, as the heatmap spreads it
        cell_depth = (depth_log_prob.exp() * bin_mm.view(1, 1, -1, 1, 1)).sum(2)
        ed = (prob * cell_depth).flatten(2).sum(2)
        dl1 = (ed - td).abs()
        loss = loss + depth_ce[valid].mean()
    else:
        dl1 = torch.zeros_like(l1)
    return loss, {
        "ce": float(ce[valid].mean().detach()),
        "l1_mm": float(l1[valid].mean().detach()),
        "depth_l1_mm": float(dl1[valid].mean().detach()),
    }
