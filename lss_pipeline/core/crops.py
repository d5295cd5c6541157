"""2.5D level crops: one (slices, px, px) tensor per labelled study x side x level.

For each labelled row of a category the crop is taken from the labelled instance of the
category's series (``constants.CATEGORY_SERIES``), centred on the label's (x, y). Its
neighbours along the slice normal (``slice_position``, never the instance number) are the
other channels, the labelled slice in the middle; in an axial series holding several stacks
only the stack of the labelled instance is used. Neighbours missing past a stack end
**replicate the edge slice** (counted per crop in ``edge_replicated``).

The window is ``crop_mm`` wide on every slice, converted to pixels with that slice's
PixelSpacing (x uses the column spacing, y the row spacing). The label point is projected
onto each neighbour slice in patient space, so in-plane shifts between slices are honoured.
A window that leaves the image is **zero-padded, not shifted** (counted in ``padded``).
Intensities are normalised per crop (all slices together) from the 1st-99th percentiles of
the in-image pixels to [0, 1]; padding stays 0. Windows are resized to ``crop_px`` (area
interpolation when shrinking, linear when enlarging).

Pixels are decoded at most once per instance per study (a per-study cache), studies run in
a process pool, and a study whose series is missing/unreadable is skipped and listed.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import cv2
import numpy as np
import polars as pl

from lss_pipeline.core import constants
from lss_pipeline.core.atomic import atomic_path, write_parquet
from lss_pipeline.core.geometry import (
    SliceGeometry,
    add_slice_position,
    assign_stacks,
    neighbour_indices,
    patient_to_pixel,
    pixel_to_patient,
)

PixelReader = Callable[[Path], np.ndarray]

STUDIES_PER_WORKER = 16
LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.0

# Reasons written to skipped.parquet.
SKIP_NO_COORDINATE = "no_coordinate"
SKIP_SERIES_MISSING = "series_missing"
SKIP_WRONG_SERIES = "wrong_series"
SKIP_INSTANCE_MISSING = "instance_missing"
SKIP_GEOMETRY_MISSING = "geometry_missing"
SKIP_OUTSIDE_IMAGE = "coordinate_outside_image"
SKIP_UNREADABLE = "unreadable"

METADATA_COLUMNS = (
    "study_id", "series_id", "instance_number", "series_description", "path", "rows", "columns",
    "pixel_spacing_row", "pixel_spacing_col", "ipp_x", "ipp_y", "ipp_z",
    "iop_row_x", "iop_row_y", "iop_row_z", "iop_col_x", "iop_col_y", "iop_col_z",
)
LABEL_COLUMNS = (
    "study_id", "category", "condition", "side", "level", "label", "row_id",
    "series_id", "instance_number", "x", "y",
)
SKIPPED_SCHEMA = {
    "study_id": pl.Int64, "condition": pl.Utf8, "level": pl.Utf8, "reason": pl.Utf8, "detail": pl.Utf8,
}
INDEX_SCHEMA = {
    "crop_index": pl.Int64, "study_id": pl.Int64, "series_id": pl.Int64, "instance_number": pl.Int64,
    "row_id": pl.Utf8, "category": pl.Utf8, "condition": pl.Utf8, "side": pl.Utf8, "level": pl.Utf8,
    "label": pl.Int8, "fold": pl.Int8,
    "center_x": pl.Float64, "center_y": pl.Float64,
    "pixel_spacing_row": pl.Float64, "pixel_spacing_col": pl.Float64,
    "window_px_x": pl.Float64, "window_px_y": pl.Float64,
    "slice_instance_numbers": pl.List(pl.Int64), "padded": pl.Boolean,
    "stack_id": pl.Int32, "edge_replicated": pl.Int8,
}


@dataclass
class CropResult:
    """What ``build_level_crops`` wrote and measured."""

    category: str
    paths: dict[str, Path]  # crops, index, skipped, samples
    n_crops: int
    class_counts: dict[str, int]
    skipped: pl.DataFrame
    padded: int
    edge_replicated: int  # crops with at least one replicated edge slice
    n_studies: int
    workers: int
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def skipped_by_reason(self) -> dict[str, int]:
        if self.skipped.height == 0:
            return {}
        counts = self.skipped.group_by("reason").len().sort("reason")
        return dict(zip(counts["reason"].to_list(), counts["len"].to_list()))


# ----------------------------------------------------------------------------- pixels

def extract_window(
    image: np.ndarray, center_x: float, center_y: float, width_px: float, height_px: float,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Cut a ``height x width`` window centred on (x column, y row), zero-padded where it leaves the image.

    Returns (window float32, in-image mask bool, padded flag). The window is never shifted to
    fit: pixel (i, j) of the window is image pixel (y0 + i, x0 + j) whatever the border.
    """
    w = max(1, int(round(width_px)))
    h = max(1, int(round(height_px)))
    x0 = int(np.floor(center_x - w / 2.0 + 0.5))
    y0 = int(np.floor(center_y - h / 2.0 + 0.5))
    rows, cols = image.shape[:2]
    window = np.zeros((h, w), dtype=np.float32)
    mask = np.zeros((h, w), dtype=bool)
    ys, ye = max(0, y0), min(rows, y0 + h)
    xs, xe = max(0, x0), min(cols, x0 + w)
    if ys < ye and xs < xe:
        window[ys - y0:ye - y0, xs - x0:xe - x0] = image[ys:ye, xs:xe]
        mask[ys - y0:ye - y0, xs - x0:xe - x0] = True
    padded = not (y0 >= 0 and x0 >= 0 and y0 + h <= rows and x0 + w <= cols)
    return window, mask, padded


