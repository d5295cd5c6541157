"""Carry disc levels between series through patient space.

The sagittal localisers give each level a patient point (the canal point on the Sagittal
T2/STIR, or the middle of the left and right foramina on the Sagittal T1 when the T2 is
missing). An axial series may hold several stacks (one per disc, or overlapping blocks); for
each level the slice whose plane passes nearest the level point is chosen over every stack of
every axial series, provided the point projects inside that slice's image.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from lss_pipeline.core.constants import LEVELS
from lss_pipeline.core.crops.geometry import patient_to_pixel
from lss_pipeline.core.localise.series import Stack

# A level farther than this from every axial slice is not covered by the axial series.
MAX_SLICE_DISTANCE_FACTOR = 1.5  # times the stack's slice step
MIN_SLICE_DISTANCE_MM = 4.0


@dataclass(frozen=True)
class SliceChoice:
    stack: Stack
    index: int  # slice index in the stack (position order)
    distance_mm: float  # signed, along the slice normal, from the plane to the target point
    x: float  # the point projected on the slice, image column
    y: float  # image row


def level_points(
    canal: dict[str, np.ndarray] | None,
    left: dict[str, np.ndarray] | None,
    right: dict[str, np.ndarray] | None,
) -> dict[str, np.ndarray]:
    """Level -> patient point: the canal point where known, else the middle of the two foramina."""
    out: dict[str, np.ndarray] = {}
    for level in LEVELS:
        if canal and level in canal:
            out[level] = np.asarray(canal[level], dtype=np.float64)
        elif left and right and level in left and level in right:
            out[level] = (np.asarray(left[level]) + np.asarray(right[level])) / 2.0
    return out


def _step(stack: Stack) -> float:
    positions = np.array([g.ipp @ stack.geometries[0].normal for g in stack.geometries])
    gaps = np.diff(np.sort(positions))
    gaps = gaps[gaps > 1e-6]
    return float(np.median(gaps)) if gaps.size else 0.0


def nearest_slice(stacks: Iterable[Stack], point: np.ndarray, offset_mm: float = 0.0) -> SliceChoice | None:
    """The slice nearest ``point`` moved ``offset_mm`` along each stack's normal (head-wards for
    an axial stack, see ``CropFrame``), among slices the point projects inside; None when the
    nearest is farther than the coverage limit."""
    best: SliceChoice | None = None
    best_limit = 0.0
    for stack in stacks:
        target = np.asarray(point, dtype=np.float64) + offset_mm * stack.frame.n
        step = _step(stack)
        for i, geom in enumerate(stack.geometries):
            x, y, dist = patient_to_pixel(geom, target)
            row = stack.rows[i]
            if not (0 <= x < row["columns"] and 0 <= y < row["rows"]):
                continue
            if best is None or abs(float(dist)) < abs(best.distance_mm):
                best = SliceChoice(stack, i, float(dist), float(x), float(y))
                best_limit = max(MIN_SLICE_DISTANCE_MM, MAX_SLICE_DISTANCE_FACTOR * step)
    if best is None or abs(best.distance_mm) > best_limit:
        return None
    return best
