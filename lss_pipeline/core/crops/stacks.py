"""Stacks: the slices of a series that form one regular block, and their order in space.

A series may hold several stacks: an axial T2 is often acquired as blocks angled to each disc,
sometimes as parallel blocks that overlap in space. A stack is a set of slices that

1. share one orientation (normals within ``STACK_ANGLE_TOL_DEG``, either sign),
2. do not overlap in space: when two slices of one orientation sit (nearly) at the same
   position, the instance numbers tell the acquisitions apart. Slices of one acquisition are
   numbered in a run that moves one way through space; runs are merged again when together
   they are still one regular block at their own step (a slice numbered out of turn). An
   interleaved acquisition numbered in two runs stays two stacks at twice the step: it cannot
   be told from two stacks offset by half a slice. A series whose numbering carries no
   spatial order (shuffled) is split on space alone;
3. have no large gap: a gap over ``STACK_GAP_FACTOR`` times the usual slice step starts a new
   stack (a block at another disc level).

Inside a stack, slices are ordered along ONE stack normal (``CropFrame.n``, a patient
direction), never by each slice's own projected position or by instance number.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from lss_pipeline.core.crops.geometry import (
    IPP_COLUMNS,
    NORMAL_COLUMNS,
    CropFrame,
    add_slice_position,
    stack_normal,
    unit,
)

# Two slices belong to different stacks when their normals differ by more than this.
STACK_ANGLE_TOL_DEG = 5.0
# A gap over this many times the median slice step cuts a stack.
STACK_GAP_FACTOR = 2.5
# Slices closer than this share of the usual step overlap in space (two acquisitions).
OVERLAP_FRACTION = 0.5
# Two runs merge when the gaps of their union stay within this share of their step.
REGULAR_TOLERANCE = 0.3
# Numbering is taken as spatial only when its runs average at least this many slices.
MIN_MEAN_RUN = 3.0


def _orientation_groups(normals: np.ndarray, angle_tol_deg: float) -> list[np.ndarray]:
    """Indices per orientation, greedy on the first normal of each group (a series has few)."""
    cos_tol = np.cos(np.deg2rad(angle_tol_deg))
    centres: list[np.ndarray] = []
    group = np.empty(len(normals), dtype=np.int64)
    for i, normal in enumerate(normals):
        for k, centre in enumerate(centres):
            if abs(float(normal @ centre)) >= cos_tol:
                group[i] = k
                break
        else:
            centres.append(normal)
            group[i] = len(centres) - 1
    return [np.flatnonzero(group == k) for k in range(len(centres))]


def _instance_runs(pos: np.ndarray, instance_numbers: np.ndarray) -> list[np.ndarray]:
    """Split slices (positions along one normal) into runs of consecutive instance numbers that
    move one way through space at no less than the usual step. One run when the numbering is
    not spatial at all (shuffled), since it then tells nothing apart."""
    order = np.argsort(instance_numbers, kind="stable")
    n = len(order)
    if n < 3:
        return [order]
    steps = np.diff(pos[order])
    moving = np.abs(steps)[np.abs(steps) > 1e-6]
    if moving.size == 0:
        return [order]
    typical = float(np.median(moving))
    runs: list[list[int]] = [[int(order[0])]]
    direction = 0.0
    for k, step in enumerate(steps):
        # A short step cannot continue a run: a slice of another acquisition sits close by.
        overlap = abs(step) < (1.0 - REGULAR_TOLERANCE) * typical
        turned = direction != 0.0 and np.sign(step) != direction
        if overlap or turned:
            runs.append([int(order[k + 1])])
            direction = 0.0
        else:
            runs[-1].append(int(order[k + 1]))
            direction = float(np.sign(step))
    if n / len(runs) < MIN_MEAN_RUN:
        return [order]
    return [np.array(r, dtype=np.int64) for r in runs]


def _median_step(pos: np.ndarray) -> float:
    gaps = np.diff(np.sort(pos))
    gaps = gaps[gaps > 1e-6]
    return float(np.median(gaps)) if gaps.size else 0.0


def _can_merge(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two runs of slice positions (one orientation) can be one stack: side by side
    without touching, or together one regular block at the runs' own step (a slice numbered
    out of turn). Runs that interleave at half their step stay apart: two acquisitions offset
    by half a slice look exactly like that."""
    step = max(_median_step(a), _median_step(b))
    lo_a, hi_a, lo_b, hi_b = a.min(), a.max(), b.min(), b.max()
    if hi_a < lo_b or hi_b < lo_a:
        boundary = min(abs(lo_b - hi_a), abs(lo_a - hi_b))
        return step == 0.0 or boundary >= OVERLAP_FRACTION * step
    gaps = np.diff(np.sort(np.concatenate([a, b])))
    median = float(np.median(gaps))
    regular = median > 1e-6 and bool(np.all(np.abs(gaps - median) <= REGULAR_TOLERANCE * median))
    return regular and (step == 0.0 or abs(median - step) <= REGULAR_TOLERANCE * step)


