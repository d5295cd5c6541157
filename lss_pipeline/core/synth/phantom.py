"""A 3D lumbar-spine phantom in patient coordinates, and the MR slices it yields.

Coordinates are DICOM LPS millimetres: x to the patient's left, y posterior, z superior.
The spine is built in a *local* frame (spine axis = local z, bodies centred on local
x = y = 0) that is rotated about x by a per-study tilt and shifted by a per-study origin,
so axial stacks are tilted like real ones and every label is the projection of one 3D
landmark. Anatomy is painted into a label volume (uint8 tissue classes), turned into
one intensity volume per contrast, and sampled by any slice plane with trilinear
interpolation plus a few samples across the slice thickness (partial volume).

Severity is one number per condition × level, a *scale* of the structure it grades:
SCS scales the canal's antero-posterior diameter at the disc, NFS the fat-filled
foramen on that side, SBS the lateral recess on that side. Nothing else reads it, so a
crop of the wrong side, slice or level carries no signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from lss_pipeline.core.constants import LEVELS

# Tissue classes of the label volume.
MUSCLE, FAT, MARROW, CORTEX, ANNULUS, NUCLEUS, CSF, NERVE, LIGAMENT, POST_BONE, AIR, VISCERA = range(12)
N_TISSUES = 12

# Relative signal per tissue (index = tissue class) for each contrast.
CONTRASTS: dict[str, np.ndarray] = {
    #                       mus   fat   marr  cort  ann   nuc   csf   nerve lig   post  air   visc
    "T1": np.array([0.30, 0.92, 0.56, 0.06, 0.30, 0.36, 0.10, 0.36, 0.12, 0.48, 0.00, 0.34]),
    "T2": np.array([0.20, 0.56, 0.38, 0.05, 0.14, 0.68, 0.96, 0.24, 0.07, 0.33, 0.00, 0.42]),
}
SERIES_CONTRAST: dict[str, str] = {"Sagittal T1": "T1", "Sagittal T2/STIR": "T2", "Axial T2": "T2"}

VERTEBRAE: tuple[str, ...] = ("T12", "L1", "L2", "L3", "L4", "L5", "S1", "S2")
# Discs between consecutive vertebrae; the labelled ones (L1/L2 … L5/S1) are 1..5.
LABELLED_DISC_OFFSET = 1

# Severity scale ranges (fraction of the healthy size) per true class 0/1/2.
SEVERITY_SCALE_RANGES: tuple[tuple[float, float], ...] = ((0.84, 1.0), (0.56, 0.68), (0.28, 0.40))

SIDE_SIGN: dict[str, int] = {"left": 1, "right": -1}  # LPS: +x is the patient's left


@dataclass
class PhantomGeometry:
    """Everything that makes one study's anatomy; drawn by :func:`sample_geometry`."""

    tilt_deg: float  # rotation of the whole patient about x (lordosis / positioning)
    origin: tuple[float, float, float]  # patient position of the local origin (L3 centre)
    body_heights: tuple[float, ...]  # per vertebra, mm
    disc_heights: tuple[float, ...]  # per disc (len(VERTEBRAE) - 1), mm
    body_width: float  # left-right, mm
    body_depth: float  # antero-posterior, mm
    canal_ap: float  # healthy canal AP diameter, mm
    sac_half_width: float  # thecal sac half width (x), mm
    pedicle_x: float  # |x| of pedicles and foramina, mm
    foramen_size: float  # scale of the healthy foramen
    recess_size: float  # scale of the healthy lateral recess
    nucleus_sizes: tuple[float, ...]  # per disc, 0 = fully degenerated
    # (condition, level) -> scale of the graded structure (1 = healthy)
    severity_scale: dict[tuple[str, str], float] = field(default_factory=dict)
    contrast_jitter: dict[str, tuple[float, ...]] = field(default_factory=dict)

    # Derived positions, local frame.
    @property
    def body_centers(self) -> np.ndarray:
        z = [0.0]
        for i in range(1, len(VERTEBRAE)):
            z.append(z[-1] - self.body_heights[i - 1] / 2 - self.disc_heights[i - 1] - self.body_heights[i] / 2)
        z = np.asarray(z)
        return z - z[VERTEBRAE.index("L3")]

    @property
    def disc_centers(self) -> np.ndarray:
        zc = self.body_centers
        return np.array(
            [zc[i] - self.body_heights[i] / 2 - self.disc_heights[i] / 2 for i in range(len(VERTEBRAE) - 1)]
        )

    def level_disc_z(self, level: str) -> float:
        return float(self.disc_centers[LEVELS.index(level) + LABELLED_DISC_OFFSET])

    @property
    def body_post_y(self) -> float:
        return self.body_depth / 2

    @property
    def canal_center_y(self) -> float:
        return self.body_post_y + 0.6 + self.canal_ap / 2

    @property
    def canal_post_y(self) -> float:
        return self.canal_center_y + self.canal_ap / 2

    @property
    def rotation(self) -> np.ndarray:
        t = np.deg2rad(self.tilt_deg)
        c, s = np.cos(t), np.sin(t)
        return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])

    def to_patient(self, local: np.ndarray) -> np.ndarray:
        return np.asarray(self.origin) + np.asarray(local, dtype=float) @ self.rotation.T

    def to_local(self, patient: np.ndarray) -> np.ndarray:
        return (np.asarray(patient, dtype=float) - np.asarray(self.origin)) @ self.rotation

    def scale(self, condition: str, level: str) -> float:
        return self.severity_scale.get((condition, level), 1.0)

    # Landmarks (local frame) that the labels point at.
    def foramen_center_local(self, side: str, level: str) -> np.ndarray:
        return np.array([SIDE_SIGN[side] * self.pedicle_x, self.body_post_y + 3.5, self.level_disc_z(level) + 3.0])

    def recess_center_local(self, side: str, level: str) -> np.ndarray:
        return np.array(
            [SIDE_SIGN[side] * (self.sac_half_width + 1.0), self.body_post_y + 2.6, self.level_disc_z(level) - 1.0]
        )

    def canal_center_local(self, level: str) -> np.ndarray:
        return np.array([0.0, self.canal_center_y, self.level_disc_z(level)])

    def landmark(self, condition: str, level: str) -> np.ndarray:
        """Patient (LPS) position of the structure a label on ``condition``/``level`` grades."""
        if condition == "Spinal Canal Stenosis":
            local = self.canal_center_local(level)
        elif condition.endswith("Neural Foraminal Narrowing"):
            local = self.foramen_center_local(condition.split()[0].lower(), level)
        elif condition.endswith("Subarticular Stenosis"):
            local = self.recess_center_local(condition.split()[0].lower(), level)
        else:
            raise ValueError(f"unknown condition {condition!r}")
        return self.to_patient(local)


