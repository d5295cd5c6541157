"""Grade localised points: crop them with the crop code ``level_crops`` runs, feed the registered graders.

A grader is the registered ``lss-{category}`` model (the fold ensemble; any batch size; returns
logits) at an alias (``champion`` by default) or a version number. Its version tags say how it
was trained: ``in_chans`` (crop slices), ``crop_px`` and ``flip_merge`` (right-side crops
mirrored to look like left ones, as in training). The crop side in mm is the profile's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from lss_pipeline.core.constants import PROB_COLUMNS
from lss_pipeline.core.crops.points import PixelReader, crop_points

GRADE_SCHEMA: dict[str, Any] = {
    "row_id": pl.Utf8,
    **{c: pl.Float64 for c in PROB_COLUMNS},
    "grader_version": pl.Utf8,
}


@dataclass
class Grader:
    category: str
    model: torch.nn.Module
    version: str  # registry version number
    crop_mm: float
    crop_px: int
    slices: int
    flip_merge: bool


def registered_grader_name(category: str) -> str:
    return f"lss-{category}"


def load_grader(category: str, ref: str, *, crop_mm: float, default_px: int, default_slices: int) -> Grader:
    """``lss-{category}`` at alias or version ``ref``; MLflow must be configured.

    Raises LookupError naming the model and ref when there is no such version.
    """
    import mlflow.pytorch
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    name = registered_grader_name(category)
    client = MlflowClient()
    try:
        version = (
            client.get_model_version(name, ref)
            if ref.isdigit()
            else client.get_model_version_by_alias(name, ref)
        )
    except MlflowException as exc:
        raise LookupError(
            f"no registered model {name} at {'version' if ref.isdigit() else 'alias'} {ref!r}: train and "
            "evaluate the graders first (trained_model, evaluation_report)"
        ) from exc
    tags = version.tags or {}
    model = mlflow.pytorch.load_model(f"models:/{name}/{version.version}", map_location="cpu").eval()
    return Grader(
        category=category,
        model=model,
        version=str(version.version),
        crop_mm=crop_mm,
        crop_px=int(tags.get("crop_px", default_px)),
        slices=int(tags.get("in_chans", default_slices)),
        flip_merge=str(tags.get("flip_merge", "False")).lower() == "true",
    )


@dataclass
class Graded:
    grades: pl.DataFrame  # GRADE_SCHEMA, one row per graded point
    skipped: pl.DataFrame  # points without a crop: the point columns + reason + detail
    crop_s: float
    grade_s: float
    crops: dict[str, np.ndarray]  # row_id -> middle crop slice (for overlays)


def _flip_right(crops: np.ndarray, sides: list[str | None], category: str) -> np.ndarray:
    from lss_pipeline.core.train.augment import flip_batch_to_left

    is_right = np.array([s == "right" for s in sides], dtype=bool)
    return flip_batch_to_left(crops, is_right, category)


def grade_points(
    points: pl.DataFrame,
    metadata: pl.DataFrame,
    raw_dir: Path,
    graders: dict[str, Grader],
    *,
    reader: PixelReader | None = None,
    batch_size: int = 64,
) -> Graded:
    """Probabilities for every localised point (``status == ok``) of a category that has a grader."""
    todo = points.filter((pl.col("status") == "ok") & pl.col("category").is_in(list(graders)))
    rows: list[dict[str, Any]] = []
    skipped: list[pl.DataFrame] = []
    middles: dict[str, np.ndarray] = {}
    crop_s = grade_s = 0.0
    for category, grader in graders.items():
        part = todo.filter(pl.col("category") == category).select(
            "study_id", "series_id", "instance_number", "x", "y", "row_id", "side"
        )
        if part.height == 0:
            continue
        t0 = time.perf_counter()
        cut = crop_points(
            part, metadata, raw_dir, crop_mm=grader.crop_mm, crop_px=grader.crop_px, slices=grader.slices,
            reader=reader, workers=1,
        )  # fmt: skip
        crop_s += time.perf_counter() - t0
        if cut.skipped.height:
            skipped.append(cut.skipped.select("row_id", "reason", "detail"))
        if cut.index.height == 0:
            continue
        t0 = time.perf_counter()
        crops = cut.crops.astype(np.float32)
        if grader.flip_merge:
            crops = _flip_right(crops, cut.index["side"].to_list(), category)
        logits = []
        with torch.inference_mode():
            for start in range(0, len(crops), batch_size):
                logits.append(grader.model(torch.from_numpy(crops[start : start + batch_size])).float())
        probs = torch.softmax(torch.cat(logits), dim=1).numpy().astype(np.float64)
        grade_s += time.perf_counter() - t0
        for r, p, crop in zip(cut.index.iter_rows(named=True), probs, cut.crops):
            rows.append(
                {
                    "row_id": r["row_id"],
                    **dict(zip(PROB_COLUMNS, p.tolist())),
                    "grader_version": grader.version,
                }
            )
            middles[r["row_id"]] = np.asarray(crop[crop.shape[0] // 2], dtype=np.float32)
    skip_schema = {"row_id": pl.Utf8, "reason": pl.Utf8, "detail": pl.Utf8}
    return Graded(
        grades=pl.DataFrame(rows, schema=GRADE_SCHEMA, orient="row"),
        skipped=pl.concat(skipped) if skipped else pl.DataFrame(schema=skip_schema),
        crop_s=crop_s,
        grade_s=grade_s,
        crops=middles,
    )
