"""Publish ``dicom_metadata.parquet`` and ``quarantine.parquet`` together, never nothing over something.

A raw folder whose image folders are missing, or whose every file fails, would otherwise
write a 0-row table over a good one. The image files are counted before the long scan, the
readable rows before writing; both must be at least one unless the caller allows empty output.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from lss_pipeline.core import atomic
from lss_pipeline.core.dicom.layout import (
    SPLIT_OF_FOLDER,
    image_folders,
    list_image_files,
    require_raw_dataset,
)
from lss_pipeline.core.dicom.scan import ProgressFn, read_series_descriptions, scan_dicom_folder
from lss_pipeline.core.dicom.schema import METADATA_SCHEMA, QUARANTINE_SCHEMA
from lss_pipeline.core.paths import Paths

LOCK_NAME = "dicom_metadata"
LOCK_TIMEOUT_S = 600.0
# A new table under this share of the published one's instances is "near-empty" (refused unless allowed).
NEAR_EMPTY_SHARE = 0.1


class NoImagesError(ValueError):
    """The raw folder gives no usable image; the message says what was found."""


def _published_instances(paths: Paths) -> int | None:
    """Rows of the published metadata table; None when there is none (or it cannot be read)."""
    if not paths.dicom_metadata.is_file():
        return None
    try:
        return int(pl.scan_parquet(paths.dicom_metadata).select(pl.len()).collect().item())
    except Exception:  # noqa: BLE001 - only used to guard and to explain
        return None


def _refuse(found: str, paths: Paths) -> NoImagesError:
    published = _published_instances(paths)
    kept = (
        f"{paths.dicom_metadata} ({published} instances) is left as it is"
        if published
        else "no table was written"
    )
    return NoImagesError(
        f"{found}. Nothing was written: {kept}. "
        "Set allow_empty: true in the dicom_metadata asset's config to publish anyway."
    )


def check_files_found(rel_paths: list[str], paths: Paths, *, allow_empty: bool = False) -> None:
    """Before the scan: at least one file under the image folders."""
    if rel_paths or allow_empty:
        return
    found = ", ".join(
        f"{folder.name}/ {'is empty' if folder.is_dir() else 'is missing'}" for folder in image_folders(paths)
    )
    raise _refuse(f"no image files under {paths.raw_dir} ({found})", paths)


def check_series_described(
    descriptions: pl.DataFrame, rel_paths: list[str], paths: Paths, *, allow_empty: bool = False
) -> None:
    """Before the scan: a series CSV with a header and no rows leaves its images undescribed (crops and
    predictions pick series by description), so it is refused like a header-only label file."""
    if allow_empty:
        return
    files = Counter(SPLIT_OF_FOLDER.get(rel.split("/", 1)[0]) for rel in rel_paths)
    described = Counter(descriptions["split"].to_list())
    for split, csv_path, folder in (
        ("train", paths.series_csv, paths.train_images),
        ("test", paths.test_series_csv, paths.test_images),
    ):
        if csv_path.is_file() and files[split] and not described[split]:
            raise _refuse(
                f"{csv_path} has a header and 0 series rows while {folder.name}/ holds {files[split]} image "
                "files: none of their series would have a description",
                paths,
            )


def check_rows_readable(
    metadata: pl.DataFrame, quarantine: pl.DataFrame, paths: Paths, *, allow_empty: bool = False
) -> None:
    """After the scan: at least one readable instance, and not a near-empty shrink of the published table."""
    if allow_empty:
        return
    reasons = dict(quarantine.group_by("error_type").len().sort("error_type").iter_rows())
    files = metadata.height + quarantine.height
    if metadata.height == 0:
        raise _refuse(
            f"0 of {files} image files under {paths.raw_dir} are readable (quarantine reasons: {reasons})",
            paths,
        )
    published = _published_instances(paths)
    if published and metadata.height < NEAR_EMPTY_SHARE * published:
        raise _refuse(
            f"{metadata.height} readable instances under {paths.raw_dir} where the published table has "
            f"{published} (under {NEAR_EMPTY_SHARE:.0%}; quarantine reasons: {reasons})",
            paths,
        )


def publish_metadata(
    metadata: pl.DataFrame, quarantine: pl.DataFrame, paths: Paths, *, allow_empty: bool = False
) -> list[Path]:
    """Check the schema and minimum, then write both tables together under the writer lock."""
    for name, df, schema in (
        ("metadata", metadata, METADATA_SCHEMA),
        ("quarantine", quarantine, QUARANTINE_SCHEMA),
    ):
        if dict(df.schema) != schema:
            raise ValueError(f"{name} table does not have the contract schema: {dict(df.schema)}")
    check_rows_readable(metadata, quarantine, paths, allow_empty=allow_empty)
    with atomic.exclusive(paths.writer_lock(LOCK_NAME), "the DICOM metadata tables", LOCK_TIMEOUT_S):
        for target in (paths.dicom_metadata, paths.quarantine):
            atomic.remove_stale_temps(target)
        return atomic.write_together(
            {paths.dicom_metadata: metadata.write_parquet, paths.quarantine: quarantine.write_parquet}
        )


@dataclass(frozen=True)
class DicomIngest:
    metadata: pl.DataFrame
    quarantine: pl.DataFrame
    written: list[Path]


def ingest_dicom_folder(
    paths: Paths, *, workers: int | None = None, progress: ProgressFn | None = None, allow_empty: bool = False
) -> DicomIngest:
    """Scan the raw folder and publish both tables.

    What can fail fails before the long scan: no raw dataset, an unwritable output folder, a
    malformed or header-only series CSV, no image file at all.
    """
    require_raw_dataset(paths)
    atomic.check_writable(paths.processed_dir)
    atomic.check_writable(paths.locks_dir)
    descriptions = read_series_descriptions(paths)
    rel_paths = list_image_files(paths)
    check_files_found(rel_paths, paths, allow_empty=allow_empty)
    check_series_described(descriptions, rel_paths, paths, allow_empty=allow_empty)
    metadata, quarantine = scan_dicom_folder(
        paths, workers=workers, progress=progress, descriptions=descriptions, rel_paths=rel_paths
    )
    written = publish_metadata(metadata, quarantine, paths, allow_empty=allow_empty)
    return DicomIngest(metadata, quarantine, written)


def read_metadata(paths: Paths) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Both published tables, read under the writer lock so they come from one run.

    FileNotFoundError names the asset to materialize first.
    """
    missing = [p for p in (paths.dicom_metadata, paths.quarantine) if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{', '.join(str(p) for p in missing)} missing: materialize the `dicom_metadata` asset first"
        )
    with atomic.exclusive(paths.writer_lock(LOCK_NAME), "the DICOM metadata tables", LOCK_TIMEOUT_S):
        return pl.read_parquet(paths.dicom_metadata), pl.read_parquet(paths.quarantine)


def quarantine_share(metadata: pl.DataFrame, quarantine: pl.DataFrame, max_share: float) -> dict:
    """Facts for the quarantine check. ``passed`` is False when no file was seen at all (0 of 0)."""
    total = metadata.height + quarantine.height
    share = quarantine.height / total if total else None
    by_reason = dict(quarantine.group_by("error_type").len().sort("error_type").iter_rows())
    return {
        "passed": share is not None and share <= max_share,
        "quarantined": quarantine.height,
        "files": total,
        "share": share,
        "bound": max_share,
        "by_reason": by_reason,
        "description": (
            "no DICOM file was seen (0 of 0): the scan found nothing to check"
            if share is None
            else f"{quarantine.height} of {total} files quarantined ({share:.1%}; bound {max_share:.1%})"
        ),
    }
