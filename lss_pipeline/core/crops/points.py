"""Crops at any list of points: labelled (``level_crops``) or predicted (``predictions``).

A point is a row with ``study_id, series_id, instance_number, x, y`` (pixel column and row on
that instance); any other columns (row_id, condition, level, label, ...) are carried through.
Per point: the instance's stack is found (``stacks.assign_stacks``), its slices are ordered
along the stack's patient-space normal, the ``slices`` neighbours around the point's instance
are picked (missing neighbours past a stack end **replicate the edge slice**, counted in
``edge_replicated``) and :func:`~lss_pipeline.core.crops.crop.cut_crop` cuts the crop.

Pixels are decoded at most once per instance per study (a per-study cache). A point whose
series, instance, geometry or pixels are missing or unreadable is skipped with a reason,
never fatal.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lss_pipeline.core.crops.crop import cut_crop
from lss_pipeline.core.crops.geometry import NORMAL_COLUMNS, CropFrame, SliceGeometry, stack_normal
from lss_pipeline.core.crops.pool import run_in_pool
from lss_pipeline.core.crops.stacks import assign_stacks, neighbour_indices

PixelReader = Callable[[Path], np.ndarray]

POINT_COLUMNS = ("study_id", "series_id", "instance_number", "x", "y")
METADATA_COLUMNS = (
    "study_id", "series_id", "instance_number", "series_description", "path", "rows", "columns",
    "pixel_spacing_row", "pixel_spacing_col", "ipp_x", "ipp_y", "ipp_z",
    "iop_row_x", "iop_row_y", "iop_row_z", "iop_col_x", "iop_col_y", "iop_col_z",
)  # fmt: skip
# What each crop adds to its point's row.
CROP_SCHEMA: dict[str, Any] = {
    "center_x": pl.Float64, "center_y": pl.Float64,
    "pixel_spacing_row": pl.Float64, "pixel_spacing_col": pl.Float64,
    "window_px_x": pl.Float64, "window_px_y": pl.Float64,
    "slice_instance_numbers": pl.List(pl.Int64), "padded": pl.Boolean,
    "stack_id": pl.Int32, "edge_replicated": pl.Int8,
    "point_x_mm": pl.Float64, "point_y_mm": pl.Float64, "point_z_mm": pl.Float64,
}  # fmt: skip
SKIP_SCHEMA: dict[str, Any] = {"reason": pl.Utf8, "detail": pl.Utf8}

# Reasons a point gets no crop.
SKIP_NO_COORDINATE = "no_coordinate"
SKIP_SERIES_MISSING = "series_missing"
SKIP_WRONG_SERIES = "wrong_series"
SKIP_INSTANCE_MISSING = "instance_missing"
SKIP_GEOMETRY_MISSING = "geometry_missing"
SKIP_OUTSIDE_IMAGE = "coordinate_outside_image"
SKIP_UNREADABLE = "unreadable"
SKIP_REASONS = (
    SKIP_NO_COORDINATE, SKIP_SERIES_MISSING, SKIP_WRONG_SERIES, SKIP_INSTANCE_MISSING,
    SKIP_GEOMETRY_MISSING, SKIP_OUTSIDE_IMAGE, SKIP_UNREADABLE,
)  # fmt: skip

STUDIES_PER_WORKER = 16


# The DICOM decoder (pydicom and its plugins): imported by workers, not by this module.
PIXELS_MODULE = "lss_pipeline.core.dicom.pixels"


def read_dicom_pixels(path: Path) -> np.ndarray:
    """The default reader: decoded, rescaled float32 pixels of one DICOM file."""
    from lss_pipeline.core.dicom.pixels import read_pixels

    return read_pixels(path)


@dataclass
class StudyTask:
    """The points of one study and the metadata rows (with stacks) of the series they name."""

    study_id: int
    points: list[dict[str, Any]]
    series: dict[int, list[dict[str, Any]]]  # series_id -> rows with stack_id, stack_position
    raw_dir: Path
    crop_mm: float
    crop_px: int
    slices: int
    series_description: str | None  # the description the points' series must have, if any
    reader: PixelReader | None


@dataclass
class StudyCrops:
    """What one study gave: crop rows (point columns + ``CROP_SCHEMA``), crops, skipped points."""

    study_id: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)  # float16 (slices, px, px)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    decode_s: float = 0.0
    crop_s: float = 0.0
    n_decoded: int = 0


def crop_study(task: StudyTask) -> StudyCrops:
    """Crop every point of one study (runs in a pool worker; everything it needs is in ``task``)."""
    reader = task.reader or read_dicom_pixels
    cache: dict[str, np.ndarray] = {}
    out = StudyCrops(task.study_id)

    def pixels(row: dict) -> np.ndarray:
        if row["path"] not in cache:
            t0 = time.perf_counter()
            cache[row["path"]] = np.asarray(reader(task.raw_dir / row["path"]), dtype=np.float32)
            out.decode_s += time.perf_counter() - t0
            out.n_decoded += 1
        return cache[row["path"]]

    def skip(point: dict, reason: str, detail: str) -> None:
        out.skipped.append({**point, "reason": reason, "detail": detail})

    for point in task.points:
        if any(point.get(c) is None for c in ("series_id", "instance_number", "x", "y")):
            skip(point, SKIP_NO_COORDINATE, "point has no series, instance or (x, y)")
            continue
        series_id, instance = int(point["series_id"]), int(point["instance_number"])
        rows = task.series.get(series_id)
        if not rows:
            skip(point, SKIP_SERIES_MISSING, f"series {series_id} has no readable instance")
            continue
        description = rows[0]["series_description"]
        if task.series_description and description is not None and description != task.series_description:
            skip(
                point,
                SKIP_WRONG_SERIES,
                f"point on series {series_id} ({description}), needs {task.series_description}",
            )
            continue
        centre_row = next((r for r in rows if r["instance_number"] == instance), None)
        if centre_row is None:
            skip(
                point,
                SKIP_INSTANCE_MISSING,
                f"instance {instance} of series {series_id} missing or quarantined",
            )
            continue
        stack = sorted(
            (r for r in rows if r["stack_id"] == centre_row["stack_id"]),
            key=lambda r: (r["stack_position"], r["instance_number"]),
        )
        centre_idx = next(i for i, r in enumerate(stack) if r is centre_row)
        picked, n_replicated = neighbour_indices(centre_idx, len(stack), task.slices)
        picked_rows = [stack[i] for i in picked]
        try:
            geoms = [SliceGeometry.from_row(r) for r in picked_rows]
        except ValueError as exc:
            skip(point, SKIP_GEOMETRY_MISSING, str(exc))
            continue
        x, y = float(point["x"]), float(point["y"])
        if not (0 <= x < centre_row["columns"] and 0 <= y < centre_row["rows"]):
            skip(
                point,
                SKIP_OUTSIDE_IMAGE,
                f"({x:.1f}, {y:.1f}) outside the {centre_row['columns']}x{centre_row['rows']} image "
                f"{centre_row['path']}",
            )
            continue
        try:
            images = [pixels(r) for r in picked_rows]
        except Exception as exc:  # any decoder failure skips this crop, never the run
            skip(point, SKIP_UNREADABLE, f"{type(exc).__name__}: {exc}")
            continue
        t0 = time.perf_counter()
        frame = CropFrame.for_normal(stack_normal(np.array([[r[c] for c in NORMAL_COLUMNS] for r in stack])))
        crop = cut_crop(
            images, geoms, frame, task.slices // 2, x, y, crop_mm=task.crop_mm, crop_px=task.crop_px
        )
        out.crop_s += time.perf_counter() - t0
        out.crops.append(crop.pixels.astype(np.float16))
        out.rows.append(
            {
                **point,
                "center_x": x,
                "center_y": y,
                "pixel_spacing_row": float(centre_row["pixel_spacing_row"]),
                "pixel_spacing_col": float(centre_row["pixel_spacing_col"]),
                "window_px_x": crop.window_px[0],
                "window_px_y": crop.window_px[1],
                "slice_instance_numbers": [int(r["instance_number"]) for r in picked_rows],
                "padded": crop.padded,
                "stack_id": int(centre_row["stack_id"]),
                "edge_replicated": n_replicated,
                "point_x_mm": float(crop.point[0]),
                "point_y_mm": float(crop.point[1]),
                "point_z_mm": float(crop.point[2]),
            }
        )
    return out


def require_columns(df: pl.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}; has {df.columns}")


def prepare_study_tasks(
    points: pl.DataFrame,
    metadata: pl.DataFrame,
    raw_dir: str | os.PathLike,
    *,
    crop_mm: float,
    crop_px: int,
    slices: int,
    series_description: str | None = None,
    reader: PixelReader | None = None,
) -> list[StudyTask]:
    """One task per study of ``points`` (in study order), with only the metadata it needs."""
    if slices < 1 or slices % 2 == 0:
        raise ValueError(f"slices must be a positive odd number, got {slices}")
    if crop_mm <= 0 or crop_px < 1:
        raise ValueError(f"crop_mm must be > 0 and crop_px >= 1, got {crop_mm}, {crop_px}")
    require_columns(points, POINT_COLUMNS, "points")
    require_columns(metadata, METADATA_COLUMNS, "dicom_metadata")
    needed = points.select(pl.col("study_id").cast(pl.Int64), pl.col("series_id").cast(pl.Int64)).drop_nulls()
    meta = metadata.join(needed.unique(), on=["study_id", "series_id"], how="semi")
    # Stacks only for the series that points name.
    meta = assign_stacks(meta.select([*METADATA_COLUMNS, *(c for c in NORMAL_COLUMNS if c in meta.columns)]))
    series_by_study: dict[int, dict[int, list[dict[str, Any]]]] = {}
    for (study_id, series_id), df in meta.partition_by(["study_id", "series_id"], as_dict=True).items():
        series_by_study.setdefault(int(study_id), {})[int(series_id)] = df.to_dicts()
    tasks = []
    for (study_id,), df in sorted(points.partition_by("study_id", as_dict=True, maintain_order=True).items()):
        tasks.append(
            StudyTask(
                study_id=int(study_id),
                points=df.to_dicts(),
                series=series_by_study.get(int(study_id), {}),
                raw_dir=Path(raw_dir),
                crop_mm=float(crop_mm),
                crop_px=int(crop_px),
                slices=int(slices),
                series_description=series_description,
                reader=reader,
            )
        )
    return tasks


def default_workers(n_tasks: int) -> int:
    """A worker process costs ~1-3 s of imports: only worth it with ~16 studies to share out."""
    return max(1, min(os.cpu_count() or 1, 8, n_tasks // STUDIES_PER_WORKER))


def run_study_tasks(tasks: Sequence[StudyTask], workers: int) -> Iterator[StudyCrops]:
    """``crop_study`` over the tasks, in task order, in this process or a pool."""
    return run_in_pool(crop_study, tasks, workers, preload=[__name__, PIXELS_MODULE])


@dataclass
class PointCrops:
    """Crops at a list of points: ``crops[i]`` belongs to ``index`` row ``crop_index == i``."""

    crops: np.ndarray  # float16 (n, slices, crop_px, crop_px) in [0, 1]
    index: pl.DataFrame  # the cropped points' columns + CROP_SCHEMA + crop_index
    skipped: pl.DataFrame  # the skipped points' columns + reason + detail


def crop_points(
    points: pl.DataFrame,
    metadata: pl.DataFrame,
    raw_dir: str | os.PathLike,
    *,
    crop_mm: float,
    crop_px: int,
    slices: int,
    series_description: str | None = None,
    reader: PixelReader | None = None,
    workers: int | None = 1,
) -> PointCrops:
    """Cut a 2.5D crop at each point; the same code ``level_crops`` runs on labelled points.

    ``points``: ``study_id, series_id, instance_number, x, y`` and any columns to carry.
    ``metadata``: ``dicom_metadata`` rows (at least the points' series; paths relative to
    ``raw_dir``). ``series_description``: skip points on a series described otherwise (None:
    any). ``reader`` decodes one path to a 2D array (default: DICOM); ``workers`` None picks a
    pool size from the number of studies. Crops come in study order, points in input order
    within a study.
    """
    tasks = prepare_study_tasks(
        points,
        metadata,
        raw_dir,
        crop_mm=crop_mm,
        crop_px=crop_px,
        slices=slices,
        series_description=series_description,
        reader=reader,
    )
    n_workers = default_workers(len(tasks)) if workers is None else workers
    rows: list[dict[str, Any]] = []
    crops: list[np.ndarray] = []
    skipped: list[dict[str, Any]] = []
    for result in run_study_tasks(tasks, n_workers):
        rows.extend(result.rows)
        crops.extend(result.crops)
        skipped.extend(result.skipped)
    index_schema = {**points.schema, **CROP_SCHEMA, "crop_index": pl.Int64}
    index = pl.DataFrame(
        [{**r, "crop_index": i} for i, r in enumerate(rows)], schema=index_schema, orient="row"
    )
    skipped_df = pl.DataFrame(skipped, schema={**points.schema, **SKIP_SCHEMA}, orient="row")
    shape = (0, slices, crop_px, crop_px)
    array = np.stack(crops) if crops else np.zeros(shape, dtype=np.float16)
    return PointCrops(crops=array, index=index, skipped=skipped_df)
