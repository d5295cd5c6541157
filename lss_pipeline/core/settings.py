"""One settings object for paths and profile, read from the environment.

LSS_DATA_DIR  root of everything generated (default ``data/`` under the working directory)
LSS_RAW_DIR   the RSNA folder (default ``$LSS_DATA_DIR/raw``)
LSS_PROFILE   ``demo`` (default, CPU minutes) or ``full`` (GPU, thesis sizes)
LSS_DEPLOYMENT ``local`` (default: embedded sqlite, in-process), ``team`` (Dagster and MLflow on
              PostgreSQL) or ``k8s`` (training steps as GPU pods)
LSS_RETRAIN_CRON  unset (default): new labels are retrained on at once; a 5-field cron (e.g.
              ``0 3 * * 1``): periodic retraining, new label files wait for its tick
LSS_RETRAIN_TIMEZONE  timezone of that cron (default UTC)

Paths of every file live on ``settings.paths`` (``core/paths.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

from lss_pipeline.core.constants import ARCHITECTURES, CATEGORIES
from lss_pipeline.core.paths import Paths

PROFILE_NAMES = ("demo", "full")
DEPLOYMENTS = ("local", "team", "k8s")
Deployment = Literal["local", "team", "k8s"]


@dataclass(frozen=True)
class Profile:
    """Sizes that differ between a CPU demo and a GPU reproduction of the thesis.

    The demo's values are the recipe measured in ``benchmarks/ablation.py`` (its table is in
    ``benchmarks/README.md``): the smallest sizes that keep test-split macro recall >= 0.90 per
    category on the synthetic set within the demo's time budget.
    """

    name: str
    crop_mm: float  # side of the square crop window, millimetres
    crop_px: int  # side after resizing, pixels
    slices: int  # neighbouring slices stacked as channels (odd)
    epochs: int
    batch_size: int
    lr: float
    # timm model names per architecture
    models: dict[str, str] = field(default_factory=dict)
    # cv folds trained per model, the first n of K (None: every fold, so the OOF table covers the cv split)
    train_folds: int | None = None
    # backbone weights: none | timm (timm's pretrained weights, hub or local HF cache) | a weights file
    pretrained: str = "none"
    # K of data_splits: cross-validation folds over the non-test studies
    n_folds: int = 5
    # sided categories whose right-side crops are mirrored (in patient space) to look like left ones,
    # in training and at inference: one model sees both sides as one kind of image
    flip_merge: tuple[str, ...] = ("nfs", "sbs")
    # data-loader worker processes per training (augmentation runs there: ~3 ms of CPU a 5x224x224
    # crop, so a GPU at ~1,000 images/s needs several); 0: in the training process (CPU demo)
    num_workers: int = 0
    # partitions "arch|category" that also train the other loss (weighted CE <-> focal) as a variant
    # beside them, for the loss comparison of the report (never registered)
    loss_comparison: tuple[str, ...] = ()


PROFILES: dict[str, Profile] = {
    "demo": Profile(
        name="demo",
        crop_mm=40.0,
        # 32 px (1.25 mm a pixel) scores as 64 px on the synthetic set at about half the CPU time
        crop_px=32,
        slices=5,
        epochs=8,
        batch_size=32,
        lr=1e-3,
        # One size for the three families (~3 M parameters, ~0.01-0.05 GMACs), so the comparison
        # is of designs (core/train/models.py MODEL_ALIASES).
        models={
            "convnext": "convnext_atto",
            "resnet": "resnet18_w32",
            "swin": "swin_t_w32_window4",
        },
        n_folds=3,
        loss_comparison=("convnext|scs",),
    ),
    "full": Profile(
        name="full",
        crop_mm=40.0,
        crop_px=224,
        slices=5,
        epochs=30,
        batch_size=32,
        lr=2e-4,
        models={
            "convnext": "convnext_tiny",
            "resnet": "resnet50",
            "swin": "swin_tiny_patch4_window7_224",
        },
        pretrained="timm",
        n_folds=5,
        num_workers=6,
        loss_comparison=tuple(f"{a}|{c}" for a in ARCHITECTURES for c in CATEGORIES),
    ),
}


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    raw_dir: Path
    profile_name: str = "demo"
    deployment: Deployment = "local"
    retrain_cron: str | None = None
    retrain_timezone: str = "UTC"

    @property
    def profile(self) -> Profile:
        return PROFILES[self.profile_name]

    @property
    def paths(self) -> Paths:
        return Paths(data_dir=self.data_dir, raw_dir=self.raw_dir)

    # Shortcuts to the folders most code needs; file names live on `paths`.
    @property
    def processed_dir(self) -> Path:
        return self.paths.processed_dir

    @property
    def crops_dir(self) -> Path:
        return self.paths.crops_dir

    @property
    def models_dir(self) -> Path:
        return self.paths.models_dir

    @property
    def reports_dir(self) -> Path:
        return self.paths.reports_dir

    @property
    def mlflow_dir(self) -> Path:
        return self.paths.mlflow_dir

    @property
    def mlflow_tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.paths.mlflow_db.resolve()}"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.paths.mlflow_artifacts_dir

    @classmethod
    def from_env(cls, environ: os._Environ | dict | None = None) -> Settings:
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("LSS_DATA_DIR") or "data").expanduser().resolve()
        raw_dir = Path(env.get("LSS_RAW_DIR") or data_dir / "raw").expanduser().resolve()
        profile = env.get("LSS_PROFILE") or "demo"
        if profile not in PROFILES:
            raise ValueError(f"LSS_PROFILE={profile!r} is not one of {sorted(PROFILES)}")
        deployment = env.get("LSS_DEPLOYMENT") or "local"
        if deployment not in DEPLOYMENTS:
            raise ValueError(f"LSS_DEPLOYMENT={deployment!r} is not one of {list(DEPLOYMENTS)}")
        retrain_cron = (env.get("LSS_RETRAIN_CRON") or "").strip() or None
        if retrain_cron is not None and len(retrain_cron.split()) != 5:
            raise ValueError(
                f"LSS_RETRAIN_CRON={retrain_cron!r} is not a 5-field cron string (e.g. '0 3 * * 1')"
            )
        return cls(
            data_dir=data_dir,
            raw_dir=raw_dir,
            profile_name=profile,
            deployment=cast(Deployment, deployment),
            retrain_cron=retrain_cron,
            retrain_timezone=env.get("LSS_RETRAIN_TIMEZONE") or "UTC",
        )