def severity_to_scale(rng: np.random.Generator, severity: int) -> float:
    lo, hi = SEVERITY_SCALE_RANGES[severity]
    return float(rng.uniform(lo, hi))


def sample_geometry(
    rng: np.random.Generator,
    true_severity: dict[tuple[str, str], int] | None = None,
    variation: float = 1.0,
) -> PhantomGeometry:
    """Draw one study's anatomy; ``variation`` = 0 gives the average spine (for tests)."""

    def jit(mean: float, spread: float) -> float:
        return float(mean + variation * rng.uniform(-spread, spread))

    n_v = len(VERTEBRAE)
    body_h = tuple(jit(25.0 + 1.0 * min(i, 5) * 0.3, 2.0) for i in range(n_v))
    disc_h = [jit(8.5 + 0.5 * i, 1.5) for i in range(n_v - 1)]
    disc_h[-1] = jit(3.0, 0.5)  # S1/S2: rudimentary
    geometry = PhantomGeometry(
        tilt_deg=jit(0.0, 9.0),
        origin=(jit(0.0, 4.0), jit(0.0, 6.0), jit(0.0, 8.0)),
        body_heights=body_h,
        disc_heights=tuple(disc_h),
        body_width=jit(44.0, 4.0),
        body_depth=jit(32.0, 3.0),
        canal_ap=jit(14.0, 2.0),
        sac_half_width=jit(10.0, 1.0),
        pedicle_x=jit(18.0, 1.5),
        foramen_size=jit(1.0, 0.12),
        recess_size=jit(1.0, 0.12),
        nucleus_sizes=tuple(float(np.clip(jit(0.55, 0.3), 0.05, 0.8)) for _ in range(n_v - 1)),
        contrast_jitter={k: tuple(1.0 + variation * rng.uniform(-0.08, 0.08, N_TISSUES)) for k in CONTRASTS},
    )
    for key, severity in (true_severity or {}).items():
        geometry.severity_scale[key] = severity_to_scale(rng, severity) if variation > 0 else (1.0, 0.62, 0.34)[severity]
    return geometry


