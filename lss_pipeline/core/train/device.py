"""Where and how precisely a training runs: device, autocast dtype, memory format, CPU determinism."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def resolve_device(
    device: str, precision: str, channels_last: bool | None
) -> tuple[torch.device, torch.dtype | None, bool]:
    """-> (device, autocast dtype or None for fp32, channels_last)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for, but CUDA is not available")
    if precision == "auto":
        use_bf16 = dev.type == "cuda" and torch.cuda.is_bf16_supported()
    else:
        use_bf16 = precision == "bf16"
    amp_dtype = torch.bfloat16 if use_bf16 else None
    return dev, amp_dtype, (dev.type == "cuda" if channels_last is None else channels_last)


@contextlib.contextmanager
def deterministic_cpu(enabled: bool) -> Iterator[None]:
    """Deterministic kernels for the duration of a CPU run, then the caller's setting back."""
    if not enabled:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    before_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)
