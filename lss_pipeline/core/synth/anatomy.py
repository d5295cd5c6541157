"""One study's anatomy as numbers: tissue classes and their MR signal, the spine's geometry,
and the severity scale of every graded structure (see ``phantom.py`` for how it is painted).

Coordinates are DICOM LPS millimetres: x to the patient's left, y posterior, z superior; the
spine lives in a local frame (spine axis = local z) rotated about x by a per-study tilt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

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
            z.append(
                z[-1] - self.body_heights[i - 1] / 2 - self.disc_heights[i - 1] - self.body_heights[i] / 2
            )
        zs = np.asarray(z)
        return zs - zs[VERTEBRAE.index("L3")]

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

    def to_patient(self, local: npt.ArrayLike) -> np.ndarray:
        return np.asarray(self.origin) + np.asarray(local, dtype=float) @ self.rotation.T

    def to_local(self, patient: npt.ArrayLike) -> np.ndarray:
        return (np.asarray(patient, dtype=float) - np.asarray(self.origin)) @ self.rotation

    def scale(self, condition: str, level: str) -> float:
        return self.severity_scale.get((condition, level), 1.0)

    # Landmarks (local frame) that the labels point at.
    def foramen_center_local(self, side: str, level: str) -> np.ndarray:
        return np.array(
            [SIDE_SIGN[side] * self.pedicle_x, self.body_post_y + 3.5, self.level_disc_z(level) + 3.0]
        )

    def recess_center_local(self, side: str, level: str) -> np.ndarray:
        return np.array(
            [
                SIDE_SIGN[side] * (self.sac_half_width + 1.0),
                self.body_post_y + 2.6,
                self.level_disc_z(level) - 1.0,
            ]
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
        geometry.severity_scale[key] = (
            severity_to_scale(rng, severity) if variation > 0 else (1.0, 0.62, 0.34)[severity]
        )
    return geometry