@dataclass(frozen=True)
class SlicePlane:
    """One image plane in DICOM terms. ``pixel_spacing`` = (between rows, between columns)."""

    ipp: tuple[float, float, float]
    row_dir: tuple[float, float, float]  # direction of increasing column index
    col_dir: tuple[float, float, float]  # direction of increasing row index
    rows: int
    cols: int
    pixel_spacing: tuple[float, float]
    thickness: float

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)

    @classmethod
    def centered(cls, center, row_dir, col_dir, rows, cols, pixel_spacing, thickness) -> "SlicePlane":
        row_dir, col_dir, center = (np.asarray(v, dtype=float) for v in (row_dir, col_dir, center))
        ipp = center - row_dir * pixel_spacing[1] * (cols - 1) / 2 - col_dir * pixel_spacing[0] * (rows - 1) / 2
        return cls(
            tuple(float(v) for v in ipp), tuple(float(v) for v in row_dir), tuple(float(v) for v in col_dir),
            int(rows), int(cols), (float(pixel_spacing[0]), float(pixel_spacing[1])), float(thickness),
        )

    def project(self, point) -> tuple[float, float, float]:
        """(x = column, y = row, signed distance from the plane in mm) of a patient point."""
        d = np.asarray(point, dtype=float) - np.asarray(self.ipp)
        return (
            float(d @ np.asarray(self.row_dir) / self.pixel_spacing[1]),
            float(d @ np.asarray(self.col_dir) / self.pixel_spacing[0]),
            float(d @ self.normal),
        )

    def points(self) -> np.ndarray:
        """Patient position of every pixel centre, shape (rows, cols, 3)."""
        r = np.arange(self.rows, dtype=np.float32)[:, None, None] * self.pixel_spacing[0]
        c = np.arange(self.cols, dtype=np.float32)[None, :, None] * self.pixel_spacing[1]
        return (np.asarray(self.ipp, np.float32) + c * np.asarray(self.row_dir, np.float32)
                + r * np.asarray(self.col_dir, np.float32))


