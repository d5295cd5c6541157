"""What one fold's training is asked to do (``TrainConfig``), checked before anything runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from lss_pipeline.core.constants import CATEGORIES
from lss_pipeline.core.settings import PROFILES
from lss_pipeline.core.train.augment import FLIP_AXIS_BY_CATEGORY
from lss_pipeline.core.train.losses import LOSS_NAMES
from lss_pipeline.core.train.pretrained import validate_spec

WEIGHT_SCHEMES: tuple[str, ...] = ("inverse_frequency", "effective_number", "competition", "none")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
# Config fields that change how fast, not what, is computed: a resume may differ in them.
RESUME_FREE_FIELDS = frozenset({"num_workers", "device", "in_memory_max_bytes"})


@dataclass
class TrainConfig:
    arch: str = "convnext"
    timm_name: str = "convnext_atto"
    category: str = "scs"
    in_chans: int = 5  # = crop slices
    crop_px: int = 64
    loss: str = "weighted_ce"
    weight_scheme: str = "effective_number"  # the asset's default: β derived from the data
    gamma: float = 2.0
    epochs: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.05
    batch_size: int = 32
    warmup_epochs: float = 1.0
    # > 0: gradients rescaled to at most this global norm each step (0: off). Without it one of the
    # demo Swin's three folds did not learn at all (SBS, val macro recall 0.41 vs 0.92); CNNs unchanged.
    clip_grad_norm: float = 1.0
    min_lr_ratio: float = 0.01  # cosine ends at lr * min_lr_ratio
    patience: int = 4  # epochs without a better val macro recall before stopping; <= 0: never
    seed: int = 42
    val_fold: int = 0  # the fold this model is validated on (and never trained on)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on CUDA, else fp32) | fp32 | bf16
    channels_last: bool | None = None  # None: on CUDA only
    num_workers: int = 0
    pretrained: str = "none"  # none | timm (timm's weights: hub or local cache) | a weights file
    flip_merge: bool = False  # mirror right-side crops to look left (nfs, sbs)
    augment: bool = True
    max_train_batches: int | None = None  # cap per epoch, for tests
    in_memory_max_bytes: int = 4 << 30  # crops up to this size are read into RAM once

    @classmethod
    def from_profile(cls, profile: str, arch: str, category: str, **overrides: Any) -> TrainConfig:
        prof = PROFILES[profile]
        base = dict(
            arch=arch,
            timm_name=prof.models[arch],
            category=category,
            in_chans=prof.slices,
            crop_px=prof.crop_px,
            epochs=prof.epochs,
            batch_size=prof.batch_size,
            lr=prof.lr,
            pretrained=prof.pretrained,
            flip_merge=category in prof.flip_merge,
            num_workers=prof.num_workers,
        )
        return cls(**{**base, **overrides})

    def validate(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"category {self.category!r} not in {CATEGORIES}")
        if self.loss not in LOSS_NAMES:
            raise ValueError(f"loss {self.loss!r} not in {LOSS_NAMES}")
        if self.weight_scheme not in WEIGHT_SCHEMES:
            raise ValueError(f"weight_scheme {self.weight_scheme!r} not in {WEIGHT_SCHEMES}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} not in {PRECISIONS}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device {self.device!r}: expected auto, cpu, cuda or cuda:N")
        if self.flip_merge and self.category not in FLIP_AXIS_BY_CATEGORY:
            raise ValueError(
                f"flip_merge needs a sided category {sorted(FLIP_AXIS_BY_CATEGORY)}, got {self.category!r}"
            )
        for name in ("epochs", "batch_size", "in_chans", "crop_px"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.val_fold < 0:
            raise ValueError(f"val_fold must be >= 0, got {self.val_fold}")
        validate_spec(self.pretrained)
        if self.clip_grad_norm < 0:
            raise ValueError(f"clip_grad_norm must be >= 0 (0: off), got {self.clip_grad_norm}")
        if self.lr <= 0 or self.warmup_epochs < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("lr must be > 0, warmup_epochs >= 0, min_lr_ratio in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def for_fold(self, fold: int) -> TrainConfig:
        return dataclasses.replace(self, val_fold=fold)

    def resume_key(self) -> dict[str, Any]:
        """The fields a checkpoint must share with this config to be resumed."""
        return {k: v for k, v in self.to_dict().items() if k not in RESUME_FREE_FIELDS}