def normalise_windows(windows: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
    """Map all windows of one crop to [0, 1] by the 1st-99th percentiles of their in-image pixels."""
    valid = np.concatenate([w[m] for w, m in zip(windows, masks)])
    if valid.size == 0:
        return [np.zeros_like(w) for w in windows]
    lo, hi = np.percentile(valid, [LOW_PERCENTILE, HIGH_PERCENTILE])
    scale = 1.0 / (hi - lo) if hi > lo else 0.0
    out = []
    for w, m in zip(windows, masks):
        n = np.clip((w - lo) * scale, 0.0, 1.0).astype(np.float32)
        n[~m] = 0.0  # padding stays black whatever the percentiles
        out.append(n)
    return out


def resize_square(window: np.ndarray, size: int) -> np.ndarray:
    h, w = window.shape
    if (h, w) == (size, size):
        return window
    shrinking = h > size or w > size
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(window, (size, size), interpolation=interp)


def make_crop(
    images: list[np.ndarray],
    geoms: list[SliceGeometry],
    centre_slice: int,
    x: float,
    y: float,
    crop_mm: float,
    crop_px: int,
) -> tuple[np.ndarray, bool, list[tuple[float, float]]]:
    """Crop every slice around the label point (x, y) of slice ``centre_slice``.

    The point is carried to the other slices through patient space. Returns the crop
    (len(images), crop_px, crop_px) float32 in [0, 1], whether any window was padded, and the
    (window_px_x, window_px_y) of each slice.
    """
    point = pixel_to_patient(geoms[centre_slice], x, y)
    windows, masks, sizes = [], [], []
    any_padded = False
    for i, (image, geom) in enumerate(zip(images, geoms)):
        if i == centre_slice:
            cx, cy = float(x), float(y)
        else:
            px_, py_, _ = patient_to_pixel(geom, point)
            cx, cy = float(px_), float(py_)
        win_x, win_y = crop_mm / geom.spacing_col, crop_mm / geom.spacing_row
        window, mask, padded = extract_window(image, cx, cy, win_x, win_y)
        any_padded |= padded
        windows.append(window)
        masks.append(mask)
        sizes.append((win_x, win_y))
    normed = normalise_windows(windows, masks)
    crop = np.stack([resize_square(w, crop_px) for w in normed]).astype(np.float32)
    return np.clip(crop, 0.0, 1.0), any_padded, sizes


def default_reader(path: Path) -> np.ndarray:
    from lss_pipeline.core.dicom_metadata import read_pixels

    return read_pixels(path)


# ----------------------------------------------------------------------------- per-study work

@dataclass
class _StudyTask:
    study_id: int
    category: str
    labels: list[dict[str, Any]]
    series: dict[int, pl.DataFrame]  # series_id -> metadata rows (with stack_id)
    raw_dir: Path
    crop_mm: float
    crop_px: int
    slices: int
    reader: PixelReader | None


@dataclass
class _StudyOutput:
    study_id: int
    rows: list[dict[str, Any]]
    crops: list[np.ndarray]
    skipped: list[dict[str, Any]]
    decode_s: float
    crop_s: float
    n_decoded: int


def _skip(label: dict, reason: str, detail: str) -> dict[str, Any]:
    return {
        "study_id": label["study_id"], "condition": label["condition"], "level": label["level"],
        "reason": reason, "detail": detail,
    }


def _crop_study(task: _StudyTask) -> _StudyOutput:
    reader = task.reader or default_reader
    expected = constants.CATEGORY_SERIES[task.category]
    cache: dict[str, np.ndarray] = {}
    out = _StudyOutput(task.study_id, [], [], [], 0.0, 0.0, 0)
    series_rows: dict[int, list[dict]] = {sid: df.to_dicts() for sid, df in task.series.items()}

    def pixels(row: dict) -> np.ndarray:
        key = row["path"]
        if key not in cache:
            t0 = time.perf_counter()
            cache[key] = np.asarray(reader(task.raw_dir / key), dtype=np.float32)
            out.decode_s += time.perf_counter() - t0
            out.n_decoded += 1
        return cache[key]

    for label in task.labels:
        if label["series_id"] is None or label["instance_number"] is None or label["x"] is None or label["y"] is None:
            out.skipped.append(_skip(label, SKIP_NO_COORDINATE, "label has no coordinate"))
            continue
        rows = series_rows.get(int(label["series_id"]))
        if not rows:
            out.skipped.append(_skip(label, SKIP_SERIES_MISSING, f"series {label['series_id']} has no readable instance"))
            continue
        description = rows[0]["series_description"]
        if description is not None and description != expected:
            out.skipped.append(_skip(
                label, SKIP_WRONG_SERIES,
                f"coordinate on series {label['series_id']} ({description}), {task.category} needs {expected}",
            ))
            continue
        centre_rows = [r for r in rows if r["instance_number"] == label["instance_number"]]
        if not centre_rows:
            out.skipped.append(_skip(
                label, SKIP_INSTANCE_MISSING,
                f"instance {label['instance_number']} of series {label['series_id']} missing or quarantined",
            ))
            continue
        centre_row = centre_rows[0]
        stack = sorted(
            (r for r in rows if r["stack_id"] == centre_row["stack_id"]),
            key=lambda r: (r["slice_position"], r["instance_number"]),
        )
        centre_idx = next(i for i, r in enumerate(stack) if r is centre_row)
        picked, n_replicated = neighbour_indices(centre_idx, len(stack), task.slices)
        picked_rows = [stack[i] for i in picked]
        try:
            geoms = [SliceGeometry.from_row(r) for r in picked_rows]
        except ValueError as exc:
            out.skipped.append(_skip(label, SKIP_GEOMETRY_MISSING, str(exc)))
            continue
        x, y = float(label["x"]), float(label["y"])
        if not (0 <= x < centre_row["columns"] and 0 <= y < centre_row["rows"]):
            out.skipped.append(_skip(
                label, SKIP_OUTSIDE_IMAGE,
                f"({x:.1f}, {y:.1f}) outside {centre_row['columns']}x{centre_row['rows']} image {centre_row['path']}",
            ))
            continue
        try:
            images = [pixels(r) for r in picked_rows]
        except Exception as exc:  # any decoder failure skips this crop, never the run
            out.skipped.append(_skip(label, SKIP_UNREADABLE, f"{type(exc).__name__}: {exc}"))
            continue
        t0 = time.perf_counter()
        centre_pos = task.slices // 2
        crop, padded, sizes = make_crop(images, geoms, centre_pos, x, y, task.crop_mm, task.crop_px)
        out.crop_s += time.perf_counter() - t0
        out.crops.append(crop.astype(np.float16))
        out.rows.append({
            "study_id": label["study_id"], "series_id": label["series_id"],
            "instance_number": label["instance_number"], "row_id": label["row_id"],
            "category": task.category, "condition": label["condition"], "side": label["side"],
            "level": label["level"], "label": label["label"],
            "center_x": x, "center_y": y,
            "pixel_spacing_row": float(centre_row["pixel_spacing_row"]),
            "pixel_spacing_col": float(centre_row["pixel_spacing_col"]),
            "window_px_x": sizes[centre_pos][0], "window_px_y": sizes[centre_pos][1],
            "slice_instance_numbers": [int(r["instance_number"]) for r in picked_rows],
            "padded": bool(padded), "stack_id": int(centre_row["stack_id"]),
            "edge_replicated": n_replicated,
        })
    return out


# ----------------------------------------------------------------------------- orchestration

def _require_columns(df: pl.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}; has {df.columns}")


def prepare_tasks(
    category: str,
    metadata: pl.DataFrame,
    labels: pl.DataFrame,
    raw_dir: Path,
    *,
    crop_mm: float,
    crop_px: int,
    slices: int,
    reader: PixelReader | None = None,
) -> list[_StudyTask]:
    """One task per study with a non-null label of ``category``, with only the metadata it needs."""
    if category not in constants.CATEGORIES:
        raise ValueError(f"category {category!r} is not one of {constants.CATEGORIES}")
    if slices < 1 or slices % 2 == 0:
        raise ValueError(f"slices must be a positive odd number, got {slices}")
    _require_columns(metadata, METADATA_COLUMNS, "dicom_metadata")
    _require_columns(labels, LABEL_COLUMNS, "labels")
    cat_labels = (
        labels.filter((pl.col("category") == category) & pl.col("label").is_not_null())
        .select(LABEL_COLUMNS)
        .sort(["study_id", "condition", "level"])
    )
    needed = cat_labels.select("study_id", "series_id").drop_nulls().unique()
    meta = metadata.join(needed, on=["study_id", "series_id"], how="semi")
    if "slice_position" not in meta.columns or "normal_x" not in meta.columns:
        meta = add_slice_position(meta)
    # Stack ids per series, computed only for the series crops need.
    meta = assign_stacks(meta).select([*METADATA_COLUMNS, "slice_position", "stack_id"])
    series_by_study: dict[int, dict[int, pl.DataFrame]] = {}
    for (study_id, series_id), df in meta.partition_by(["study_id", "series_id"], as_dict=True).items():
        series_by_study.setdefault(int(study_id), {})[int(series_id)] = df
    tasks = []
    for (study_id,), df in sorted(cat_labels.partition_by("study_id", as_dict=True).items()):
        tasks.append(_StudyTask(
            study_id=int(study_id), category=category, labels=df.to_dicts(),
            series=series_by_study.get(int(study_id), {}), raw_dir=Path(raw_dir),
            crop_mm=float(crop_mm), crop_px=int(crop_px), slices=int(slices), reader=reader,
        ))
    return tasks


_POOL_PRELOAD = ["lss_pipeline.core.crops", "lss_pipeline.core.dicom_metadata"]


def _pool_context() -> multiprocessing.context.BaseContext:
    """forkserver with the crop modules preloaded: workers fork from a clean single-threaded
    server (safe when the caller runs threads, e.g. torch or Dagster) and skip re-importing
    numpy/cv2/pydicom and the caller's ``__main__``, which spawn pays once per worker."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_POOL_PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


def _run_tasks(tasks: list[_StudyTask], workers: int) -> Iterator[_StudyOutput]:
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield _crop_study(task)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
        # map keeps task order, so crop order does not depend on scheduling.
        yield from pool.map(_crop_study, tasks, chunksize=max(1, len(tasks) // (workers * 8)))


def build_level_crops(
    category: str,
    metadata: pl.DataFrame,
    labels: pl.DataFrame,
    splits: pl.DataFrame | None,
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    crop_mm: float,
    crop_px: int,
    slices: int = 5,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    reader: PixelReader | None = None,
    samples_per_class: int = 6,
) -> CropResult:
    """Build ``crops.npy``, ``index.parquet``, ``skipped.parquet`` and ``samples.png`` in ``out_dir``.

    ``workers``: processes (None: min(CPU count, 8, studies // 16), so small sets run in this
    process; 0 or 1: in this process).
    ``progress(done_studies, total_studies)`` is called after each study. ``reader`` decodes one
    DICOM path to a float32 array (default ``dicom_metadata.read_pixels``); it must be picklable.
    """
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = prepare_tasks(
        category, metadata, labels, Path(raw_dir), crop_mm=crop_mm, crop_px=crop_px, slices=slices, reader=reader,
    )
    if workers is None:
        # A spawned worker spends ~1-3 s importing numpy/cv2/pydicom: only worth it with
        # enough studies to share out (about 16 per worker).
        workers = max(1, min(os.cpu_count() or 1, 8, len(tasks) // STUDIES_PER_WORKER))
    n_max = sum(len(t.labels) for t in tasks)
    t_prepared = time.perf_counter()

    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    decode_s = crop_s = 0.0
    n_decoded = 0
    shape_tail = (slices, crop_px, crop_px)
    crops_path = out_dir / "crops.npy"
    samples: dict[int, list[np.ndarray]] = {0: [], 1: [], 2: []}
    fd, tmp_name = tempfile.mkstemp(prefix=".crops.", suffix=".partial.npy", dir=out_dir)
    os.close(fd)
    tmp_full = Path(tmp_name)
    try:
        full = np.lib.format.open_memmap(tmp_full, mode="w+", dtype=np.float16, shape=(n_max, *shape_tail))
        n = 0
        for done, result in enumerate(_run_tasks(tasks, workers), start=1):
            for row, crop in zip(result.rows, result.crops):
                full[n] = crop
                row["crop_index"] = n
                rows.append(row)
                cls = int(row["label"])
                if len(samples[cls]) < samples_per_class:
                    samples[cls].append(np.asarray(crop[slices // 2], dtype=np.float32))
                n += 1
            skipped.extend(result.skipped)
            decode_s += result.decode_s
            crop_s += result.crop_s
            n_decoded += result.n_decoded
            if progress is not None:
                progress(done, len(tasks))
        full.flush()
        del full
        if n == n_max:
            os.replace(tmp_full, crops_path)
        else:
            # Some rows were skipped: copy the filled head into an exactly sized file.
            src = np.load(tmp_full, mmap_mode="r")
            with atomic_path(crops_path, suffix=".exact.npy") as tmp_exact:
                dst = np.lib.format.open_memmap(tmp_exact, mode="w+", dtype=np.float16, shape=(n, *shape_tail))
                for start in range(0, n, 1024):
                    stop = min(n, start + 1024)
                    dst[start:stop] = src[start:stop]
                dst.flush()
                del dst
            del src
    finally:
        tmp_full.unlink(missing_ok=True)
    t_crops = time.perf_counter()

    index = pl.DataFrame(rows, schema={k: v for k, v in INDEX_SCHEMA.items() if k != "fold"}, orient="row") \
        if rows else pl.DataFrame(schema={k: v for k, v in INDEX_SCHEMA.items() if k != "fold"})
    if splits is not None:
        _require_columns(splits, ("study_id", "fold"), "data_splits")
        index = index.join(splits.select(pl.col("study_id").cast(pl.Int64), pl.col("fold").cast(pl.Int8)),
                           on="study_id", how="left")
    else:
        index = index.with_columns(pl.lit(None, dtype=pl.Int8).alias("fold"))
    index = index.select(list(INDEX_SCHEMA)).sort("crop_index")
    skipped_df = pl.DataFrame(skipped, schema=SKIPPED_SCHEMA, orient="row") if skipped \
        else pl.DataFrame(schema=SKIPPED_SCHEMA)
    paths = {
        "crops": crops_path,
        "index": write_parquet(index, out_dir / "index.parquet"),
        "skipped": write_parquet(skipped_df, out_dir / "skipped.parquet"),
        "samples": write_samples_png(samples, out_dir / "samples.png", title=f"{category}: sample crops (middle slice)"),
    }
    t_end = time.perf_counter()
    class_counts = {name: int(index.filter(pl.col("label") == i).height) for i, name in enumerate(constants.CLASS_NAMES)}
    return CropResult(
        category=category, paths=paths, n_crops=n, class_counts=class_counts, skipped=skipped_df,
        padded=int(index["padded"].sum()) if n else 0,
        edge_replicated=int((index["edge_replicated"] > 0).sum()) if n else 0,
        n_studies=len(tasks), workers=workers,
        timings={
            "prepare_s": t_prepared - t_start,
            "crops_s": t_crops - t_prepared,
            "write_s": t_end - t_crops,
            "total_s": t_end - t_start,
            "decode_s_summed_over_workers": decode_s,
            "crop_s_summed_over_workers": crop_s,
            "instances_decoded": float(n_decoded),
            "crops_per_s": n / (t_crops - t_prepared) if t_crops > t_prepared else 0.0,
        },
    )


def write_samples_png(samples: dict[int, list[np.ndarray]], target: Path, *, title: str = "") -> Path:
    """A grid, one row per class, of middle slices of sample crops."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    n_cols = max(1, max((len(v) for v in samples.values()), default=1))
    fig, axes = plt.subplots(
        len(constants.CLASS_NAMES), n_cols, figsize=(1.6 * n_cols + 1.0, 1.7 * len(constants.CLASS_NAMES)), squeeze=False,
    )
    for cls, name in enumerate(constants.CLASS_NAMES):
        imgs = samples.get(cls, [])
        for j in range(n_cols):
            ax = axes[cls][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(imgs):
                ax.imshow(imgs[j], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                ax.set_facecolor("#eeeeee")
            if j == 0:
                ax.set_ylabel(f"{name}\n({len(imgs)} shown)" if imgs else f"{name}\n(none)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return Path(target)
