"""Publish ``labels.parquet`` and ``labels_stats.json`` together, never an empty table over a good one.

Header-only label files parse as valid CSVs with no data; publishing what they give would
replace a good table with nothing and every check would still pass. ``check_minimums``
refuses that unless the caller allows it. Writers of one data folder are serialized by a file
lock, and both files are renamed into place together (``atomic.write_together``).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from lss_pipeline.core import atomic
from lss_pipeline.core.dicom.layout import require_raw_dataset
from lss_pipeline.core.labels.tidy import LABELS_SCHEMA, build_labels
from lss_pipeline.core.paths import Paths

LOCK_NAME = "labels"
LOCK_TIMEOUT_S = 600.0
# A new table under this share of the published one's studies is "near-empty" (refused unless allowed).
NEAR_EMPTY_SHARE = 0.1


class EmptyLabelsError(ValueError):
    """The label files hold too little to replace the published table; the message says what was found."""


def _published_studies(paths: Paths) -> int | None:
    """Studies in the published labels table; None when there is none (or it cannot be read)."""
    if not paths.labels.is_file():
        return None
    try:
        return int(pl.scan_parquet(paths.labels).select(pl.col("study_id").n_unique()).collect().item())
    except Exception:  # noqa: BLE001 - only used to guard and to explain
        return None


def check_minimums(stats: dict, paths: Paths, *, allow_empty: bool = False) -> None:
    """Raise EmptyLabelsError when an input holds no data rows (or no non-blank label), or when the
    new table would shrink the published one to near-empty (under ``NEAR_EMPTY_SHARE`` of its studies).

    ``allow_empty`` publishes anyway (e.g. to clear the tables on purpose).
    """
    if allow_empty:
        return
    published = _published_studies(paths)
    problems = []
    if stats["n_studies"] == 0:
        problems.append(f"{paths.train_csv} has a header and 0 study rows")
    elif stats["n_label_rows"] == stats["blank_labels"]:
        problems.append(f"{paths.train_csv} has {stats['n_studies']} studies but every label cell is blank")
    elif published and stats["n_studies"] < NEAR_EMPTY_SHARE * published:
        problems.append(
            f"{paths.train_csv} has {stats['n_studies']} studies where the published table has {published} "
            f"(under {NEAR_EMPTY_SHARE:.0%})"
        )
    if stats["n_coordinate_rows"] == 0:
        problems.append(f"{paths.coordinates_csv} has a header and 0 coordinate rows")
    if stats["n_series"] == 0:
        problems.append(f"{paths.series_csv} has a header and 0 series rows")
    if problems:
        kept = (
            f"{paths.labels} ({published} studies) is left as it is" if published else "no table was written"
        )
        raise EmptyLabelsError(
            "; ".join(problems) + f". Nothing was written: {kept}. "
            "Set allow_empty: true in the labels asset's config to publish it anyway."
        )


def publish_labels(
    labels: pl.DataFrame, stats: dict, paths: Paths, *, allow_empty: bool = False
) -> list[Path]:
    """Check minimums, then write labels.parquet + labels_stats.json together under the writer lock."""
    if dict(labels.schema) != LABELS_SCHEMA:
        raise ValueError(f"labels table does not have the contract schema: {dict(labels.schema)}")
    check_minimums(stats, paths, allow_empty=allow_empty)
    stats_text = json.dumps(stats, indent=2, sort_keys=True, default=str) + "\n"
    with atomic.exclusive(paths.writer_lock(LOCK_NAME), "the labels tables", LOCK_TIMEOUT_S):
        for target in (paths.labels, paths.labels_stats):
            atomic.remove_stale_temps(target)
        return atomic.write_together(
            {
                paths.labels: labels.write_parquet,
                paths.labels_stats: lambda tmp: tmp.write_text(stats_text, encoding="utf-8"),
            }
        )


def ingest_labels(paths: Paths, *, allow_empty: bool = False) -> tuple[pl.DataFrame, dict, list[Path]]:
    """Validate and join the label files, then publish: (labels, stats, written paths)."""
    require_raw_dataset(paths)
    atomic.check_writable(paths.processed_dir)
    atomic.check_writable(paths.locks_dir)
    labels, stats = build_labels(paths)
    return labels, stats, publish_labels(labels, stats, paths, allow_empty=allow_empty)


def read_labels(paths: Paths) -> pl.DataFrame:
    """The published labels table; FileNotFoundError names the asset to materialize first."""
    if not paths.labels.is_file():
        raise FileNotFoundError(f"{paths.labels} does not exist: materialize the `labels` asset first")
    return pl.read_parquet(paths.labels)
