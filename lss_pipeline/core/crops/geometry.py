"""Patient-space geometry of DICOM slices: pixel <-> patient transforms and the crop frame.

Conventions (DICOM PS3.3 C.7.6.2, patient axes LPS: +x towards the patient's Left, +y
Posterior, +z Head): a pixel at column ``x`` and row ``y`` lies at

    P = IPP + x * spacing_col * row_dir + y * spacing_row * col_dir

where ``row_dir`` = IOP[0:3] (direction of increasing column index), ``col_dir`` = IOP[3:6],
``spacing_row`` = PixelSpacing[0] (distance between rows) and ``spacing_col`` =
PixelSpacing[1] (distance between columns). A slice's own normal is ``row_dir x col_dir``;
its ``slice_position`` column is ``IPP . normal``. Instance numbers are NOT spatial order.

A crop is not cut in array order but on a grid in patient space (:class:`CropFrame`): its
width, height and slice axes are fixed patient directions, so a series stored flipped,
transposed or in reversed slice order gives the same crop, and "left" always means the
patient's left (LPS +x).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

IPP_COLUMNS = ("ipp_x", "ipp_y", "ipp_z")
IOP_ROW_COLUMNS = ("iop_row_x", "iop_row_y", "iop_row_z")
IOP_COL_COLUMNS = ("iop_col_x", "iop_col_y", "iop_col_z")
NORMAL_COLUMNS = ("normal_x", "normal_y", "normal_z")
GEOMETRY_COLUMNS = (
    *IPP_COLUMNS,
    *IOP_ROW_COLUMNS,
    *IOP_COL_COLUMNS,
    "pixel_spacing_row",
    "pixel_spacing_col",
)

Plane = Literal["sagittal", "coronal", "axial"]

# Crop axes per plane, as the radiologist's standard view shows them (width, height), in LPS.
# The slice axis is width x height, so the frame is right-handed:
#   sagittal: width anterior->posterior (+y), height head->feet (-z); slices run towards the
#             patient's right (-x), i.e. channel 0 is the most leftward slice.
#   axial:    width patient right->left (+x), height anterior->posterior (+y); slices run
#             towards the head (+z).
#   coronal:  width patient right->left (+x), height head->feet (-z); slices run posterior (+y).
_PLANE_AXES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
}
_PLANE_OF_AXIS: tuple[Plane, Plane, Plane] = ("sagittal", "coronal", "axial")


@dataclass(frozen=True)
class SliceGeometry:
    """Geometry of one DICOM instance, in patient coordinates (mm)."""

    ipp: np.ndarray  # (3,)
    row_dir: np.ndarray  # (3,) unit, direction of increasing column index x
    col_dir: np.ndarray  # (3,) unit, direction of increasing row index y
    spacing_row: float  # mm between rows (PixelSpacing[0]) -> y scale
    spacing_col: float  # mm between columns (PixelSpacing[1]) -> x scale

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.row_dir, self.col_dir)
        return n / np.linalg.norm(n)

    @property
    def position(self) -> float:
        return float(self.ipp @ self.normal)

    @classmethod
    def from_row(cls, row: dict) -> SliceGeometry:
        """Build from a ``dicom_metadata`` row (a dict, e.g. from ``df.row(i, named=True)``)."""
        missing = [c for c in GEOMETRY_COLUMNS if row.get(c) is None]
        if missing:
            raise ValueError(f"instance {row.get('path', '?')}: geometry columns are null: {missing}")
        row_dir = np.array([row[c] for c in IOP_ROW_COLUMNS], dtype=np.float64)
        col_dir = np.array([row[c] for c in IOP_COL_COLUMNS], dtype=np.float64)
        if np.linalg.norm(np.cross(row_dir, col_dir)) < 1e-6:
            raise ValueError(f"instance {row.get('path', '?')}: ImageOrientationPatient has parallel axes")
        spacing_row, spacing_col = float(row["pixel_spacing_row"]), float(row["pixel_spacing_col"])
        if not (spacing_row > 0 and spacing_col > 0):
            raise ValueError(
                f"instance {row.get('path', '?')}: PixelSpacing {spacing_row}, {spacing_col} not > 0"
            )
        return cls(
            ipp=np.array([row[c] for c in IPP_COLUMNS], dtype=np.float64),
            row_dir=unit(row_dir),
            col_dir=unit(col_dir),
            spacing_row=spacing_row,
            spacing_col=spacing_col,
        )


def unit(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to length 1 along its last axis (zero vectors stay zero)."""
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(norm == 0, 1.0, norm)


def pixel_to_patient(geom: SliceGeometry, x: float | np.ndarray, y: float | np.ndarray) -> np.ndarray:
    """Patient coordinates (mm) of pixel column ``x``, row ``y``; shape (..., 3)."""
    x = np.asarray(x, dtype=np.float64)[..., None]
    y = np.asarray(y, dtype=np.float64)[..., None]
    return geom.ipp + x * geom.spacing_col * geom.row_dir + y * geom.spacing_row * geom.col_dir


