"""The knobs of a synthetic set: acquisition, anatomy and label noise."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class SynthOptions:
    """Acquisition and label-noise knobs; defaults are close to the real data."""

    rows: int = 256  # image side in pixels (all series)
    sagittal_slices: int = 17
    sagittal_spacing_mm: float = 3.8
    sagittal_fov_mm: float = 210.0
    axial_slices_per_level: int = 5
    axial_spacing_mm: float = 4.0
    axial_fov_mm: float = 170.0
    voxel_mm: float = 0.6  # phantom resolution
    thickness_samples: int = 2  # samples across the slice thickness (partial volume)
    noise: float = 0.035  # Rician noise sigma, in tissue units (CSF on T2 is about 1)
    bias: float = 0.35  # strength of the smooth intensity bias
    variation: float = 1.0  # anatomical variation between studies (0 = identical spines)
    label_noise: float = 0.04  # chance a written label is an adjacent class to the anatomy
    blank_rate: float = 0.02  # share of blank train.csv cells
    annotation_jitter_mm: float = 0.8  # annotators' click error
    shuffled_order_rate: float = 0.15  # series whose InstanceNumber order is not spatial
    fault_rate: float = 0.02  # per fault kind, share of studies (at least one each)

    @classmethod
    def from_kwargs(cls, **kwargs) -> SynthOptions:
        known = {f.name for f in fields(cls)}
        unknown = set(kwargs) - known
        if unknown:
            raise TypeError(f"unknown synthetic-data option(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**kwargs)
