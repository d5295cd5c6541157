"""Where each series' slices lie: the plain protocol, and per-site variety.

A series is a list of :class:`SlicePlane` in spatial order plus, per plane, the InstanceNumber
it is stored under, the disc level whose stack it belongs to (``None`` when one stack spans
several levels) and its stack index. Labels are projections of 3D landmarks into these planes,
so whatever the orientation, flip or order, a coordinate stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lss_pipeline.core.constants import LEVELS
from lss_pipeline.core.synth.anatomy import PhantomGeometry
from lss_pipeline.core.synth.options import SynthOptions
from lss_pipeline.core.synth.plane import SlicePlane
from lss_pipeline.core.synth.sites import SiteProfile

# Extra tilt (degrees, about the patient's x axis) of each level's axial stack on top of the
# spine's tilt, L1/L2 … L5/S1: the lower lumbar discs are more inclined (lordosis).
LORDOSIS_DEG: tuple[float, ...] = (-6.0, -3.0, 0.0, 5.0, 12.0)
# Half the left-right extent a sagittal series must cover: foramina lie ~18 mm off the midline.
SAGITTAL_HALF_COVER_MM = 26.0


@dataclass
class SeriesLayout:
    planes: list[SlicePlane]
    levels: list[str | None]
    stacks: list[int]
    numbers: list[int] = field(default_factory=list)  # InstanceNumber of each plane
    protocol: dict = field(default_factory=dict)  # what was varied (for the manifest)


# ------------------------------------------------------------------------------ plain protocol
def order(rng: np.random.Generator, n: int, shuffle: bool) -> np.ndarray:
    """InstanceNumber-1 for each spatial position (real series are not always spatially ordered)."""
    if not shuffle:
        return np.arange(n)
    return np.arange(n)[::-1].copy() if rng.random() < 0.5 else rng.permutation(n)


def plain_sagittal(g: PhantomGeometry, o: SynthOptions, rng: np.random.Generator) -> list[SlicePlane]:
    ps = o.sagittal_fov_mm / o.rows
    center = g.to_patient([0.0, g.canal_center_y - 8.0 + rng.uniform(-4, 4), rng.uniform(-8, 8)])
    x_mid = g.origin[0] + rng.uniform(-1.5, 1.5)
    planes = []
    for k in range(o.sagittal_slices):
        x = x_mid + (k - (o.sagittal_slices - 1) / 2) * o.sagittal_spacing_mm  # right to left
        planes.append(
            SlicePlane.centered(
                (x, center[1], center[2]),
                (0, 1, 0),
                (0, 0, -1),
                o.rows,
                o.rows,
                (ps, ps),
                thickness=o.sagittal_spacing_mm * 0.9,
            )
        )
    return planes


def plain_axial(
    g: PhantomGeometry, o: SynthOptions, rng: np.random.Generator, two_stacks: bool
) -> tuple[list[SlicePlane], list[str]]:
    """Per level a small stack parallel to the disc, superior to inferior."""
    ps = o.axial_fov_mm / o.rows
    planes, levels = [], []
    for k, level in enumerate(LEVELS):
        extra = np.deg2rad(14.0 if (two_stacks and k >= 3) else rng.uniform(-1.0, 1.0))
        c, s = np.cos(extra), np.sin(extra)
        col_local = np.array([0.0, c, s])
        normal_local = np.array([0.0, -s, c])
        col_dir = g.rotation @ col_local
        normal = g.rotation @ normal_local
        center = g.to_patient(
            [
                rng.uniform(-2, 2),
                g.canal_center_y - 6 + rng.uniform(-3, 3),
                g.level_disc_z(level) + rng.uniform(-1.0, 1.0),
            ]
        )
        n = o.axial_slices_per_level
        for j in range(n):
            off = ((n - 1) / 2 - j) * o.axial_spacing_mm  # superior first
            planes.append(
                SlicePlane.centered(
                    center + off * normal,
                    (1, 0, 0),
                    col_dir,
                    o.rows,
                    o.rows,
                    (ps, ps),
                    thickness=o.axial_spacing_mm * 0.9,
                )
            )
            levels.append(level)
    return planes, levels


# ----------------------------------------------------------------------------- site variety
def _rotation(axis: np.ndarray, deg: float) -> np.ndarray:
    """Rodrigues rotation of ``deg`` degrees about unit ``axis``."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    t = np.deg2rad(deg)
    return np.eye(3) + np.sin(t) * kx + (1 - np.cos(t)) * kx @ kx


