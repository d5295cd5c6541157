"""The ``level_crops`` and ``class_weights`` outputs of one category, from and to ``settings.paths``.

What the Dagster assets and checks call: each reads the published upstream tables (a missing
one raises FileNotFoundError naming the asset to materialize first) and writes through
``writer``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lss_pipeline.core.crops.quality import MAX_SKIPPED_SHARE, MAX_UNREADABLE_SHARE, skipped_share_report
from lss_pipeline.core.crops.writer import CropResult, build_level_crops
from lss_pipeline.core.paths import Paths


def _require(path: Path, asset: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: materialize the `{asset}` asset first")
    return path


def crop_category(
    paths: Paths,
    category: str,
    *,
    crop_mm: float,
    crop_px: int,
    slices: int,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    exclude_implausible_labels: bool = False,
) -> CropResult:
    """Build the category's crops from the published dicom_metadata, labels and data_splits.

    ``exclude_implausible_labels`` leaves out the rows the ``labels_make_anatomical_sense`` check lists.
    """
    from lss_pipeline.core.dicom.store import read_metadata
    from lss_pipeline.core.labels import anatomy
    from lss_pipeline.core.labels.splits import read_splits
    from lss_pipeline.core.labels.store import read_labels

    metadata, _ = read_metadata(paths)
    labels = read_labels(paths)
    if exclude_implausible_labels:
        labels = anatomy.exclude_offenders(labels, anatomy.check_anatomy(labels, metadata).offenders)
    return build_level_crops(
        category, metadata, labels, read_splits(paths), paths,
        crop_mm=crop_mm, crop_px=crop_px, slices=slices, workers=workers, progress=progress,
    )  # fmt: skip


def read_crop_index(paths: Paths, category: str) -> pl.DataFrame:
    return pl.read_parquet(_require(paths.crops_index(category), "level_crops"))


def read_crop_skipped(paths: Paths, category: str) -> pl.DataFrame:
    return pl.read_parquet(_require(paths.crops_skipped(category), "level_crops"))


def skipped_share(
    paths: Paths,
    category: str,
    *,
    max_skipped_share: float = MAX_SKIPPED_SHARE,
    max_unreadable_share: float = MAX_UNREADABLE_SHARE,
) -> dict[str, Any]:
    """``quality.skipped_share_report`` on the published outputs of ``category``."""
    return skipped_share_report(
        read_crop_index(paths, category).height,
        read_crop_skipped(paths, category),
        max_skipped_share=max_skipped_share,
        max_unreadable_share=max_unreadable_share,
    )


def index_matches_array(paths: Paths, category: str) -> dict[str, Any]:
    """Whether ``index.parquet`` and ``crops.npy`` describe the same crops (rows, order, value range)."""
    index = read_crop_index(paths, category)
    crops = np.load(_require(paths.crops_array(category), "level_crops"), mmap_mode="r")
    problems = []
    if crops.shape[0] != index.height:
        problems.append(f"crops.npy has {crops.shape[0]} crops, index.parquet {index.height} rows")
    if index["crop_index"].to_list() != list(range(index.height)):
        problems.append("crop_index is not 0..n-1 in order")
    # A sample of crops, so a many-GB array is not read whole.
    sample = (
        np.asarray(crops[:: max(1, crops.shape[0] // 256)], dtype=np.float32) if crops.shape[0] else crops
    )
    if sample.size and (
        float(sample.min()) < 0.0 or float(sample.max()) > 1.0 or not np.isfinite(sample).all()
    ):
        problems.append("crop values outside [0, 1]")
    return {
        "passed": not problems,
        "problems": problems,
        "crops": int(crops.shape[0]),
        "index_rows": index.height,
        "shape": list(crops.shape),
    }


def class_weights_for_category(
    paths: Paths, category: str, *, beta: float | None = None
) -> tuple[dict, Path]:
    """Class weights over the cv crops of ``category`` (test-split crops never count); written to
    ``paths.class_weights(category)``."""
    from lss_pipeline.core.labels import class_weights
    from lss_pipeline.core.labels.splits import read_splits

    index = read_crop_index(paths, category)
    n_folds = read_splits(paths)["fold"].drop_nulls().n_unique()
    weights = class_weights.compute_class_weights(index, n_folds=n_folds, beta=beta, category=category)
    return weights, class_weights.write_class_weights(weights, paths.class_weights(category))
