"""One study folder (``{series_id}/{instance}.dcm``) -> the metadata rows the localiser and crops read.

Headers are read with the ingest's reader (``dicom.header.read_header_row``), so a file that is
not a usable DICOM is quarantined with the same reasons, never fatal. Series types come from a
series-description CSV when one names the study's series, else from each series' DICOM
``SeriesDescription`` (mapped to the three RSNA names: ``Sagittal T1``, ``Sagittal T2/STIR``,
``Axial T2``). A folder with no readable DICOM is a :class:`NotAStudyError` saying what it holds.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from lss_pipeline.core.constants import SERIES_DESCRIPTIONS, TEST_IMAGES
from lss_pipeline.core.dicom.header import read_header_row
from lss_pipeline.core.dicom.schema import HEADER_COLUMNS, METADATA_SCHEMA, QUARANTINE_SCHEMA, QuarantineError

SERIES_DESCRIPTION_TAG = 0x0008103E
_DIGITS = re.compile(r"[0-9]+")


class NotAStudyError(ValueError):
    """The folder is not one study of DICOM series; the message says what it holds."""


@dataclass
class StudyScan:
    study_id: int
    folder: Path
    metadata: pl.DataFrame  # METADATA_SCHEMA; ``path`` relative to ``folder``
    quarantine: pl.DataFrame  # QUARANTINE_SCHEMA
    descriptions: dict[int, str | None]  # series_id -> RSNA series type (None: not recognised)
    raw_descriptions: dict[int, str | None]  # series_id -> what the files or the CSV said

    def missing_types(self) -> list[str]:
        present = set(self.descriptions.values())
        return [d for d in SERIES_DESCRIPTIONS if d not in present]


def normalise_description(text: str | None) -> str | None:
    """The RSNA series type a free-text SeriesDescription names, or None."""
    if not text:
        return None
    if text in SERIES_DESCRIPTIONS:
        return text
    t = text.lower()
    sagittal = "sag" in t
    axial = "ax" in t or "tra" in t
    if sagittal and ("stir" in t or "t2" in t):
        return "Sagittal T2/STIR"
    if sagittal and "t1" in t:
        return "Sagittal T1"
    if axial and "t2" in t:
        return "Axial T2"
    return None


def _dicom_description(path: Path) -> str | None:
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[SERIES_DESCRIPTION_TAG])
        except Exception:  # noqa: BLE001 - an unreadable file simply names no description
            return None
    value = ds.get(SERIES_DESCRIPTION_TAG)
    return str(value.value).strip() if value is not None and value.value else None


def study_id_of(folder: Path, study_id: int | None) -> int:
    if study_id is not None:
        return int(study_id)
    if _DIGITS.fullmatch(folder.name):
        return int(folder.name)
    raise NotAStudyError(
        f"{folder}: the folder name {folder.name!r} is not a study id (digits); give it with --study-id"
    )


def scan_study_folder(
    folder: str | os.PathLike,
    *,
    study_id: int | None = None,
    series_descriptions: dict[int, str] | None = None,
) -> StudyScan:
    """Read the headers of every file under ``folder/{series_id}/``; raise NotAStudyError when none is usable.

    ``series_descriptions`` (series_id -> RSNA type, e.g. from test_series_descriptions.csv)
    wins over the DICOM tag.
    """
    root = Path(folder)
    if not root.is_dir():
        raise NotAStudyError(f"{root} is not a folder")
    sid = study_id_of(root, study_id)
    rows: list[tuple] = []
    bad: list[tuple] = []
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    series_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for series_dir in series_dirs:
        for path in sorted(p for p in series_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
            rel = f"{series_dir.name}/{path.name}"
            try:
                # The header reader parses ids from an RSNA-layout path.
                rows.append(read_header_row(path, f"{TEST_IMAGES}/{sid}/{rel}"))
            except QuarantineError as exc:
                bad.append((rel, "predict", exc.error_type, exc.message))
            except Exception as exc:  # noqa: BLE001 - one bad file never stops a study
                bad.append((rel, "predict", "read_error", f"{type(exc).__name__}: {exc}"))
    header_schema = {c: METADATA_SCHEMA[c] for c in HEADER_COLUMNS}
    meta = pl.DataFrame(rows, schema=header_schema, orient="row")
    # Paths relative to the study folder (the header reader saw an RSNA-layout path).
    meta = meta.with_columns(pl.col("path").str.replace(f"^{TEST_IMAGES}/{sid}/", ""))
    quarantine = pl.DataFrame(bad, schema=QUARANTINE_SCHEMA, orient="row")
    if meta.height == 0:
        holds = (
            f"{len(series_dirs)} sub-folder(s), {quarantine.height} unusable file(s)"
            + (f" (e.g. {quarantine['path'][0]}: {quarantine['message'][0]})" if quarantine.height else "")
            + (f", {len(loose)} loose file(s) such as {loose[0]}" if loose else "")
        )
        raise NotAStudyError(
            f"{root} holds no readable DICOM in {{series_id}}/{{instance}}.dcm sub-folders: {holds}"
        )
    raw: dict[int, str | None] = {}
    for series_id in meta["series_id"].unique().sort().to_list():
        if series_descriptions and int(series_id) in series_descriptions:
            raw[int(series_id)] = series_descriptions[int(series_id)]
        else:
            first = meta.filter(pl.col("series_id") == series_id)["path"][0]
            raw[int(series_id)] = _dicom_description(root / first)
    types = {s: normalise_description(d) for s, d in raw.items()}
    meta = (
        meta.with_columns(
            pl.lit("test").alias("split"),
            pl.col("series_id")
            .replace_strict(types, default=None, return_dtype=pl.Utf8)
            .alias("series_description"),
        )
        .select(list(METADATA_SCHEMA))
        .sort("series_id", "instance_number")
    )
    return StudyScan(sid, root, meta, quarantine, types, raw)
