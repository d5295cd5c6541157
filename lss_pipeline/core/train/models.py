"""Model factory: timm models by name with ``in_chans`` = slices and 3 severity classes.

Pretrained weights come only from a local file (no hub downloads at run time).
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from lss_pipeline.core.constants import ARCHITECTURES, CLASS_NAMES
from lss_pipeline.core.settings import PROFILES

log = logging.getLogger(__name__)

# Names that are not timm registry names but a timm model with changed hyper-parameters.
# The demo Swin: Swin-T's code with 3 stages, narrower, window 4, so it runs at 64x64
# crops on a CPU (patch 4 -> feature maps 16, 8, 4; the window divides each).
MODEL_ALIASES: dict[str, tuple[str, dict]] = {
    "swin_demo_patch4_window4": (
        "swin_tiny_patch4_window7_224",
        # No stochastic depth: with a few hundred crops and 8 epochs it only slows learning
        # (SBS demo set: macro recall 0.33 -> 0.55 without it).
        {
            "embed_dim": 32,
            "depths": (2, 2, 2),
            "num_heads": (2, 4, 8),
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
    pretrained_path: str | os.PathLike | None = None,
    *,
    profile: str = "demo",
) -> nn.Module:
    """Build a timm model (random init, or weights from ``pretrained_path``).

    ``img_size`` is passed to models that need it (Swin, ViT); CNNs ignore it.
    """
    name = resolve_timm_name(arch_or_timm_name, profile)
    base_name, extra_kwargs = MODEL_ALIASES.get(name, (name, {}))
    kwargs = dict(extra_kwargs, in_chans=in_chans, num_classes=num_classes)
    if not timm.is_model(base_name):
        raise ValueError(f"unknown model name {name!r}: not a timm model nor one of {sorted(MODEL_ALIASES)}")
    if img_size is not None:
        try:
            model = timm.create_model(base_name, pretrained=False, img_size=img_size, **kwargs)
        except TypeError as exc:
            # CNNs take any input size and have no img_size argument.
            if "img_size" not in str(exc):
                raise
            model = timm.create_model(base_name, pretrained=False, **kwargs)
    else:
        model = timm.create_model(base_name, pretrained=False, **kwargs)
    if pretrained_path is not None:
        load_pretrained(model, pretrained_path)
    return CropClassifier(model)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    state: Any
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    # Unwrap the usual containers (our best.pt uses "model").
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    # Our own checkpoints hold a CropClassifier: its backbone keys are the timm keys.
    return {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}


def adapt_conv_weight(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """RGB first-conv weight (O, 3, k, k) -> (O, in_chans, k, k).

    Each new channel gets the sum of the RGB kernels divided by ``in_chans``: a gray image
    repeated over the channels then gives the same activation as the RGB model saw.
    """
    summed = weight.float().sum(dim=1, keepdim=True)
    return (summed.repeat(1, in_chans, *([1] * (weight.ndim - 2))) / in_chans).to(weight.dtype)


def load_pretrained(model: nn.Module, path: str | os.PathLike) -> list[str]:
    """Load a local state dict into ``model``; returns the model keys left at random init.

    The first conv is adapted when the file has 3 input channels and the model another
    count; the classifier head is dropped when its shape differs. Any other shape
    mismatch is an error naming the key.
    """
    path = Path(path)
    if isinstance(model, CropClassifier):
        model = model.backbone
    state = _read_state_dict(path)
    own = model.state_dict()
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    classifier = cfg.get("classifier")
    head_prefixes = (
        tuple(classifier) if isinstance(classifier, (list, tuple)) else ((classifier,) if classifier else ())
    )
    first_conv = cfg.get("first_conv")
    first_convs = (
        tuple(first_conv) if isinstance(first_conv, (list, tuple)) else ((first_conv,) if first_conv else ())
    )
    filtered: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in own:
            continue
        target = own[key]
        if value.shape == target.shape:
            filtered[key] = value
        elif any(key.startswith(prefix) for prefix in head_prefixes):
            log.info(
                "dropping head weight %s: %s in file, %s in model",
                key,
                tuple(value.shape),
                tuple(target.shape),
            )
        elif (
            value.ndim == 4
            and value.shape[1] == 3
            and value.shape[0] == target.shape[0]
            and value.shape[2:] == target.shape[2:]
            and any(key.startswith(p) for p in first_convs)
        ):
            filtered[key] = adapt_conv_weight(value, target.shape[1])
        else:
            raise ValueError(
                f"{path}: weight {key!r} has shape {tuple(value.shape)}, model needs {tuple(target.shape)}"
            )
    if not filtered:
        raise ValueError(f"{path}: no weight matches the model {type(model).__name__}")
    result = model.load_state_dict(filtered, strict=False)
    missing = list(result.missing_keys)
    if missing:
        log.info("%d model weights not in %s (left at init): %s", len(missing), path, missing[:5])
    return missing


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
