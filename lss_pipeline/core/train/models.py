"""Model factory: timm models by name with ``in_chans`` = slices and 3 severity classes.

Weights start at random (``pretrained="none"``), from timm's own pretrained weights (``"timm"``:
the Hugging Face hub and its local cache, see ``pretrained.py``) or from a local file.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings

import timm
import torch
from torch import nn

from lss_pipeline.core.constants import ARCHITECTURES, CLASS_NAMES
from lss_pipeline.core.settings import PROFILES
from lss_pipeline.core.train.pretrained import (
    PRETRAINED_NONE,
    PRETRAINED_TIMM,
    load_pretrained,
    load_timm_pretrained,
    timm_model,
)

log = logging.getLogger(__name__)

# Names that are not timm registry names but a timm model with changed hyper-parameters: the
# demo's three families at one size (~3 M parameters, ~0.05 GMACs at 5x64x64; fvcore MACs), so
# that the comparison is of designs, not of sizes. ConvNeXt is timm's own convnext_atto (3.4 M).
MODEL_ALIASES: dict[str, tuple[str, dict]] = {
    # ResNet-18's blocks and depths (2, 2, 2, 2) at half width: 2.8 M parameters.
    "resnet18_w32": ("resnet18", {"channels": (32, 64, 128, 256), "stem_width": 32}),
    # Swin-T's depths (2, 2, 6, 2) and head width (32 per head) at a third of its width, window 4
    # so it runs at 64 px crops (patch 4 -> feature maps 16, 8, 4, 2; timm shrinks the window of
    # the last stage to its 2x2 map): 3.1 M parameters. No stochastic depth: with a few hundred
    # crops and a few epochs it only slows learning.
    "swin_t_w32_window4": (
        "swin_tiny_patch4_window7_224",
        {
            "embed_dim": 32,
            "depths": (2, 2, 6, 2),
            "num_heads": (1, 2, 4, 8),
            "window_size": 4,
            "drop_path_rate": 0.0,
        },
    ),
}


# Crops are in [0, 1] (robust percentiles); centre them as ImageNet-style normalisation would.
# Without it ConvNeXt and Swin (LayerNorm, no BatchNorm at the stem) stay at chance for
# many epochs on the demo set while ResNet learns (measured: ConvNeXt SCS 0.33 -> 0.80).
INPUT_MEAN = 0.5
INPUT_STD = 0.25


class CropClassifier(nn.Module):
    """A timm backbone behind input normalisation, so the model takes crops in [0, 1] as stored."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, backbone: nn.Module, mean: float = INPUT_MEAN, std: float = INPUT_STD):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(float(mean)), persistent=False)
        self.register_buffer("std", torch.tensor(float(std)), persistent=False)

    @property
    def pretrained_cfg(self) -> dict:
        return getattr(self.backbone, "pretrained_cfg", {}) or {}

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.backbone((crops - self.mean) / self.std)


def resolve_timm_name(arch_or_timm_name: str, profile: str = "demo") -> str:
    """An architecture key (``convnext``/``resnet``/``swin``) -> the profile's model name."""
    if arch_or_timm_name in ARCHITECTURES:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
        return PROFILES[profile].models[arch_or_timm_name]
    return arch_or_timm_name


def create_model(
    arch_or_timm_name: str,
    in_chans: int,
    num_classes: int = len(CLASS_NAMES),
    img_size: int | None = None,
    pretrained: str | os.PathLike = PRETRAINED_NONE,
    *,
    profile: str = "demo",
) -> nn.Module:
    """Build a timm model: random init (``"none"``), timm's pretrained weights (``"timm"``) or a file.

    ``img_size`` is passed to models that need it (Swin, ViT); CNNs ignore it. Pretrained weights
    have their RGB first conv adapted to ``in_chans`` and their classifier head left at init.
    """
    name = resolve_timm_name(arch_or_timm_name, profile)
    base_name, extra_kwargs = MODEL_ALIASES.get(name, (name, {}))
    kwargs = dict(extra_kwargs, in_chans=in_chans, num_classes=num_classes)
    if not timm.is_model(base_name):
        raise ValueError(f"unknown model name {name!r}: not a timm model nor one of {sorted(MODEL_ALIASES)}")
    model = timm_model(base_name, img_size, **kwargs)
    if str(pretrained) == PRETRAINED_TIMM:
        if name in MODEL_ALIASES:
            raise ValueError(
                f"{name!r} is a resized timm model: timm has no weights for it (use none or a file)"
            )
        load_timm_pretrained(model, base_name, img_size)
    elif str(pretrained) != PRETRAINED_NONE:
        load_pretrained(model, pretrained)
    return CropClassifier(model)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulate operations of one forward pass at ``input_shape`` (with batch dim).

    fvcore's "flop" counter counts one multiply-add as one, so its total is MACs.
    """
    # fvcore's import and jit tracing warn about torch.jit deprecation and traced branches.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        # A CPU fp32 copy in eval mode: the count must not touch the training model's state.
        probe = copy.deepcopy(model).to("cpu", dtype=torch.float32)
        probe = probe.to(memory_format=torch.contiguous_format).eval()
        with torch.no_grad():
            analysis = FlopCountAnalysis(probe, torch.zeros(*input_shape))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            macs = int(analysis.total())
    if macs <= 0:
        raise RuntimeError(f"fvcore counted no MACs for {type(model).__name__} at {input_shape}")
    return macs
