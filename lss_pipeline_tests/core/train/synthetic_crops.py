"""Learnable synthetic crops and a crop index as ``level_crops`` writes it (split + fold), for tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from lss_pipeline.core.settings import Settings

SLICES, PX = 5, 32


def synthetic_crops(
    n: int, seed: int = 0, px: int = PX, slices: int = SLICES
) -> tuple[np.ndarray, np.ndarray]:
    """Crops whose class is the radius of a bright disc (learnable, not by mean intensity alone)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=n, p=[0.6, 0.25, 0.15])
    yy, xx = np.mgrid[:px, :px]
    crops = np.empty((n, slices, px, px), np.float16)
    for i, label in enumerate(labels):
        cy, cx = px / 2 + rng.normal(0, 3, 2)
        radius = (0.12, 0.22, 0.32)[label] * px * rng.uniform(0.9, 1.1)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2).astype(np.float32)
        stack = 0.2 + 0.5 * disc[None] * rng.uniform(0.8, 1.0, (slices, 1, 1))
        crops[i] = np.clip(stack + rng.normal(0, 0.08, stack.shape), 0, 1)
    return crops, labels


def crop_index(labels: np.ndarray, n_folds: int = 4, test_every: int = 5) -> pl.DataFrame:
    """Five crops a study; every ``test_every``-th study in the test split, the rest in ``n_folds`` folds."""
    n = len(labels)
    study_ids = np.arange(n) // 5 + 1000
    is_test = (study_ids % test_every == 0) if test_every else np.zeros(n, bool)
    fold = np.where(is_test, -1, (study_ids // max(test_every, 1) + study_ids) % n_folds)
    return pl.DataFrame(
        {
            "crop_index": np.arange(n),
            "study_id": pl.Series(study_ids, dtype=pl.Int64),
            "row_id": [
                f"{s}_spinal_canal_stenosis_l{i % 5 + 1}_l{i % 5 + 2}" for i, s in enumerate(study_ids)
            ],
            "condition": ["Spinal Canal Stenosis"] * n,
            "side": pl.Series([None] * n, dtype=pl.Utf8),
            "level": ["L1/L2"] * n,
            "label": pl.Series(labels, dtype=pl.Int8),
            "split": np.where(is_test, "test", "cv").tolist(),
            "fold": pl.Series([None if f < 0 else int(f) for f in fold], dtype=pl.Int8),
        }
    )


def write_synthetic_crops(folder: Path, n: int = 300, seed: int = 0, **index_kwargs) -> tuple[Path, Path]:
    """``crops.npy`` + ``index.parquet`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    crops, labels = synthetic_crops(n, seed)
    np.save(folder / "crops.npy", crops)
    crop_index(labels, **index_kwargs).write_parquet(folder / "index.parquet")
    return folder / "crops.npy", folder / "index.parquet"


def write_partition_inputs(
    settings: Settings, category: str = "scs", n: int = 200, seed: int = 0, px: int = PX, **kw
) -> None:
    """Crops, index and class weights where ``settings.paths`` expects a category's training inputs."""
    paths = settings.paths
    crops, labels = synthetic_crops(n, seed, px=px)
    paths.crops_category_dir(category).mkdir(parents=True, exist_ok=True)
    np.save(paths.crops_array(category), crops)
    index = crop_index(labels, **kw)
    index.write_parquet(paths.crops_index(category))
    folds = sorted(index["fold"].drop_nulls().unique().to_list())
    weights = {
        "inverse_frequency": [0.5, 1.0, 1.5],
        "effective_number": [0.6, 1.0, 1.4],
        "competition": [1, 2, 4],
    }
    paths.class_weights(category).write_text(
        json.dumps({"by_val_fold": {str(f): {"weights": weights} for f in folds}}), encoding="utf-8"
    )