def patient_to_pixel(geom: SliceGeometry, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project patient points (..., 3) onto the slice: (x column, y row, distance along normal in mm)."""
    d = np.asarray(points, dtype=np.float64) - geom.ipp
    x = d @ geom.row_dir / geom.spacing_col
    y = d @ geom.col_dir / geom.spacing_row
    dist = d @ geom.normal
    return x, y, dist


def add_slice_position(metadata: pl.DataFrame) -> pl.DataFrame:
    """Add (or recompute) ``normal_*`` and ``slice_position`` from IPP and IOP columns."""
    r = metadata.select(IOP_ROW_COLUMNS).to_numpy().astype(np.float64)
    c = metadata.select(IOP_COL_COLUMNS).to_numpy().astype(np.float64)
    n = unit(np.cross(r, c))
    ipp = metadata.select(IPP_COLUMNS).to_numpy().astype(np.float64)
    pos = np.einsum("ij,ij->i", ipp, n)
    return metadata.with_columns(
        pl.Series("normal_x", n[:, 0]),
        pl.Series("normal_y", n[:, 1]),
        pl.Series("normal_z", n[:, 2]),
        pl.Series("slice_position", pos),
    )


def plane_of(normal: np.ndarray) -> Plane:
    """The anatomical plane a slice normal is closest to (its largest LPS component)."""
    return _PLANE_OF_AXIS[int(np.argmax(np.abs(np.asarray(normal, dtype=np.float64))))]


@dataclass(frozen=True)
class CropFrame:
    """Patient directions of a crop's width (``u``), height (``v``) and slice order (``n``).

    ``u`` and ``v`` lie in the stack's plane; ``n = u x v`` is the stack normal, signed so that
    channel order is a patient direction (see the table at the top of this module), never the
    file or instance order.
    """

    plane: Plane
    u: np.ndarray
    v: np.ndarray
    n: np.ndarray

    @classmethod
    def for_normal(cls, stack_normal: np.ndarray) -> CropFrame:
        """The frame of a stack whose slices have ``stack_normal`` (either sign).

        The plane's template width axis is projected into the slice plane (an oblique stack
        keeps its tilt through-plane but not a rotation in-plane), height completes it.
        """
        normal = unit(np.asarray(stack_normal, dtype=np.float64))
        plane = plane_of(normal)
        width, height = (np.array(a) for a in _PLANE_AXES[plane])
        template_n = np.cross(width, height)
        if normal @ template_n < 0:
            normal = -normal
        u = unit(width - (width @ normal) * normal)
        v = np.cross(normal, u)  # in-plane, orthogonal to u; u x v = normal
        return cls(plane=plane, u=u, v=v, n=normal)

    def slice_position(self, ipp: np.ndarray) -> np.ndarray:
        """Position (mm) of slices with these IPPs along ``n``: the channel order of a crop."""
        return np.asarray(ipp, dtype=np.float64) @ self.n


def stack_normal(normals: np.ndarray) -> np.ndarray:
    """One normal for a stack: the mean of its slices' normals, signs aligned to the first."""
    normals = unit(np.asarray(normals, dtype=np.float64).reshape(-1, 3))
    signs = np.where(normals @ normals[0] < 0, -1.0, 1.0)
    return unit((normals * signs[:, None]).mean(axis=0))


def nearest_slices(series: pl.DataFrame, points: np.ndarray) -> pl.DataFrame:
    """Where patient points (n, 3) fall in one series: per point, the slice nearest along its
    own normal among the slices whose image contains the point's projection.

    ``series``: ``dicom_metadata`` rows of one series (any number of stacks). Returns one row
    per point: ``instance_number`` (null when no slice's image contains the point), ``x``,
    ``y`` (pixel column and row on that slice) and ``distance_mm`` (signed, along the slice
    normal). Carries a level found on one series into another (e.g. sagittal -> axial), and
    picks the right stack of a multi-stack axial series by construction.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    ipp = series.select(IPP_COLUMNS).to_numpy().astype(np.float64)  # (s, 3)
    row = unit(series.select(IOP_ROW_COLUMNS).to_numpy().astype(np.float64))
    col = unit(series.select(IOP_COL_COLUMNS).to_numpy().astype(np.float64))
    normal = unit(np.cross(row, col))
    d = pts[:, None, :] - ipp[None, :, :]  # (n, s, 3)
    x = np.einsum("nsk,sk->ns", d, row) / series["pixel_spacing_col"].to_numpy()
    y = np.einsum("nsk,sk->ns", d, col) / series["pixel_spacing_row"].to_numpy()
    dist = np.einsum("nsk,sk->ns", d, normal)
    inside = (x >= -0.5) & (x <= series["columns"].to_numpy() - 0.5)
    inside &= (y >= -0.5) & (y <= series["rows"].to_numpy() - 0.5)
    score = np.where(inside, np.abs(dist), np.inf)
    best = np.argmin(score, axis=1) if series.height else np.zeros(len(pts), dtype=np.int64)
    found = np.isfinite(score[np.arange(len(pts)), best]) if series.height else np.zeros(len(pts), dtype=bool)
    pick = np.arange(len(pts))
    numbers = series["instance_number"].to_numpy()
    return pl.DataFrame(
        {
            "instance_number": [int(numbers[b]) if ok else None for b, ok in zip(best, found)],
            "x": [float(x[i, b]) if ok else None for i, b, ok in zip(pick, best, found)],
            "y": [float(y[i, b]) if ok else None for i, b, ok in zip(pick, best, found)],
            "distance_mm": [float(dist[i, b]) if ok else None for i, b, ok in zip(pick, best, found)],
        },
        schema={"instance_number": pl.Int64, "x": pl.Float64, "y": pl.Float64, "distance_mm": pl.Float64},
    )
