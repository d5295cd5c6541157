"""The raw folder's DICOM files -> (metadata, quarantine) tables, headers read in a process pool.

Chunks hold whole studies. A file that cannot be used becomes a quarantine row (``schema.ERROR_TYPES``),
never a failed run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import polars as pl

from lss_pipeline.core.dicom.header import read_header_row
from lss_pipeline.core.dicom.layout import SPLIT_OF_FOLDER, list_image_files
from lss_pipeline.core.dicom.schema import (
    HEADER_COLUMNS,
    METADATA_SCHEMA,
    QUARANTINE_SCHEMA,
    QUARANTINE_STAGE,
    QuarantineError,
)
from lss_pipeline.core.labels.tables import read_series_file
from lss_pipeline.core.paths import Paths

ProgressFn = Callable[[int, int], None]

_DESCRIPTION_SCHEMA: dict[str, pl.DataType] = {
    "split": pl.Utf8(),
    "study_id": pl.Int64(),
    "series_id": pl.Int64(),
    "series_description": pl.Utf8(),
}


def _scan_chunk(root: str, rel_paths: Sequence[str]) -> tuple[list[tuple], list[tuple]]:
    """Worker: rows and (path, error_type, message) quarantine tuples for one chunk."""
    rows: list[tuple] = []
    bad: list[tuple] = []
    for rel in rel_paths:
        try:
            rows.append(read_header_row(os.path.join(root, rel), rel))
        except QuarantineError as exc:
            bad.append((rel, exc.error_type, exc.message))
        except Exception as exc:  # noqa: BLE001 - one bad file must never fail the run
            bad.append((rel, "read_error", f"{type(exc).__name__}: {exc}"))
    return rows, bad


def _chunks_by_study(rel_paths: Sequence[str], workers: int) -> list[list[str]]:
    """Whole studies per chunk, merged up to a size that gives each worker several chunks."""
    by_study: dict[str, list[str]] = {}
    for rel in rel_paths:
        by_study.setdefault("/".join(rel.split("/")[:2]), []).append(rel)
    target = max(16, min(1024, len(rel_paths) // max(1, workers * 4)))
    chunks: list[list[str]] = []
    current: list[str] = []
    for files in by_study.values():
        current.extend(files)
        if len(current) >= target:
            chunks.append(current)
            current = []
    if current:
        chunks.append(current)
    return chunks


def _split_duplicates(rows: list[tuple]) -> tuple[list[tuple], list[tuple]]:
    """Rows with one file per (folder, study, series, instance), and quarantine tuples for the rest.

    Two names can give one instance (``1.dcm`` and ``01.dcm`` from a merged export); labels and
    crops find instances by number, so only one may stay: the one named ``{instance}.dcm``,
    else the first in path order.
    """
    path_at = HEADER_COLUMNS.index("path")
    key_end = HEADER_COLUMNS.index("instance_number") + 1

    def rank(row: tuple) -> tuple[bool, str]:
        name = row[path_at].rsplit("/", 1)[-1]
        return name != f"{row[key_end - 1]}.dcm", row[path_at]

    kept: dict[tuple, tuple] = {}
    duplicates: list[tuple] = []
    for row in sorted(rows, key=rank):
        key = (row[path_at].split("/", 1)[0], *row[:key_end])
        if key in kept:
            duplicates.append((row[path_at], "duplicate_instance", (
                f"instance {row[key_end - 1]} of series {row[1]} is also {kept[key][path_at]}, which is kept"
            )))  # fmt: skip
        else:
            kept[key] = row
    return list(kept.values()), duplicates


def scan_files(
    rel_paths: Iterable[str],
    root: str | os.PathLike,
    *,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read the headers of ``root/rel_path`` for each path (relative to root, or absolute under it).

    Returns (metadata, quarantine) with METADATA_SCHEMA (series_description left null) and
    QUARANTINE_SCHEMA. ``workers`` <= 1 reads in this process; None uses os.cpu_count().
    ``progress(done_files, total_files)`` is called after each chunk.
    """
    root_path = Path(root)
    rel = sorted(
        Path(p).relative_to(root_path).as_posix() if Path(p).is_absolute() else Path(p).as_posix()
        for p in rel_paths
    )
    n_workers = (os.cpu_count() or 1) if workers is None else workers
    total = len(rel)
    chunks = _chunks_by_study(rel, n_workers)
    rows: list[tuple] = []
    bad: list[tuple] = []
    done = 0
    if n_workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            chunk_rows, chunk_bad = _scan_chunk(str(root_path), chunk)
            rows.extend(chunk_rows)
            bad.extend(chunk_bad)
            done += len(chunk)
            if progress:
                progress(done, total)
    else:
        with ProcessPoolExecutor(max_workers=min(n_workers, len(chunks))) as pool:
            futures = {pool.submit(_scan_chunk, str(root_path), chunk): len(chunk) for chunk in chunks}
            for future in as_completed(futures):
                chunk_rows, chunk_bad = future.result()
                rows.extend(chunk_rows)
                bad.extend(chunk_bad)
                done += futures[future]
                if progress:
                    progress(done, total)

    rows, duplicates = _split_duplicates(rows)
    bad.extend(duplicates)
    header_schema = {c: METADATA_SCHEMA[c] for c in HEADER_COLUMNS}
    metadata = pl.DataFrame(rows, schema=header_schema, orient="row")
    split = pl.col("path").str.split("/").list.first().replace_strict(SPLIT_OF_FOLDER, default=None)
    metadata = (
        metadata.with_columns(split.alias("split"), pl.lit(None, pl.Utf8).alias("series_description"))
        .select(list(METADATA_SCHEMA))
        .sort("split", "study_id", "series_id", "instance_number")
    )
    quarantine = pl.DataFrame(
        [(p, QUARANTINE_STAGE, t, m) for p, t, m in bad], schema=QUARANTINE_SCHEMA, orient="row"
    ).sort("path")
    return metadata, quarantine


def read_series_descriptions(paths: Paths) -> pl.DataFrame:
    """(split, study_id, series_id, series_description) from the series CSVs that exist.

    Validated like the label tables (``LabelValidationError`` names file, row and column).
    """
    rows: list[tuple[str, int, int, str]] = []
    for split, path in (("train", paths.series_csv), ("test", paths.test_series_csv)):
        if path.is_file():
            rows.extend((split, st, se, d) for (st, se), d in read_series_file(path).items())
    return pl.DataFrame(rows, schema=_DESCRIPTION_SCHEMA, orient="row")


def scan_dicom_folder(
    paths: Paths,
    *,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    descriptions: pl.DataFrame | None = None,
    rel_paths: Sequence[str] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Scan the raw folder's image folders; return (metadata, quarantine) with series descriptions.

    ``descriptions`` (``read_series_descriptions``) and ``rel_paths`` (``list_image_files``) may
    come from the caller, who read them first to fail fast; otherwise they are read here.
    """
    if descriptions is None:
        descriptions = read_series_descriptions(paths)
    if rel_paths is None:
        rel_paths = list_image_files(paths)
    metadata, quarantine = scan_files(rel_paths, paths.raw_dir, workers=workers, progress=progress)
    metadata = (
        metadata.drop("series_description")
        .join(descriptions, on=["split", "study_id", "series_id"], how="left")
        .select(list(METADATA_SCHEMA))
    )
    return metadata, quarantine
