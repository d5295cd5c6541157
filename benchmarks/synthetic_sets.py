"""Synthetic sets for benchmarks: written, scanned and labelled once under a folder, reused after.

Benchmarks run as scripts (``python benchmarks/x.py``), so this module is importable beside them.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from lss_pipeline.core.settings import Settings


def scanned_set(
    root: Path,
    studies: int,
    seed: int,
    *,
    n_test_studies: int = 0,
    class_shares: dict[str, tuple[float, float, float]] | None = None,
    sites: int = 0,
    correlated_grades: bool | None = None,
) -> tuple[Settings, pl.DataFrame, pl.DataFrame]:
    """(settings, dicom metadata, labels) of a synthetic set in ``root`` (raw files in ``root/raw``),
    through the assets' own ingest steps; skipped when its labels table already exists."""
    from lss_pipeline.core.dicom.store import ingest_dicom_folder, read_metadata
    from lss_pipeline.core.labels.store import ingest_labels, read_labels
    from lss_pipeline.core.synth import generate_dataset

    settings = Settings(data_dir=root, raw_dir=root / "raw", profile_name="demo")
    if not settings.paths.labels.exists():
        generate_dataset(
            settings.raw_dir, n_studies=studies, seed=seed, n_test_studies=n_test_studies,
            class_shares=class_shares, sites=sites, correlated_grades=correlated_grades,
        )  # fmt: skip
        ingest_dicom_folder(settings.paths)
        ingest_labels(settings.paths)
    metadata, _ = read_metadata(settings.paths)
    return settings, metadata, read_labels(settings.paths)


def true_grades(raw_dir: Path) -> pl.DataFrame:
    """row_id -> ``true_label`` (0/1/2), each train cell's true grade (``synth_train_truth.csv``)."""
    from lss_pipeline.core.constants import SEVERITY_TO_LABEL
    from lss_pipeline.core.synth import read_train_truth

    grade = pl.col("severity").replace_strict(SEVERITY_TO_LABEL, return_dtype=pl.Int64)
    return pl.DataFrame(read_train_truth(raw_dir)).select("row_id", grade.alias("true_label"))
