"""A stack of slices resampled onto a fixed patient-space grid: what the localiser sees.

A canvas is a (depth, size, size) block laid along the stack's
:class:`~lss_pipeline.core.crops.geometry.CropFrame` (width ``u``, height ``v``, depth ``n``),
centred on a patient point, ``mm_per_px`` a pixel and ``depth_step_mm`` between depth
channels. Because the grid lives in patient space, a flipped, transposed, oblique or
non-square-pixel series gives the same canvas, and anatomy has the same size in every study.

In-plane, each native slice is sampled with the crop code's grid and anti-aliasing
(``crops.crop.sample_grid`` / ``sample_slice``); across slices, depth channels interpolate
linearly between the two nearest native slices (0 outside the stack). Intensities are mapped
to [0, 1] from the 1st-99th percentiles of all in-image samples.

Points move between canvas and patient space with :meth:`Canvas.to_patient` and
:meth:`Canvas.from_patient`; :meth:`Canvas.nearest_slice` names the native instance and
pixel that show a patient point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lss_pipeline.core.crops.crop import normalise_windows, sample_grid, sample_slice
from lss_pipeline.core.crops.geometry import CropFrame, SliceGeometry, patient_to_pixel, pixel_to_patient


@dataclass(frozen=True)
class CanvasSpec:
    """Size of a canvas: ``size`` pixels a side, ``mm_per_px``, ``depth`` channels ``depth_step_mm`` apart."""

    size: int
    mm_per_px: float
    depth: int = 1
    depth_step_mm: float = 0.0

    @property
    def extent_mm(self) -> float:
        return self.size * self.mm_per_px

    def depth_offsets(self) -> np.ndarray:
        """Depth (mm along ``n``) of every channel, centred on 0."""
        return (np.arange(self.depth, dtype=np.float64) - (self.depth - 1) / 2.0) * self.depth_step_mm

    def as_dict(self) -> dict[str, float | int]:
        return {
            "size": self.size,
            "mm_per_px": self.mm_per_px,
            "depth": self.depth,
            "depth_step_mm": self.depth_step_mm,
        }


@dataclass(frozen=True)
class NativeSlice:
    """One instance of the stack: its number, geometry and position along the canvas normal."""

    instance_number: int
    geometry: SliceGeometry
    position_mm: float  # along the canvas normal, relative to the canvas centre
    rows: int
    columns: int


@dataclass
class Canvas:
    """A resampled stack; ``image`` is (depth, size, size) float32 in [0, 1], row = height ``v``."""

    image: np.ndarray
    centre: np.ndarray  # (3,) patient mm of the grid centre
    frame: CropFrame
    spec: CanvasSpec
    slices: list[NativeSlice]  # in position order

    def to_patient(self, col: np.ndarray, row: np.ndarray, depth_mm: np.ndarray) -> np.ndarray:
        """Patient mm of canvas column/row (pixel centres at integer + 0.5) and depth; shape (..., 3)."""
        half = self.spec.size / 2.0
        a = (np.asarray(col, dtype=np.float64) - half) * self.spec.mm_per_px
        b = (np.asarray(row, dtype=np.float64) - half) * self.spec.mm_per_px
        d = np.asarray(depth_mm, dtype=np.float64)
        return (
            self.centre
            + a[..., None] * self.frame.u
            + b[..., None] * self.frame.v
            + d[..., None] * self.frame.n
        )

    def from_patient(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(column, row, depth mm) on the canvas of patient points (..., 3)."""
        rel = np.asarray(points, dtype=np.float64) - self.centre
        half = self.spec.size / 2.0
        col = rel @ self.frame.u / self.spec.mm_per_px + half
        row = rel @ self.frame.v / self.spec.mm_per_px + half
        return col, row, rel @ self.frame.n

    def nearest_slice(self, point: np.ndarray) -> tuple[NativeSlice, float, float, float]:
        """The native slice closest to a patient point: (slice, x column, y row, distance mm)."""
        best: tuple[NativeSlice, float, float, float] | None = None
        for native in self.slices:
            x, y, dist = patient_to_pixel(native.geometry, point)
            if best is None or abs(float(dist)) < abs(best[3]):
                best = (native, float(x), float(y), float(dist))
        if best is None:
            raise ValueError("canvas has no slices")
        return best

    @property
    def slice_step_mm(self) -> float:
        positions = np.array([s.position_mm for s in self.slices])
        gaps = np.diff(np.sort(positions))
        gaps = gaps[gaps > 1e-6]
        return float(np.median(gaps)) if gaps.size else 0.0