def _x_rotation(deg: float) -> np.ndarray:
    return _rotation(np.array([1.0, 0.0, 0.0]), deg)


class _Draw:
    """One series' draw from its site: obliquity, flip, order."""

    def __init__(self, site: SiteProfile, rng: np.random.Generator):
        axis = rng.normal(size=3)
        self.oblique_deg = float(site.oblique_deg * rng.uniform(0.3, 1.0))
        self.tilt = _rotation(axis, self.oblique_deg)
        self.flip = "none"
        if rng.random() < site.flip_rate:
            self.flip = str(rng.choice(["rows", "columns", "both"], p=[0.5, 0.3, 0.2]))
        self.reversed = bool(rng.random() < site.reverse_rate)

    def orient(self, row_dir: np.ndarray, col_dir: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        row_dir, col_dir = self.tilt @ row_dir, self.tilt @ col_dir
        if self.flip in ("rows", "both"):
            row_dir = -row_dir
        if self.flip in ("columns", "both"):
            col_dir = -col_dir
        return row_dir, col_dir

    def protocol(self, rows: int, cols: int, spacing: tuple[float, float]) -> dict:
        return {
            "oblique_deg": round(self.oblique_deg, 2),
            "flip": self.flip,
            "reversed_order": self.reversed,
            "rows": rows,
            "columns": cols,
            "pixel_spacing": [round(spacing[0], 4), round(spacing[1], 4)],
        }


def _matrix(
    site: SiteProfile, matrix: tuple[int, int], fov: tuple[float, float], rows: int, rng: np.random.Generator
) -> tuple[int, int, tuple[float, float]]:
    r, c = site.scaled(matrix, rows)
    zoom = rng.uniform(0.95, 1.05)  # operators adjust the field of view per series
    return r, c, (fov[0] * zoom / r, fov[1] * zoom / c)


def _stack(
    center: np.ndarray,
    row_dir: np.ndarray,
    col_dir: np.ndarray,
    sweep: np.ndarray,
    n: int,
    spacing: float,
    r: int,
    c: int,
    ps: tuple[float, float],
) -> list[SlicePlane]:
    """``n`` parallel planes through ``center``, ``spacing`` apart along ``sweep`` (± the normal)."""
    normal = np.cross(row_dir, col_dir)
    step = normal if normal @ sweep >= 0 else -normal
    return [
        SlicePlane.centered(
            center + (k - (n - 1) / 2) * spacing * step, row_dir, col_dir, r, c, ps, thickness=spacing * 0.9
        )
        for k in range(n)
    ]


def varied_sagittal(
    g: PhantomGeometry, o: SynthOptions, site: SiteProfile, rng: np.random.Generator
) -> SeriesLayout:
    """A sagittal series as ``site`` acquires it: slices swept right to left (numbering may be reversed)."""
    draw = _Draw(site, rng)
    r, c, ps = _matrix(site, site.sagittal_matrix, site.sagittal_fov_mm, o.rows, rng)
    spacing = site.sagittal_spacing_mm
    n = max(o.sagittal_slices, int(np.ceil(2 * SAGITTAL_HALF_COVER_MM / spacing)) + 1)
    center = g.to_patient(
        [rng.uniform(-1.5, 1.5), g.canal_center_y - 8.0 + rng.uniform(-4, 4), rng.uniform(-8, 8)]
    )
    row_dir, col_dir = draw.orient(np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0]))
    planes = _stack(center, row_dir, col_dir, np.array([1.0, 0.0, 0.0]), n, spacing, r, c, ps)
    numbers = np.arange(n)[::-1] if draw.reversed else np.arange(n)
    protocol = draw.protocol(r, c, ps) | {"slices": n, "spacing_mm": spacing}
    return SeriesLayout(planes, [None] * n, [0] * n, [int(v) + 1 for v in numbers], protocol)


