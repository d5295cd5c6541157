"""Hand-built series for the crop tests: .npy 'pixel files' plus dicom_metadata-like rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from lss_pipeline.core import constants
from lss_pipeline.core.crops.geometry import SliceGeometry, pixel_to_patient

SAG_ROW = (0.0, 1.0, 0.0)
SAG_COL = (0.0, 0.0, -1.0)
AX_ROW = (1.0, 0.0, 0.0)
AX_COL = (0.0, 1.0, 0.0)
SCS = "Spinal Canal Stenosis"


def write_series(
    raw: Path,
    study: int,
    series: int,
    description: str,
    images: list[np.ndarray],
    ipps: list[tuple],
    instance_numbers: list[int],
    *,
    row_dir=SAG_ROW,
    col_dir=SAG_COL,
    spacing=(1.0, 1.0),
    row_dirs: list[tuple] | None = None,
    col_dirs: list[tuple] | None = None,
) -> pl.DataFrame:
    """Write one series as .npy 'pixel files' under ``raw`` and return its dicom_metadata-like rows."""
    rows = []
    for k, (img, ipp, inst) in enumerate(zip(images, ipps, instance_numbers)):
        rel = f"train_images/{study}/{series}/{inst}.npy"
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(raw / rel, np.asarray(img, dtype=np.float32))
        r = np.array(row_dirs[k] if row_dirs else row_dir, dtype=float)
        c = np.array(col_dirs[k] if col_dirs else col_dir, dtype=float)
        n = np.cross(r, c)
        rows.append(
            {
                "study_id": study,
                "series_id": series,
                "instance_number": inst,
                "series_description": description,
                "path": rel,
                "rows": img.shape[0],
                "columns": img.shape[1],
                "pixel_spacing_row": spacing[0],
                "pixel_spacing_col": spacing[1],
                "ipp_x": ipp[0],
                "ipp_y": ipp[1],
                "ipp_z": ipp[2],
                "iop_row_x": r[0],
                "iop_row_y": r[1],
                "iop_row_z": r[2],
                "iop_col_x": c[0],
                "iop_col_y": c[1],
                "iop_col_z": c[2],
                "normal_x": n[0],
                "normal_y": n[1],
                "normal_z": n[2],
                "slice_position": float(np.dot(ipp, n)),
            }
        )
    return pl.DataFrame(rows)


def label_rows(rows: list[dict]) -> pl.DataFrame:
    """A labels table (the columns crops need) from short dicts: study_id, condition, level, ..."""
    out = []
    for r in rows:
        cond = r["condition"]
        level = r.get("level", "L4/L5")
        slug = level.lower().replace("/", "_")
        out.append(
            {
                "study_id": r["study_id"],
                "category": constants.CONDITION_CATEGORY[cond],
                "condition": cond,
                "side": constants.CONDITION_SIDE[cond],
                "level": level,
                "label": r.get("label", 0),
                "row_id": f"{r['study_id']}_{constants.CONDITION_STEM[cond]}_{slug}",
                "series_id": r.get("series_id"),
                "instance_number": r.get("instance_number"),
                "x": r.get("x"),
                "y": r.get("y"),
            }
        )
    return pl.DataFrame(
        out,
        schema={
            "study_id": pl.Int64,
            "category": pl.Utf8,
            "condition": pl.Utf8,
            "side": pl.Utf8,
            "level": pl.Utf8,
            "label": pl.Int8,
            "row_id": pl.Utf8,
            "series_id": pl.Int64,
            "instance_number": pl.Int64,
            "x": pl.Float64,
            "y": pl.Float64,
        },
    )


# A smooth, asymmetric patient-space scene: blobs around the origin (mm), none mirror-symmetric,
# so a crop that flips an axis or reverses the slice order differs from the right one.
_BLOBS = (  # centre (x, y, z) mm, sigma mm, amplitude
    ((-4.0, 6.0, 3.0), 4.0, 900.0),
    ((5.0, -3.0, -6.0), 3.5, 600.0),
    ((1.0, 9.0, -9.0), 5.0, 400.0),
    ((3.0, -8.0, 8.0), 3.0, 700.0),
)


def scene(points: np.ndarray) -> np.ndarray:
    """Intensity of the scene at patient points (..., 3)."""
    p = np.asarray(points, dtype=np.float64)
    value = 200.0 + p @ np.array([3.0, 2.0, -1.5])
    for centre, sigma, amp in _BLOBS:
        value = value + amp * np.exp(-np.sum((p - np.array(centre)) ** 2, axis=-1) / (2 * sigma**2))
    return value


def mirrored_scene(points: np.ndarray) -> np.ndarray:
    """:func:`scene` offset to the patient's left and mirrored onto the right: symmetric about
    the mid-sagittal plane (x = 0), as a patient's two sides are meant to be."""
    p = np.asarray(points, dtype=np.float64)
    shift = np.array([15.0, 0.0, 0.0])
    return scene(p - shift) + scene(p * np.array([-1.0, 1.0, 1.0]) - shift)


def slice_ipp(centre: np.ndarray, row_dir, col_dir, spacing, shape) -> np.ndarray:
    """The IPP that puts ``centre`` in the middle of a ``shape`` image."""
    rows, cols = shape
    return (
        np.asarray(centre, dtype=float)
        - (cols - 1) / 2 * spacing[1] * np.asarray(row_dir, dtype=float)
        - (rows - 1) / 2 * spacing[0] * np.asarray(col_dir, dtype=float)
    )


def render_scene_series(
    raw: Path,
    study: int,
    series: int,
    description: str,
    centres: list[np.ndarray],
    instance_numbers: list[int],
    *,
    row_dir,
    col_dir,
    spacing=(0.8, 0.8),
    shape=(96, 96),
    field=None,
) -> tuple[pl.DataFrame, list[SliceGeometry]]:
    """A series whose slice k is centred on ``centres[k]`` and shows ``field`` (default :func:`scene`)."""
    field = field or scene
    images, ipps, geoms = [], [], []
    for centre in centres:
        ipp = slice_ipp(centre, row_dir, col_dir, spacing, shape)
        geom = SliceGeometry(
            ipp=ipp,
            row_dir=np.asarray(row_dir, float),
            col_dir=np.asarray(col_dir, float),
            spacing_row=spacing[0],
            spacing_col=spacing[1],
        )
        ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
        images.append(field(pixel_to_patient(geom, xs, ys)))
        ipps.append(tuple(ipp))
        geoms.append(geom)
    meta = write_series(
        raw,
        study,
        series,
        description,
        images,
        ipps,
        instance_numbers,
        row_dir=row_dir,
        col_dir=col_dir,
        spacing=spacing,
    )
    return meta, geoms
