"""``level_crops`` outputs of one category: crops.npy, index.parquet, skipped.parquet, samples.png.

Every labelled row of the category (``labels`` with a non-null grade) is a point for
:func:`~lss_pipeline.core.crops.points.crop_study`, on the category's series
(``constants.CATEGORY_SERIES``). Crops stream into a memory-mapped temp array as studies finish
(a pool for big sets), so memory stays flat. The four files are published together under a
per-category writer lock: a crash leaves the previous outputs, never a mix.

``index.parquet`` (one row per crop, ``crop_index`` = row of ``crops.npy``): the label row's
columns, ``level_index`` (0 = L1/L2 .. 4 = L5/S1), ``split`` and ``fold`` from data_splits,
and how the crop was cut (``points.CROP_SCHEMA``). ``skipped.parquet``: one row per labelled
row without a crop, with a reason.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from filelock import FileLock

from lss_pipeline.core import atomic, constants
from lss_pipeline.core.crops.points import (
    CROP_SCHEMA,
    PixelReader,
    StudyTask,
    default_workers,
    prepare_study_tasks,
    require_columns,
    run_study_tasks,
)
from lss_pipeline.core.crops.samples import render_samples_png
from lss_pipeline.core.paths import Paths

LABEL_COLUMNS = (
    "study_id", "category", "condition", "side", "level", "label", "row_id",
    "series_id", "instance_number", "x", "y",
)  # fmt: skip
INDEX_SCHEMA: dict[str, Any] = {
    "crop_index": pl.Int64, "study_id": pl.Int64, "series_id": pl.Int64, "instance_number": pl.Int64,
    "row_id": pl.Utf8, "category": pl.Utf8, "condition": pl.Utf8, "side": pl.Utf8, "level": pl.Utf8,
    "level_index": pl.Int8, "label": pl.Int8, "split": pl.Utf8, "fold": pl.Int8,
    **CROP_SCHEMA,
}  # fmt: skip
SKIPPED_SCHEMA: dict[str, Any] = {
    "study_id": pl.Int64, "row_id": pl.Utf8, "condition": pl.Utf8, "level": pl.Utf8,
    "reason": pl.Utf8, "detail": pl.Utf8,
}  # fmt: skip
LOCK_TIMEOUT_S = 3600.0


@dataclass
class CropResult:
    """What ``build_level_crops`` wrote and measured."""

    category: str
    paths: dict[str, Path]  # crops, index, skipped, samples
    n_points: int  # labelled rows of the category (crops + skipped)
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


def lock_name(category: str) -> str:
    return f"level_crops_{category}"


def labelled_points(category: str, labels: pl.DataFrame) -> pl.DataFrame:
    """The category's graded rows as crop points, in (study, condition, level) order."""
    if category not in constants.CATEGORIES:
        raise ValueError(f"category {category!r} is not one of {constants.CATEGORIES}")
    require_columns(labels, LABEL_COLUMNS, "labels")
    return (
        labels.filter((pl.col("category") == category) & pl.col("label").is_not_null())
        .select(LABEL_COLUMNS)
        .sort(["study_id", "condition", "level"])
    )


def split_columns(splits: pl.DataFrame | None) -> pl.DataFrame:
    """``study_id, split, fold`` from data_splits (a table without ``split`` counts folds as cv)."""
    schema = {"study_id": pl.Int64, "split": pl.Utf8, "fold": pl.Int8}
    if splits is None:
        return pl.DataFrame(schema=schema)
    require_columns(splits, ("study_id", "fold"), "data_splits")
    split = (
        pl.col("split").cast(pl.Utf8)
        if "split" in splits.columns
        else pl.when(pl.col("fold").is_null()).then(pl.lit("test")).otherwise(pl.lit("cv"))
    )
    return splits.select(
        pl.col("study_id").cast(pl.Int64), split.alias("split"), pl.col("fold").cast(pl.Int8)
    )


def _shrink_npy(path: Path, n_rows: int) -> None:
    """Cut a C-order .npy file to its first ``n_rows`` rows in place (header rewritten, file truncated).

    Saves copying a many-GB array when some labelled rows were skipped.
    """
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(f)
        data_offset = f.tell()
        preamble = 6 + 2 + (2 if version == (1, 0) else 4)  # magic, version, header length
        new_shape = (n_rows, *shape[1:])
        header = repr(
            {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran, "shape": new_shape}
        )
        width = data_offset - preamble - 1
        if len(header) > width:
            raise ValueError(f"{path}: header for shape {new_shape} does not fit")
        f.seek(preamble)
        f.write(header.ljust(width).encode("latin1") + b"\n")
        f.truncate(data_offset + n_rows * int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize)


