"""Pretrained weights for a backbone: timm's own (Hugging Face hub and its cache) or a local file.

``pretrained: timm`` asks timm for the weights exactly as ``timm.create_model(name, pretrained=True)``
does: the Hugging Face hub when online, the local hub cache (``HF_HOME`` / ``HF_HUB_CACHE``) when
``HF_HUB_OFFLINE=1``. Either way the RGB weights then go through the same adaptation as a file's:
the first conv becomes ``in_chans`` channels (sum of the RGB kernels / ``in_chans``), the classifier
head of another class count is left at its init, any other shape mismatch is an error naming the key.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

log = logging.getLogger(__name__)

PRETRAINED_NONE = "none"
PRETRAINED_TIMM = "timm"


def timm_model(base_name: str, img_size: int | None, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` with ``img_size`` for the models that take it (Swin, ViT); CNNs ignore it."""
    if img_size is not None:
        try:
            return timm.create_model(base_name, img_size=img_size, **kwargs)
        except TypeError as exc:
            if "img_size" not in str(exc):
                raise
    return timm.create_model(base_name, **kwargs)


def validate_spec(pretrained: str) -> None:
    """``none``, ``timm`` or an existing weights file."""
    if pretrained in (PRETRAINED_NONE, PRETRAINED_TIMM):
        return
    if not Path(pretrained).is_file():
        raise FileNotFoundError(
            f"pretrained {pretrained!r}: expected 'none', 'timm' or an existing weights file (not found)"
        )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
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


def _prefixes(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,) if value else ()


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> list[str]:
    """Load RGB ``state`` into a timm ``model`` (or a wrapper with ``.backbone``); -> keys left at init."""
    model = getattr(model, "backbone", model)
    own = model.state_dict()
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    head_prefixes, first_convs = _prefixes(cfg.get("classifier")), _prefixes(cfg.get("first_conv"))
    filtered: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in own:
            continue
        target = own[key]
        if value.shape == target.shape:
            filtered[key] = value
        elif any(key.startswith(prefix) for prefix in head_prefixes):
            shapes = (tuple(value.shape), tuple(target.shape))
            log.info("dropping head weight %s: %s in %s, %s in model", key, shapes[0], source, shapes[1])
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
                f"{source}: weight {key!r} has shape {tuple(value.shape)}, model needs {tuple(target.shape)}"
            )
    if not filtered:
        raise ValueError(f"{source}: no weight matches the model {type(model).__name__}")
    missing = list(model.load_state_dict(filtered, strict=False).missing_keys)
    if missing:
        log.info("%d model weights not in %s (left at init): %s", len(missing), source, missing[:5])
    return missing


def load_pretrained(model: nn.Module, path: str | os.PathLike) -> list[str]:
    """Load a local state dict (``.safetensors``, ``.pth``, our ``best.pt``) into ``model``."""
    path = Path(path)
    return load_state(model, read_state_dict(path), str(path))


def load_timm_pretrained(model: nn.Module, base_name: str, img_size: int | None = None) -> list[str]:
    """Load the weights timm resolves for ``base_name`` (hub or local cache) into ``model``."""
    try:
        # RGB, timm's own head: the weights as published, resolved by timm itself.
        source = timm_model(base_name, img_size, pretrained=True)
    except Exception as exc:  # hub errors are many (offline, not cached, gated, no weights at all)
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
        hint = (
            "HF_HUB_OFFLINE is set and the weights are not in the local Hugging Face cache; download them "
            f"once where there is network: python -c \"import timm; timm.create_model('{base_name}', "
            'pretrained=True)" (same HF_HOME), or give a weights file'
            if offline
            else "no network and no cached copy? set HF_HUB_OFFLINE=1 with a filled cache, or give a file"
        )
        raise RuntimeError(
            f"pretrained: timm could not load weights for {base_name!r}: {exc}. {hint}"
        ) from exc
    hub_id = (getattr(source, "pretrained_cfg", {}) or {}).get("hf_hub_id") or base_name
    log.info("pretrained weights for %s from timm (%s)", base_name, hub_id)
    return load_state(model, source.state_dict(), f"timm:{hub_id}")