def varied_axial(
    g: PhantomGeometry,
    o: SynthOptions,
    site: SiteProfile,
    rng: np.random.Generator,
    two_stacks_fault: bool = False,
) -> SeriesLayout:
    """An axial T2 series as ``site`` acquires it (see SiteProfile.axial_layout); stacks are
    numbered one after another, each swept head to feet unless the order is reversed."""
    draw = _Draw(site, rng)
    r, c, ps = _matrix(site, site.axial_matrix, site.axial_fov_mm, o.rows, rng)
    spacing = site.axial_spacing_mm
    layout = "per_level" if two_stacks_fault else site.axial_layout
    disc_z = [g.level_disc_z(lv) for lv in LEVELS]
    gap = float(np.mean(-np.diff(disc_z)))  # distance between neighbouring discs
    down = g.rotation @ np.array([0.0, 0.0, -1.0])  # head to feet along the spine

    def orientation(tilt_deg: float) -> tuple[np.ndarray, np.ndarray]:
        col_local = _x_rotation(tilt_deg) @ np.array([0.0, 1.0, 0.0])
        return draw.orient(np.array([1.0, 0.0, 0.0]), g.rotation @ col_local)

    def center_at(z_local: float) -> np.ndarray:
        return g.to_patient([rng.uniform(-2, 2), g.canal_center_y - 6 + rng.uniform(-3, 3), z_local])

    stacks: list[tuple[list[SlicePlane], str | None]] = []
    if layout in ("per_level", "per_level_overlap"):
        n = o.axial_slices_per_level
        if layout == "per_level_overlap":  # long enough to reach into the neighbouring stacks
            n = max(n, int(np.ceil(1.1 * gap / spacing)) + 1)
        for k, level in enumerate(LEVELS):
            if two_stacks_fault:
                tilt = 14.0 if k >= 3 else rng.uniform(-1.0, 1.0)
            else:
                tilt = (LORDOSIS_DEG[k] if layout == "per_level_overlap" else 0.0) + rng.uniform(-2.0, 2.0)
            row_dir, col_dir = orientation(tilt)
            center = center_at(disc_z[k] + rng.uniform(-1.0, 1.0))
            stacks.append((_stack(center, row_dir, col_dir, down, n, spacing, r, c, ps), level))
    else:
        ranges = [(0.0, 4.0)] if layout == "contiguous" else [(0.0, 2.2), (1.8, 4.0)]  # in disc indices
        tilt = rng.uniform(-3.0, 3.0)
        row_dir, col_dir = orientation(tilt)  # parallel stacks: one orientation
        for top, bottom in ranges:
            z_top = disc_z[0] - gap * (top - 0.35)
            z_bottom = disc_z[0] - gap * (bottom + 0.35)
            n = int(np.ceil((z_top - z_bottom) / spacing)) + 1
            stacks.append(
                (
                    _stack(center_at((z_top + z_bottom) / 2), row_dir, col_dir, down, n, spacing, r, c, ps),
                    None,
                )
            )
    if draw.reversed:
        stacks = [(planes[::-1], level) for planes, level in stacks[::-1]]
    planes = [p for s, _ in stacks for p in s]
    levels = [lv for s, lv in stacks for _ in s]
    stack_ids = [k for k, (s, _) in enumerate(stacks) for _ in s]
    protocol = draw.protocol(r, c, ps) | {
        "axial_layout": layout,
        "stacks": len(stacks),
        "slices": len(planes),
        "spacing_mm": spacing,
    }
    # Planes are listed in instance order here; numbers are 1..n.
    return SeriesLayout(planes, levels, stack_ids, list(range(1, len(planes) + 1)), protocol)