@dataclass
class _Stream:
    """What streaming the crops into the array gathered."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    samples: dict[int, list[np.ndarray]] = field(default_factory=dict)
    decode_s: float = 0.0
    crop_s: float = 0.0
    n_decoded: int = 0


def _stream_crops(
    tasks: list[StudyTask],
    target: Path,
    n_points: int,
    shape_tail: tuple[int, int, int],
    workers: int,
    progress: Callable[[int, int], None] | None,
    samples_per_class: int,
) -> _Stream:
    """Crop the studies into a memory-mapped ``target`` .npy, one row per crop, cut to size at the end."""
    out = _Stream(samples={i: [] for i in range(len(constants.CLASS_NAMES))})
    # One row per labelled point; rows of skipped points are cut off at the end.
    array = np.lib.format.open_memmap(
        target, mode="w+", dtype=np.float16, shape=(max(1, n_points), *shape_tail)
    )
    n = 0
    for done, result in enumerate(run_study_tasks(tasks, workers), start=1):
        for row, crop in zip(result.rows, result.crops):
            array[n] = crop
            out.rows.append({**row, "crop_index": n})
            examples = out.samples[int(row["label"])]
            if len(examples) < samples_per_class:
                examples.append(np.asarray(crop[shape_tail[0] // 2], dtype=np.float32))
            n += 1
        out.skipped.extend(result.skipped)
        out.decode_s += result.decode_s
        out.crop_s += result.crop_s
        out.n_decoded += result.n_decoded
        if progress is not None:
            progress(done, len(tasks))
    array.flush()
    del array
    _shrink_npy(target, n)
    return out


def _index_table(rows: list[dict[str, Any]], split_table: pl.DataFrame) -> pl.DataFrame:
    """The crop rows with ``level_index`` and the study's ``split``/``fold``, in INDEX_SCHEMA order."""
    level_index = pl.col("level").replace_strict(
        constants.LEVELS, list(range(len(constants.LEVELS))), default=None, return_dtype=pl.Int8
    )
    own = {k: v for k, v in INDEX_SCHEMA.items() if k not in ("split", "fold", "level_index")}
    return (
        pl.DataFrame(rows, schema=own, orient="row")
        .with_columns(level_index.alias("level_index"))
        .join(split_table, on="study_id", how="left")
        .select(list(INDEX_SCHEMA))
        .sort("crop_index")
    )


def build_level_crops(
    category: str,
    metadata: pl.DataFrame,
    labels: pl.DataFrame,
    splits: pl.DataFrame | None,
    paths: Paths,
    *,
    crop_mm: float,
    crop_px: int,
    slices: int = 5,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    reader: PixelReader | None = None,
    samples_per_class: int = 6,
) -> CropResult:
    """Crop every labelled row of ``category``; write ``paths.crops_array/index/skipped/samples_png``.

    Pixel paths in ``metadata`` are relative to ``paths.raw_dir``. ``workers``: processes (None:
    by study count, so small sets run in this process; 0 or 1: in this process).
    ``progress(done_studies, total_studies)`` is called after each study. ``reader`` decodes
    one path to a 2D float array (default DICOM); it must be picklable for a pool.
    """
    t_start = time.perf_counter()
    points = labelled_points(category, labels)
    tasks = prepare_study_tasks(
        points,
        metadata,
        paths.raw_dir,
        crop_mm=crop_mm,
        crop_px=crop_px,
        slices=slices,
        series_description=constants.CATEGORY_SERIES[category],
        reader=reader,
    )
    split_table = split_columns(splits)
    workers = default_workers(len(tasks)) if workers is None else max(1, workers)
    out_dir = atomic.check_writable(paths.crops_category_dir(category))
    targets = {
        "crops": paths.crops_array(category),
        "index": paths.crops_index(category),
        "skipped": paths.crops_skipped(category),
        "samples": paths.crops_samples_png(category),
    }
    t_prepared = time.perf_counter()

    paths.locks_dir.mkdir(parents=True, exist_ok=True)
    # One writer per category and data folder for the whole build: temp files left by a killed
    # run are removed, and two runs never interleave their outputs.
    with FileLock(paths.writer_lock(lock_name(category)), timeout=LOCK_TIMEOUT_S):
        for target in targets.values():
            atomic.remove_stale_temps(target)
        fd, partial_name = tempfile.mkstemp(
            prefix=f".{targets['crops'].name}.", suffix=".tmp.npy", dir=out_dir
        )
        os.close(fd)
        partial = Path(partial_name)
        try:
            stream = _stream_crops(tasks, partial, points.height, (slices, crop_px, crop_px), workers,
                                   progress, samples_per_class)  # fmt: skip
            t_crops = time.perf_counter()
            index = _index_table(stream.rows, split_table)
            skipped_df = pl.DataFrame(
                [{k: r.get(k) for k in SKIPPED_SCHEMA} for r in stream.skipped],
                schema=SKIPPED_SCHEMA,
                orient="row",
            )
            title = f"{category}: sample crops (middle slice)"
            atomic.write_together(
                {
                    targets["crops"]: lambda tmp: os.replace(partial, tmp),
                    targets["index"]: index.write_parquet,
                    targets["skipped"]: skipped_df.write_parquet,
                    targets["samples"]: lambda tmp: render_samples_png(stream.samples, tmp, title=title),
                }
            )
        finally:
            partial.unlink(missing_ok=True)
    t_end = time.perf_counter()
    class_counts = {name: int((index["label"] == i).sum()) for i, name in enumerate(constants.CLASS_NAMES)}
    return CropResult(
        category=category,
        paths=targets,
        n_points=points.height,
        n_crops=index.height,
        class_counts=class_counts,
        skipped=skipped_df,
        padded=int(index["padded"].sum()),
        edge_replicated=int((index["edge_replicated"] > 0).sum()),
        n_studies=len(tasks),
        workers=workers,
        timings={
            "prepare_s": t_prepared - t_start,
            "crops_s": t_crops - t_prepared,
            "write_s": t_end - t_crops,
            "total_s": t_end - t_start,
            "decode_s_summed_over_workers": stream.decode_s,
            "crop_s_summed_over_workers": stream.crop_s,
            "instances_decoded": float(stream.n_decoded),
            "crops_per_s": index.height / (t_crops - t_prepared) if t_crops > t_prepared else 0.0,
        },
    )
