"""DICOM slice geometry: pixel <-> patient transforms, spatial slice order, stack splitting.

Conventions (DICOM PS3.3 C.7.6.2): a pixel at column ``x`` and row ``y`` lies at

    P = IPP + x * spacing_col * row_dir + y * spacing_row * col_dir

where ``row_dir`` = IOP[0:3] (direction along a row, i.e. increasing column index),
``col_dir`` = IOP[3:6], ``spacing_row`` = PixelSpacing[0] (distance between rows) and
``spacing_col`` = PixelSpacing[1] (distance between columns). The slice normal is
``row_dir x col_dir`` and a slice's position along it is ``IPP . normal`` (the
``slice_position`` column of ``dicom_metadata``). Instance numbers are NOT spatial order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

IPP_COLUMNS = ("ipp_x", "ipp_y", "ipp_z")
IOP_ROW_COLUMNS = ("iop_row_x", "iop_row_y", "iop_row_z")
IOP_COL_COLUMNS = ("iop_col_x", "iop_col_y", "iop_col_z")
NORMAL_COLUMNS = ("normal_x", "normal_y", "normal_z")
GEOMETRY_COLUMNS = (*IPP_COLUMNS, *IOP_ROW_COLUMNS, *IOP_COL_COLUMNS, "pixel_spacing_row", "pixel_spacing_col")

# Two slices belong to different stacks when their normals differ by more than this.
STACK_ANGLE_TOL_DEG = 5.0
# ... or when, in one orientation, the gap to the next slice exceeds this many times the
# median slice spacing (a second block of slices at another disc level).
STACK_GAP_FACTOR = 2.5


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
    def from_row(cls, row: dict) -> "SliceGeometry":
        """Build from a ``dicom_metadata`` row (a dict, e.g. from ``df.row(i, named=True)``)."""
        missing = [c for c in GEOMETRY_COLUMNS if row.get(c) is None]
        if missing:
            raise ValueError(f"instance {row.get('path', '?')}: geometry columns are null: {missing}")
        return cls(
            ipp=np.array([row[c] for c in IPP_COLUMNS], dtype=np.float64),
            row_dir=_unit(np.array([row[c] for c in IOP_ROW_COLUMNS], dtype=np.float64)),
            col_dir=_unit(np.array([row[c] for c in IOP_COL_COLUMNS], dtype=np.float64)),
            spacing_row=float(row["pixel_spacing_row"]),
            spacing_col=float(row["pixel_spacing_col"]),
        )


def _unit(v: np.ndarray) -> np.ndarray:
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
    n = _unit(np.cross(r, c))
    ipp = metadata.select(IPP_COLUMNS).to_numpy().astype(np.float64)
    pos = np.einsum("ij,ij->i", ipp, n)
    return metadata.with_columns(
        pl.Series("normal_x", n[:, 0]),
        pl.Series("normal_y", n[:, 1]),
        pl.Series("normal_z", n[:, 2]),
        pl.Series("slice_position", pos),
    )


def split_stacks(
    normals: np.ndarray,
    ipps: np.ndarray,
    *,
    angle_tol_deg: float = STACK_ANGLE_TOL_DEG,
    gap_factor: float = STACK_GAP_FACTOR,
) -> np.ndarray:
    """Stack id (0..S-1) per slice of one series.

    Slices are grouped by orientation (normals within ``angle_tol_deg``), then each
    orientation group is cut where the gap between spatially consecutive slices exceeds
    ``gap_factor`` times the group's median gap. Stacks are numbered by first appearance in
    the input order, so the ids are deterministic.
    """
    normals = _unit(np.asarray(normals, dtype=np.float64))
    ipps = np.asarray(ipps, dtype=np.float64)
    n = len(normals)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    cos_tol = np.cos(np.deg2rad(angle_tol_deg))
    # Greedy orientation clustering; a series has few orientations, so this is cheap.
    orient = np.full(n, -1, dtype=np.int64)
    centres: list[np.ndarray] = []
    for i in range(n):
        for k, centre in enumerate(centres):
            if abs(float(normals[i] @ centre)) >= cos_tol:
                orient[i] = k
                break
        else:
            centres.append(normals[i])
            orient[i] = len(centres) - 1

    raw_stack = np.full(n, -1, dtype=np.int64)
    next_id = 0
    for k, centre in enumerate(centres):
        members = np.flatnonzero(orient == k)
        # Orient the reference normal consistently so positions are comparable.
        pos = ipps[members] @ centre
        order = np.argsort(pos, kind="stable")
        gaps = np.diff(pos[order])
        cut_after = np.zeros(len(members), dtype=bool)
        positive = gaps[gaps > 1e-6]
        if len(positive) >= 2:
            median_gap = float(np.median(positive))
            cut_after[:-1] = gaps > gap_factor * median_gap
        block = np.concatenate([[0], np.cumsum(cut_after[:-1])])
        raw_stack[members[order]] = next_id + block
        next_id += int(block[-1]) + 1

    # Renumber by first appearance so ids do not depend on clustering internals.
    _, first = np.unique(raw_stack, return_index=True)
    ranking = {int(raw_stack[i]): r for r, i in enumerate(sorted(first))}
    return np.array([ranking[int(s)] for s in raw_stack], dtype=np.int64)


def assign_stacks(metadata: pl.DataFrame) -> pl.DataFrame:
    """Add a ``stack_id`` column (Int32, per series) to ``dicom_metadata`` rows.

    Rows are sorted by (study_id, series_id, instance_number) in the result.
    """
    if metadata.height == 0:
        return metadata.with_columns(pl.lit(None, dtype=pl.Int32).alias("stack_id"))
    meta = metadata.sort(["study_id", "series_id", "instance_number"])
    normals = meta.select(NORMAL_COLUMNS).to_numpy().astype(np.float64)
    ipps = meta.select(IPP_COLUMNS).to_numpy().astype(np.float64)
    stack_ids = np.zeros(meta.height, dtype=np.int32)
    keys = meta.select("study_id", "series_id").to_numpy()
    # Boundaries of consecutive runs of one (study, series).
    change = np.ones(meta.height, dtype=bool)
    change[1:] = np.any(keys[1:] != keys[:-1], axis=1)
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], meta.height)
    for s, e in zip(starts, ends):
        stack_ids[s:e] = split_stacks(normals[s:e], ipps[s:e])
    return meta.with_columns(pl.Series("stack_id", stack_ids, dtype=pl.Int32))


def spatial_order(slice_positions: np.ndarray) -> np.ndarray:
    """Indices that sort slices by position along the normal (stable for ties)."""
    return np.argsort(np.asarray(slice_positions, dtype=np.float64), kind="stable")


def neighbour_indices(centre: int, n_available: int, n_slices: int) -> tuple[np.ndarray, int]:
    """Indices (into a spatially sorted stack) of ``n_slices`` slices centred on ``centre``.

    Missing neighbours past either end of the stack replicate the edge slice. Returns the
    indices and how many were replicated.
    """
    if n_slices < 1:
        raise ValueError(f"n_slices must be >= 1, got {n_slices}")
    if not 0 <= centre < n_available:
        raise IndexError(f"centre {centre} outside a stack of {n_available} slices")
    half = n_slices // 2
    wanted = np.arange(centre - half, centre - half + n_slices)
    clipped = np.clip(wanted, 0, n_available - 1)
    return clipped, int(np.count_nonzero(wanted != clipped))
