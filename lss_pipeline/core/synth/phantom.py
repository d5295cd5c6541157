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

import numpy as np
from scipy import ndimage

from lss_pipeline.core.constants import LEVELS
from lss_pipeline.core.synth.anatomy import (
    AIR,
    ANNULUS,
    CONTRASTS,
    CORTEX,
    CSF,
    FAT,
    LIGAMENT,
    MARROW,
    MUSCLE,
    N_TISSUES,
    NERVE,
    NUCLEUS,
    POST_BONE,
    VISCERA,
    PhantomGeometry,
)
from lss_pipeline.core.synth.plane import SlicePlane

SERIES_CONTRAST: dict[str, str] = {"Sagittal T1": "T1", "Sagittal T2/STIR": "T2", "Axial T2": "T2"}


class Phantom:
    """The voxelised anatomy of one study; ``render`` samples it on any plane."""

    # Local box holding the spine; outside it only analytic soft tissue exists.
    X_RANGE = (-40.0, 40.0)
    Y_RANGE = (-35.0, 70.0)

    def __init__(self, geometry: PhantomGeometry, voxel_mm: float = 0.6):
        self.g = geometry
        self.voxel = float(voxel_mm)
        zc = geometry.body_centers
        self.z_range = (
            float(zc[-1] - geometry.body_heights[-1] / 2 - 6),
            float(zc[0] + geometry.body_heights[0] / 2 + 6),
        )
        self.lo = np.array([self.X_RANGE[0], self.Y_RANGE[0], self.z_range[0]], dtype=np.float32)
        hi = np.array([self.X_RANGE[1], self.Y_RANGE[1], self.z_range[1]])
        self.shape = tuple(int(n) for n in np.ceil((hi - self.lo) / self.voxel) + 1)
        self.labels = self._paint()
        self._volumes: dict[str, np.ndarray] = {}

    # ----------------------------------------------------------------- painting
    def _region(self, lo, hi):
        """Index slices and broadcast local coordinates of the voxels inside a box."""
        i0 = np.clip(np.floor((np.asarray(lo) - self.lo) / self.voxel).astype(int), 0, np.array(self.shape))
        i1 = np.clip(
            np.ceil((np.asarray(hi) - self.lo) / self.voxel).astype(int) + 1, 0, np.array(self.shape)
        )
        sl = tuple(slice(a, b) for a, b in zip(i0, i1))
        axes = [self.lo[k] + self.voxel * np.arange(i0[k], i1[k], dtype=np.float32) for k in range(3)]
        return sl, axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]

    def _ellipsoid(self, vol, center, semi, label):
        center, semi = np.asarray(center, float), np.maximum(np.asarray(semi, float), 1e-3)
        sl, x, y, z = self._region(center - semi, center + semi)
        mask = ((x - center[0]) / semi[0]) ** 2 + ((y - center[1]) / semi[1]) ** 2 + (
            (z - center[2]) / semi[2]
        ) ** 2 <= 1
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
        for z0 in zc[:-1]:
            sl, x, y, z = self._region((-xp - 4, ycp - 1, z0 - 13), (xp + 4, ycp + 7, z0 + 9))
            vol[sl][
                np.broadcast_to((np.abs(x) <= xp + 2) & (((z - z0 + 2) / 11) ** 2 <= 1), vol[sl].shape)
            ] = POST_BONE
            sl, x, y, z = self._region((-3.5, ycp + 5, z0 - 13), (3.5, ycp + 30, z0 + 7))
            mask = (((z - z0 + 3) / 9) ** 2 + ((y - ycp - 5) / 26) ** 4 <= 1) & (np.abs(x) <= 3.2)
            vol[sl][np.broadcast_to(mask, vol[sl].shape)] = POST_BONE
        # Facet joints at the labelled disc levels (and T12/L1), with a bright joint line.
        for z0 in zd[:-1]:
            for s in (1, -1):
                c = np.array([s * (xp + 1.5), ycp + 3.0, z0 + 1.0])
                self._ellipsoid(vol, c, (5.5, 5.5, 9.0), POST_BONE)
                sl, x, y, z = self._region(c - (0.6, 5, 8), c + (0.6, 5, 8))
                m = (((y - c[1]) / 5) ** 2 + ((z - c[2]) / 8) ** 2 <= 1) & (np.abs(x - c[0]) <= 0.5)
                vol[sl][np.broadcast_to(m, vol[sl].shape)] = CSF
        # Foramina: fibrous bed, fat scaled by NFS severity, exiting nerve root.
        for level in LEVELS:
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
        sl, x, y, z = self._region(
            (-sw - 2, ycc - ap / 2 - 2, self.z_range[0]), (sw + 2, ycc + ap / 2 + 3, self.z_range[1])
        )
        sub = vol[sl]
        rim = (x / (sw + 1.2)) ** 2 + ((y - ycc) / (ap / 2 + 1.2)) ** 2 <= 1
        sub[np.broadcast_to(rim, sub.shape)] = LIGAMENT
        fat = ((x / (sw * 0.6)) ** 2 + ((y - ycc - 1.6) / (ap / 2 + 1.6)) ** 2 <= 1) & (y > ycc)
        sub[np.broadcast_to(fat, sub.shape)] = FAT
        half_ap = np.full(z.shape, ap / 2, dtype=np.float32)
        for level in LEVELS:
            scs_scale = g.scale("Spinal Canal Stenosis", level)
            half_ap = half_ap * (
                1 - (1 - scs_scale) * np.exp(-((z - g.level_disc_z(level)) ** 2) / (2 * 4.0**2))
            )
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
        sl, x, y, z = self._region(
            (cx - semi_xy[0], cy - semi_xy[1], cz - half_z), (cx + semi_xy[0], cy + semi_xy[1], cz + half_z)
        )
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
            lut = (
                CONTRASTS[contrast] * np.asarray(self.g.contrast_jitter.get(contrast, np.ones(N_TISSUES)))
            ).astype(np.float32)
            self._volumes[contrast] = lut[self.labels]
        return self._volumes[contrast]

    def tissue_at(self, patient_point) -> int:
        """Tissue class of the voxel nearest a patient (LPS) point; MUSCLE outside the spine box."""
        idx = np.round((self.g.to_local(patient_point) - self.lo) / self.voxel).astype(int)
        if np.any(idx < 0) or np.any(idx >= np.asarray(self.shape)):
            return MUSCLE
        return int(self.labels[tuple(idx)])

    def _background(self, x: np.ndarray, y: np.ndarray, contrast: str) -> np.ndarray:
        """Analytic soft tissue outside the spine box: body outline, subcutaneous fat, viscera.
        ``x``, ``y`` are local coordinates (mm)."""
        lut = (
            CONTRASTS[contrast] * np.asarray(self.g.contrast_jitter.get(contrast, np.ones(N_TISSUES)))
        ).astype(np.float32)
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
        offsets = (
            (np.linspace(-0.3, 0.3, thickness_samples) * plane.thickness) if thickness_samples > 1 else [0.0]
        )
        lx = np.float32(a0[0]) + r * np.float32(dr[0]) + c * np.float32(dc[0])
        ly = np.float32(a0[1]) + r * np.float32(dr[1]) + c * np.float32(dc[1])
        img = self._background(lx, ly, contrast)
        acc = np.zeros((plane.rows, plane.cols), dtype=np.float32)
        upper = np.asarray(self.shape, np.float32) - 1
        for off in offsets:
            a = (a0 + off * dn - self.lo) / self.voxel
            idx = [
                np.float32(a[k]) + r * np.float32(dr[k] / self.voxel) + c * np.float32(dc[k] / self.voxel)
                for k in range(3)
            ]
            inside = (
                (idx[0] >= 0)
                & (idx[0] <= upper[0])
                & (idx[1] >= 0)
                & (idx[1] <= upper[1])
                & (idx[2] >= 0)
                & (idx[2] <= upper[2])
            )
            if inside.any():
                coords = np.stack([i[inside] for i in idx])
                acc[inside] += ndimage.map_coordinates(vol, coords, order=1, prefilter=False)
            acc[~inside] += img[~inside]
        return acc / len(offsets)
