"""Columns of ``dicom_metadata.parquet`` and ``quarantine.parquet``, and the quarantine reasons."""

from __future__ import annotations

import polars as pl

QUARANTINE_STAGE = "dicom_metadata"

METADATA_SCHEMA: dict[str, pl.DataType] = {
    "study_id": pl.Int64(),
    "series_id": pl.Int64(),
    "instance_number": pl.Int64(),
    "split": pl.Utf8(),
    "series_description": pl.Utf8(),
    "path": pl.Utf8(),
    "instance_number_tag": pl.Int64(),
    "rows": pl.Int32(),
    "columns": pl.Int32(),
    "pixel_spacing_row": pl.Float64(),
    "pixel_spacing_col": pl.Float64(),
    "slice_thickness": pl.Float64(),
    "spacing_between_slices": pl.Float64(),
    "ipp_x": pl.Float64(),
    "ipp_y": pl.Float64(),
    "ipp_z": pl.Float64(),
    "iop_row_x": pl.Float64(),
    "iop_row_y": pl.Float64(),
    "iop_row_z": pl.Float64(),
    "iop_col_x": pl.Float64(),
    "iop_col_y": pl.Float64(),
    "iop_col_z": pl.Float64(),
    "normal_x": pl.Float64(),
    "normal_y": pl.Float64(),
    "normal_z": pl.Float64(),
    "slice_position": pl.Float64(),
    "transfer_syntax_uid": pl.Utf8(),
    "photometric_interpretation": pl.Utf8(),
    "modality": pl.Utf8(),
    "bits_allocated": pl.Int32(),
    "bits_stored": pl.Int32(),
    "samples_per_pixel": pl.Int32(),
    "file_size_bytes": pl.Int64(),
}
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "path": pl.Utf8(),
    "stage": pl.Utf8(),
    "error_type": pl.Utf8(),
    "message": pl.Utf8(),
}
# Columns a header read fills, in order (split and series_description come from the folder scan).
HEADER_COLUMNS: tuple[str, ...] = tuple(
    c for c in METADATA_SCHEMA if c not in ("split", "series_description")
)

# error_type -> what it means; one bad file is a quarantine row, never a failed run.
ERROR_TYPES: dict[str, str] = {
    "bad_path": "not {train|test}_images/{study}/{series}/{instance}.dcm with numeric ids",
    "empty": "the file has 0 bytes",
    "not_dicom": "no DICOM preamble and no readable image header",
    "read_error": "pydicom failed on the header (the message says how)",
    "truncated": "the file ends inside its header or before its pixel data does",
    "no_pixel_data": "a complete header without a PixelData element",
    "missing_tags": "a required geometry / pixel-layout tag is absent",
    "bad_geometry": "a geometry tag has the wrong multiplicity, a non-numeric or degenerate value",
    "unsupported_pixel_layout": "several frames, colour samples, odd bit depths, too few pixel bytes",
    "unsupported_transfer_syntax": "compressed with a syntax no installed decoder handles",
    "duplicate_instance": "another file of the series has the same instance number (1.dcm and 01.dcm)",
}


class QuarantineError(Exception):
    """A file that cannot be used; ``error_type`` is a key of ``ERROR_TYPES``."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