class Phantom:
    """The voxelised anatomy of one study; ``render`` samples it on any plane."""

    # Local box holding the spine; outside it only analytic soft tissue exists.
    X_RANGE = (-40.0, 40.0)
    Y_RANGE = (-35.0, 70.0)

    def __init__(self, geometry: PhantomGeometry, voxel_mm: float = 0.6):
        self.g = geometry
        self.voxel = float(voxel_mm)
        zc = geometry.body_centers
        self.z_range = (float(zc[-1] - geometry.body_heights[-1] / 2 - 6), float(zc[0] + geometry.body_heights[0] / 2 + 6))
        self.lo = np.array([self.X_RANGE[0], self.Y_RANGE[0], self.z_range[0]], dtype=np.float32)
        hi = np.array([self.X_RANGE[1], self.Y_RANGE[1], self.z_range[1]])
        self.shape = tuple(int(n) for n in np.ceil((hi - self.lo) / self.voxel) + 1)
        self.labels = self._paint()
        self._volumes: dict[str, np.ndarray] = {}

    # ----------------------------------------------------------------- painting
    def _region(self, lo, hi):
        """Index slices and broadcast local coordinates of the voxels inside a box."""
        i0 = np.clip(np.floor((np.asarray(lo) - self.lo) / self.voxel).astype(int), 0, np.array(self.shape))
        i1 = np.clip(np.ceil((np.asarray(hi) - self.lo) / self.voxel).astype(int) + 1, 0, np.array(self.shape))
        sl = tuple(slice(a, b) for a, b in zip(i0, i1))
        axes = [self.lo[k] + self.voxel * np.arange(i0[k], i1[k], dtype=np.float32) for k in range(3)]
        return sl, axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]

    def _ellipsoid(self, vol, center, semi, label):
        center, semi = np.asarray(center, float), np.maximum(np.asarray(semi, float), 1e-3)
        sl, x, y, z = self._region(center - semi, center + semi)
        mask = ((x - center[0]) / semi[0]) ** 2 + ((y - center[1]) / semi[1]) ** 2 + ((z - center[2]) / semi[2]) ** 2 <= 1
        vol[sl][mask] = label

    def _paint(self) -> np.ndarray:
        g = self.g
        vol = np.full(self.shape, MUSCLE, dtype=np.uint8)
        zc, zd = g.body_centers, g.disc_centers
        ybp, ycc, ycp, ap = g.body_post_y, g.canal_center_y, g.canal_post_y, g.canal_ap
        ax, ay = g.body_width / 2, g.body_depth / 2

        # Interspinous ligament, then posterior fat pad around it.
        sl, x, y, z = self._region((-3, ycp, self.z_range[0]), (3, ycp + 34, self.z_range[1]))
        vol[sl][np.broadcast_to((np.abs(x) <= 2.5) & (y >= ycp), vol[sl].shape)] = LIGAMENT

        # Discs: annulus with a nucleus whose size says how degenerate the disc is.
        for i, z0 in enumerate(zd):
            h = g.disc_heights[i]
            self._ellipsoid_cyl(vol, (0, 0, z0), (ax + 1.0, ay + 1.0), h / 2 + 0.8, ANNULUS)
            n = g.nucleus_sizes[i]
            if n > 0.08 and i < len(zd) - 1:
                self._ellipsoid(vol, (0, -1.5, z0), (ax * n, ay * n, h * 0.32), NUCLEUS)
        # Vertebral bodies: cortex shell, marrow inside.
        for i, z0 in enumerate(zc):
            h = g.body_heights[i]
            self._rounded_body(vol, z0, ax, ay, h / 2, CORTEX)
            self._rounded_body(vol, z0, ax - 1.3, ay - 1.3, h / 2 - 1.3, MARROW)
        # Posterior elements of each vertebra (not the last sacral segment).
        xp = g.pedicle_x
        for i, z0 in enumerate(zc[:-1]):
            sl, x, y, z = self._region((-xp - 4, ycp - 1, z0 - 13), (xp + 4, ycp + 7, z0 + 9))
            vol[sl][np.broadcast_to((np.abs(x) <= xp + 2) & (((z - z0 + 2) / 11) ** 2 <= 1), vol[sl].shape)] = POST_BONE
            sl, x, y, z = self._region((-3.5, ycp + 5, z0 - 13), (3.5, ycp + 30, z0 + 7))
            mask = (((z - z0 + 3) / 9) ** 2 + ((y - ycp - 5) / 26) ** 4 <= 1) & (np.abs(x) <= 3.2)
            vol[sl][np.broadcast_to(mask, vol[sl].shape)] = POST_BONE
        # Facet joints at the labelled disc levels (and T12/L1), with a bright joint line.
        for i, z0 in enumerate(zd[:-1]):
            for s in (1, -1):
                c = np.array([s * (xp + 1.5), ycp + 3.0, z0 + 1.0])
                self._ellipsoid(vol, c, (5.5, 5.5, 9.0), POST_BONE)
                sl, x, y, z = self._region(c - (0.6, 5, 8), c + (0.6, 5, 8))
                m = (((y - c[1]) / 5) ** 2 + ((z - c[2]) / 8) ** 2 <= 1) & (np.abs(x - c[0]) <= 0.5)
                vol[sl][np.broadcast_to(m, vol[sl].shape)] = CSF
        # Foramina: fibrous bed, fat scaled by NFS severity, exiting nerve root.
        for k, level in enumerate(LEVELS):
            for side in ("left", "right"):
                c = g.foramen_center_local(side, level)
                f = g.foramen_size
                sc = g.scale(f"{side.capitalize()} Neural Foraminal Narrowing", level)
                self._ellipsoid(vol, c, (4.5, 6.0 * f, 9.0 * f), LIGAMENT)
                self._ellipsoid(vol, c, (4.2, 5.3 * f * sc, 8.0 * f * sc), FAT)
                self._ellipsoid(vol, c + (0, -0.5, 2.5 * f), (4.6, 1.7, 2.0), NERVE)
        # T12/L1 foramina: healthy, for looks.
        for s in (1, -1):
            c = np.array([s * xp, ybp + 3.5, zd[0] + 3.0])
            self._ellipsoid(vol, c, (4.5, 6.0, 9.0), LIGAMENT)
            self._ellipsoid(vol, c, (4.2, 5.3, 8.0), FAT)
            self._ellipsoid(vol, c + (0, -0.5, 2.5), (4.6, 1.7, 2.0), NERVE)
        # Pedicles bound the foramina above and below.
        for z0 in zc[:-1]:
            for s in (1, -1):
                sl, x, y, z = self._region((s * xp - 3.5, ybp - 5, z0 - 7), (s * xp + 3.5, ycp + 3, z0 + 7))
                m = ((x - s * xp) / 3.5) ** 2 + ((z - z0) / 7) ** 2 <= 1
                vol[sl][np.broadcast_to(m, vol[sl].shape)] = POST_BONE

        # Canal: dark dural rim, posterior epidural fat, CSF narrowed at each disc by SCS.
        sw = g.sac_half_width
        sl, x, y, z = self._region((-sw - 2, ycc - ap / 2 - 2, self.z_range[0]), (sw + 2, ycc + ap / 2 + 3, self.z_range[1]))
        sub = vol[sl]
        rim = (x / (sw + 1.2)) ** 2 + ((y - ycc) / (ap / 2 + 1.2)) ** 2 <= 1
        sub[np.broadcast_to(rim, sub.shape)] = LIGAMENT
        fat = ((x / (sw * 0.6)) ** 2 + ((y - ycc - 1.6) / (ap / 2 + 1.6)) ** 2 <= 1) & (y > ycc)
        sub[np.broadcast_to(fat, sub.shape)] = FAT
        half_ap = np.full(z.shape, ap / 2, dtype=np.float32)
        for level in LEVELS:
            s = g.scale("Spinal Canal Stenosis", level)
            half_ap = half_ap * (1 - (1 - s) * np.exp(-((z - g.level_disc_z(level)) ** 2) / (2 * 4.0**2)))
        in_canal = (x / sw) ** 2 + ((y - ycc) / (ap / 2)) ** 2 <= 1
        width = np.sqrt(np.clip(1 - (x / sw) ** 2, 0, None))
        csf = in_canal & (np.abs(y - ycc) <= half_ap * width)
        sub[np.broadcast_to(in_canal & ~csf & (y < ycc), sub.shape)] = ANNULUS  # disc bulge
        sub[np.broadcast_to(in_canal & ~csf & (y >= ycc), sub.shape)] = LIGAMENT  # flavum
        sub[np.broadcast_to(csf, sub.shape)] = CSF

        # Lateral recesses: facet/flavum bed, CSF scaled by SBS severity.
        for level in LEVELS:
            for side in ("left", "right"):
                c = g.recess_center_local(side, level)
                r = g.recess_size
                sc = g.scale(f"{side.capitalize()} Subarticular Stenosis", level)
                self._ellipsoid(vol, c, (4.2 * r, 3.6 * r, 7.0), LIGAMENT)
                self._ellipsoid(vol, c, (3.2 * r * sc, 2.7 * r * sc, 6.0), CSF)
        return vol

    def _ellipsoid_cyl(self, vol, center, semi_xy, half_z, label):
        cx, cy, cz = center
        sl, x, y, z = self._region((cx - semi_xy[0], cy - semi_xy[1], cz - half_z), (cx + semi_xy[0], cy + semi_xy[1], cz + half_z))
        m = (((x - cx) / semi_xy[0]) ** 2 + ((y - cy) / semi_xy[1]) ** 2 <= 1) & (np.abs(z - cz) <= half_z)
        vol[sl][m] = label

    def _rounded_body(self, vol, z0, ax, ay, hz, label):
        sl, x, y, z = self._region((-ax, -ay, z0 - hz), (ax, ay, z0 + hz))
        r2 = (x / ax) ** 2 + (y / ay) ** 2
        m = (r2 <= 1) & ((np.abs(z - z0) / hz) ** 6 + r2**3 <= 1.05)
        vol[sl][m] = label

    # ---------------------------------------------------------------- rendering
    def volume(self, contrast: str) -> np.ndarray:
        if contrast not in self._volumes:
            lut = (CONTRASTS[contrast] * np.asarray(self.g.contrast_jitter.get(contrast, np.ones(N_TISSUES)))).astype(np.float32)
            self._volumes[contrast] = lut[self.labels]
        return self._volumes[contrast]

    def _background(self, x: np.ndarray, y: np.ndarray, contrast: str) -> np.ndarray:
        """Analytic soft tissue outside the spine box: body outline, subcutaneous fat, viscera.
        ``x``, ``y`` are local coordinates (mm)."""
        lut = (CONTRASTS[contrast] * np.asarray(self.g.contrast_jitter.get(contrast, np.ones(N_TISSUES)))).astype(np.float32)
        semi_y = np.where(y < -15, np.float32(125.0), np.float32(105.0))
        r = np.sqrt((x / np.float32(160.0)) ** 2 + ((y + 15) / semi_y) ** 2)
        out = np.full(r.shape, lut[MUSCLE], dtype=np.float32)
        out[(y < -45) & (r < 0.86)] = lut[VISCERA]
        out[r > 1 - 14 / semi_y] = lut[FAT]
        out[r > 1] = lut[AIR]
        return out

    def render(self, plane: SlicePlane, contrast: str, thickness_samples: int = 2) -> np.ndarray:
        """Noise-free image of ``plane`` (float32, tissue units, about 0..1)."""
        vol = self.volume(contrast)
        rot = self.g.rotation
        # Local coordinates are affine in (row, col): local = a + row * dr + col * dc.
        a0 = (np.asarray(plane.ipp) - np.asarray(self.g.origin)) @ rot
        dr = np.asarray(plane.col_dir) @ rot * plane.pixel_spacing[0]
        dc = np.asarray(plane.row_dir) @ rot * plane.pixel_spacing[1]
        dn = plane.normal @ rot
        r = np.arange(plane.rows, dtype=np.float32)[:, None]
        c = np.arange(plane.cols, dtype=np.float32)[None, :]
        offsets = (np.linspace(-0.3, 0.3, thickness_samples) * plane.thickness) if thickness_samples > 1 else [0.0]
        lx = np.float32(a0[0]) + r * np.float32(dr[0]) + c * np.float32(dc[0])
        ly = np.float32(a0[1]) + r * np.float32(dr[1]) + c * np.float32(dc[1])
        img = self._background(lx, ly, contrast)
        acc = np.zeros((plane.rows, plane.cols), dtype=np.float32)
        upper = np.asarray(self.shape, np.float32) - 1
        for off in offsets:
            a = (a0 + off * dn - self.lo) / self.voxel
            idx = [np.float32(a[k]) + r * np.float32(dr[k] / self.voxel) + c * np.float32(dc[k] / self.voxel)
                   for k in range(3)]
            inside = (idx[0] >= 0) & (idx[0] <= upper[0]) & (idx[1] >= 0) & (idx[1] <= upper[1]) \
                & (idx[2] >= 0) & (idx[2] <= upper[2])
            if inside.any():
                coords = np.stack([i[inside] for i in idx])
                acc[inside] += ndimage.map_coordinates(vol, coords, order=1, prefilter=False)
            acc[~inside] += img[~inside]
        return acc / len(offsets)