def _cut_gaps(members: np.ndarray, pos: np.ndarray, gap_factor: float) -> list[np.ndarray]:
    """Cut ``members`` (positions ``pos``) where the spatial gap is large."""
    order = np.argsort(pos, kind="stable")
    gaps = np.diff(pos[order])
    positive = gaps[gaps > 1e-6]
    if len(positive) < 2:
        return [members[order]]
    cut_after = gaps > gap_factor * float(np.median(positive))
    block = np.concatenate([[0], np.cumsum(cut_after)])
    return [members[order][block == b] for b in range(int(block[-1]) + 1)]


def split_stacks(
    normals: np.ndarray,
    ipps: np.ndarray,
    instance_numbers: np.ndarray | None = None,
    *,
    angle_tol_deg: float = STACK_ANGLE_TOL_DEG,
    gap_factor: float = STACK_GAP_FACTOR,
) -> np.ndarray:
    """Stack id (0..S-1) per slice of one series (rules in the module docstring).

    Without ``instance_numbers`` overlapping slices of one orientation cannot be told apart
    and stay in one stack. Stacks are numbered by first appearance in the input order, so the
    ids are deterministic.
    """
    normals = unit(np.asarray(normals, dtype=np.float64).reshape(-1, 3))
    ipps = np.asarray(ipps, dtype=np.float64).reshape(-1, 3)
    n = len(normals)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    raw_stack = np.full(n, -1, dtype=np.int64)
    next_id = 0
    for members in _orientation_groups(normals, angle_tol_deg):
        pos = ipps[members] @ stack_normal(normals[members])
        runs = (
            [np.arange(len(members))]
            if instance_numbers is None
            else _instance_runs(pos, np.asarray(instance_numbers)[members])
        )
        stacks: list[np.ndarray] = []
        for run in runs:
            for k, stack in enumerate(stacks):
                if _can_merge(pos[stack], pos[run]):
                    stacks[k] = np.concatenate([stack, run])
                    break
            else:
                stacks.append(run)
        for stack in stacks:
            for block in _cut_gaps(stack, pos[stack], gap_factor):
                raw_stack[members[block]] = next_id
                next_id += 1
    # Renumber by first appearance so ids do not depend on the grouping internals.
    _, first = np.unique(raw_stack, return_index=True)
    ranking = {int(raw_stack[i]): r for r, i in enumerate(sorted(first))}
    return np.array([ranking[int(s)] for s in raw_stack], dtype=np.int64)


def assign_stacks(metadata: pl.DataFrame) -> pl.DataFrame:
    """Add ``stack_id`` (Int32, per series) and ``stack_position`` (Float64, mm along the
    stack's :class:`CropFrame` normal: the order of a crop's channels) to ``dicom_metadata`` rows.

    Rows come back sorted by (study_id, series_id, instance_number).
    """
    if metadata.height == 0:
        return metadata.with_columns(
            pl.lit(None, dtype=pl.Int32).alias("stack_id"),
            pl.lit(None, dtype=pl.Float64).alias("stack_position"),
        )
    if not all(c in metadata.columns for c in NORMAL_COLUMNS):
        metadata = add_slice_position(metadata)
    meta = metadata.sort(["study_id", "series_id", "instance_number"])
    normals = meta.select(NORMAL_COLUMNS).to_numpy().astype(np.float64)
    ipps = meta.select(IPP_COLUMNS).to_numpy().astype(np.float64)
    numbers = meta["instance_number"].to_numpy()
    stack_ids = np.zeros(meta.height, dtype=np.int32)
    positions = np.zeros(meta.height, dtype=np.float64)
    keys = meta.select("study_id", "series_id").to_numpy()
    change = np.ones(meta.height, dtype=bool)
    change[1:] = np.any(keys[1:] != keys[:-1], axis=1)
    starts = np.flatnonzero(change)
    for s, e in zip(starts, np.append(starts[1:], meta.height)):
        ids = split_stacks(normals[s:e], ipps[s:e], numbers[s:e])
        stack_ids[s:e] = ids
        for sid in np.unique(ids):
            rows = s + np.flatnonzero(ids == sid)
            frame = CropFrame.for_normal(stack_normal(normals[rows]))
            positions[rows] = frame.slice_position(ipps[rows])
    return meta.with_columns(
        pl.Series("stack_id", stack_ids, dtype=pl.Int32),
        pl.Series("stack_position", positions, dtype=pl.Float64),
    )


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