def stack_centre(
    geometries: Sequence[SliceGeometry], rows: Sequence[int], columns: Sequence[int]
) -> np.ndarray:
    """Mean patient position of the slices' image centres."""
    centres = [
        pixel_to_patient(g, (c - 1) / 2.0, (r - 1) / 2.0) for g, r, c in zip(geometries, rows, columns)
    ]
    return np.mean(np.stack(centres), axis=0)


def _sample_in_plane(
    image: np.ndarray, geom: SliceGeometry, frame: CropFrame, centre: np.ndarray, spec: CanvasSpec
) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = sample_grid(geom, frame, centre, spec.extent_mm, spec.size)
    step = spec.mm_per_px
    sigma_x = max(0.0, (step / geom.spacing_col - 1.0) / 2.0)
    sigma_y = max(0.0, (step / geom.spacing_row - 1.0) / 2.0)
    return sample_slice(image, xs, ys, sigma_x=sigma_x, sigma_y=sigma_y)


def build_canvas(
    images: Sequence[np.ndarray],
    geometries: Sequence[SliceGeometry],
    instance_numbers: Sequence[int],
    frame: CropFrame,
    centre: np.ndarray,
    spec: CanvasSpec,
) -> Canvas:
    """Resample the slices of one stack (any order) onto the canvas grid of ``spec`` around ``centre``.

    With ``spec.depth == 1`` the channel is the slice nearest the centre's plane (no
    interpolation), which is what a single-slice (axial) canvas wants.
    """
    if not images:
        raise ValueError("a canvas needs at least one slice")
    centre = np.asarray(centre, dtype=np.float64)
    positions = np.array([float((g.ipp - centre) @ frame.n) for g in geometries])
    order = np.argsort(positions, kind="stable")
    natives = [
        NativeSlice(
            int(instance_numbers[i]),
            geometries[i],
            float(positions[i]),
            int(np.asarray(images[i]).shape[0]),
            int(np.asarray(images[i]).shape[1]),
        )
        for i in order
    ]
    pos = positions[order]
    offsets = spec.depth_offsets() if spec.depth > 1 else np.zeros(1)
    # Which native slices each channel needs, and with what weight.
    weights: list[list[tuple[int, float]]] = []
    step = float(np.median(np.diff(pos))) if len(pos) > 1 else 0.0
    for d in offsets:
        if spec.depth == 1 or len(pos) == 1:
            k = int(np.argmin(np.abs(pos - d)))
            weights.append([(k, 1.0)] if len(pos) == 1 or abs(pos[k] - d) <= max(step, 1e-6) else [])
            continue
        if d < pos[0] - step / 2 or d > pos[-1] + step / 2:
            weights.append([])
            continue
        hi = int(np.searchsorted(pos, d))
        if hi <= 0:
            weights.append([(0, 1.0)])
        elif hi >= len(pos):
            weights.append([(len(pos) - 1, 1.0)])
        else:
            lo_pos, hi_pos = pos[hi - 1], pos[hi]
            t = 0.0 if hi_pos - lo_pos < 1e-6 else (d - lo_pos) / (hi_pos - lo_pos)
            weights.append([(hi - 1, 1.0 - t), (hi, t)])
    needed = sorted({k for w in weights for k, _ in w})
    sampled: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for k in needed:
        i = int(order[k])
        sampled[k] = _sample_in_plane(
            np.asarray(images[i], dtype=np.float32), geometries[i], frame, centre, spec
        )
    if sampled:
        keys = list(sampled)
        normed = dict(
            zip(keys, normalise_windows([sampled[k][0] for k in keys], [sampled[k][1] for k in keys]))
        )
    else:
        normed = {}
    out = np.zeros((len(offsets), spec.size, spec.size), dtype=np.float32)
    for c, w in enumerate(weights):
        for k, weight in w:
            out[c] += np.float32(weight) * normed[k]
    return Canvas(image=np.clip(out, 0.0, 1.0), centre=centre, frame=frame, spec=spec, slices=natives)


def gaussian_heatmap(size: int, col: float, row: float, sigma: float) -> np.ndarray:
    """(size, size) Gaussian at pixel coordinates (col, row), pixel centres at integer + 0.5."""
    grid = np.arange(size, dtype=np.float32) + 0.5
    gx = np.exp(-((grid - col) ** 2) / (2 * sigma**2))
    gy = np.exp(-((grid - row) ** 2) / (2 * sigma**2))
    return (gy[:, None] * gx[None, :]).astype(np.float32)


def within(canvas: Canvas, col: float, row: float) -> bool:
    return 0.0 <= col < canvas.spec.size and 0.0 <= row < canvas.spec.size and math.isfinite(col + row)