# ------------------------------------------------------------------ measurements
# Fraction of the image's bright end (fat on T1, CSF on T2) a pixel must reach to count:
# high enough to exclude marrow, disc nucleus and epidural fat.
BRIGHT_FRACTION = 0.75
def canal_ap_mm(image: np.ndarray, x: float, y: float, pixel_spacing: tuple[float, float],
                threshold: float | None = None, search_mm: float = 14.0) -> float:
    """CSF run length (mm) along the image row through (x, y): the canal's AP diameter on a
    sagittal image (rows run antero-posterior there). ``threshold`` defaults to BRIGHT_FRACTION of the
    image's 99.5th percentile, CSF being the brightest tissue on T2."""
    img = np.asarray(image, dtype=np.float32)
    thr = BRIGHT_FRACTION * float(np.percentile(img, 99.5)) if threshold is None else threshold
    r = int(round(y))
    n = int(round(search_mm / pixel_spacing[1]))
    c0 = int(round(x))
    row = img[np.clip(r, 0, img.shape[0] - 1), max(c0 - n, 0): c0 + n + 1]
    return float((row > thr).sum() * pixel_spacing[1])


def bright_area_mm2(image: np.ndarray, x: float, y: float, pixel_spacing: tuple[float, float],
                    radius_mm: float, threshold: float | None = None) -> float:
    """Area (mm²) of pixels above ``threshold`` within ``radius_mm`` of (x, y)."""
    img = np.asarray(image, dtype=np.float32)
    thr = BRIGHT_FRACTION * float(np.percentile(img, 99.5)) if threshold is None else threshold
    rr, cc = np.ogrid[: img.shape[0], : img.shape[1]]
    near = ((rr - y) * pixel_spacing[0]) ** 2 + ((cc - x) * pixel_spacing[1]) ** 2 <= radius_mm**2
    return float(((img > thr) & near).sum() * pixel_spacing[0] * pixel_spacing[1])


def foramen_fat_mm2(image: np.ndarray, x: float, y: float, pixel_spacing: tuple[float, float],
                    threshold: float | None = None) -> float:
    """Fat area of the foramen around an NFS point on a parasagittal T1 image (fat is the
    brightest tissue on T1)."""
    return bright_area_mm2(image, x, y, pixel_spacing, radius_mm=7.0, threshold=threshold)


def recess_area_mm2(image: np.ndarray, x: float, y: float, pixel_spacing: tuple[float, float],
                    threshold: float | None = None) -> float:
    """CSF area of the lateral recess around an SBS point on an axial T2 image."""
    return bright_area_mm2(image, x, y, pixel_spacing, radius_mm=3.2, threshold=threshold)
