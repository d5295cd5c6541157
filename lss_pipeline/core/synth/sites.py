"""Eight imaging sites: how each one acquires and exports its lumbar MRIs.

Real exports differ from site to site: matrix size (384–640), field of view, pixel spacing that
is not square, series that are oblique or stored flipped, instance numbers that run against the
spatial order, axial series made of several stacks, and the transfer syntax of the files. A
:class:`SiteProfile` holds one site's habits; every series of a study drawn at that site gets
its own draw from them (see ``series.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AxialLayout = Literal["per_level", "per_level_overlap", "contiguous", "two_stacks"]
TransferSyntaxName = Literal[
    "explicit_le",
    "implicit_le",
    "jpeg2000_lossless",
    "jpeg2000",
    "jpegls_lossless",
    "jpegls_near",
    "rle",
    "jpeg_baseline",
]
# Matrix sizes below are the site's real ones; a synthetic set scales them by rows / FULL_MATRIX
# (rows = 256 gives 192–320 px) so a demo stays fast.
FULL_MATRIX = 512


@dataclass(frozen=True)
class SiteProfile:
    """One site's protocol and export habits.

    ``*_matrix`` is (rows, columns) and ``*_fov_mm`` the extent along (rows, columns); where the
    two ratios differ the pixels are not square. ``oblique_deg`` is the largest tilt of a series
    away from the standard planes (each series draws 30–100 % of it, about a random axis).
    ``flip_rate``: chance a series is stored mirrored (row or column direction reversed).
    ``reverse_rate``: chance its InstanceNumbers run against the spatial order.
    ``axial_layout``: ``per_level`` one short stack per disc, angled along it; ``per_level_overlap``
    the same with stacks long enough to overlap their neighbours, each at its own angle;
    ``contiguous`` one stack over L1–S1; ``two_stacks`` two parallel stacks (upper, lower) that
    overlap around L3/L4, numbered one after the other.
    """

    name: str
    transfer_syntax: TransferSyntaxName
    sagittal_matrix: tuple[int, int]
    sagittal_fov_mm: tuple[float, float]  # along (rows, columns)
    sagittal_spacing_mm: float
    axial_matrix: tuple[int, int]
    axial_fov_mm: tuple[float, float]
    axial_spacing_mm: float
    axial_layout: AxialLayout
    oblique_deg: float
    flip_rate: float
    reverse_rate: float

    def scaled(self, matrix: tuple[int, int], rows: int) -> tuple[int, int]:
        """A matrix at the synthetic set's scale (``rows`` = the plain set's image side)."""
        # At least 32 px: the JPEG 2000 encoder needs that many for its 6 resolution levels.
        r, c = (max(32, int(round(m * rows / FULL_MATRIX))) for m in matrix)
        return r, c


# One site per transfer syntax; the other habits are spread so that every kind of variety
# appears at two or more sites. The JPEG 2000 sites get the smaller matrices: that encoder is
# the slowest (about 10 ms a 256 x 256 image).
# fmt: off
SITE_PROFILES: tuple[SiteProfile, ...] = (
    #           name      syntax               sagittal: matrix, FOV mm, spacing  axial: the same
    SiteProfile("Site 1", "explicit_le",       (512, 512), (220, 220), 3.8, (512, 512), (170, 170), 4.0,
                "per_level", oblique_deg=2.0, flip_rate=0.0, reverse_rate=0.0),
    SiteProfile("Site 2", "implicit_le",       (448, 448), (240, 240), 4.0, (384, 384), (180, 180), 4.5,
                "per_level_overlap", oblique_deg=6.0, flip_rate=0.2, reverse_rate=0.5),
    SiteProfile("Site 3", "jpeg2000_lossless", (448, 448), (200, 200), 3.5, (384, 384), (160, 160), 4.0,
                "contiguous", oblique_deg=10.0, flip_rate=0.0, reverse_rate=0.3),
    SiteProfile("Site 4", "jpegls_lossless",   (512, 384), (230, 200), 4.0, (448, 384), (170, 160), 4.0,
                "two_stacks", oblique_deg=8.0, flip_rate=0.3, reverse_rate=0.5),
    SiteProfile("Site 5", "rle",               (384, 384), (250, 220), 4.4, (384, 320), (180, 160), 4.0,
                "per_level", oblique_deg=15.0, flip_rate=0.5, reverse_rate=0.0),
    SiteProfile("Site 6", "jpeg_baseline",     (640, 640), (220, 220), 3.8, (512, 512), (175, 175), 4.0,
                "per_level", oblique_deg=4.0, flip_rate=0.0, reverse_rate=1.0),
    SiteProfile("Site 7", "jpegls_near",       (576, 512), (240, 220), 3.6, (448, 448), (170, 170), 5.0,
                "per_level_overlap", oblique_deg=12.0, flip_rate=0.5, reverse_rate=0.5),
    SiteProfile("Site 8", "jpeg2000",          (384, 448), (210, 240), 4.0, (512, 448), (180, 160), 4.5,
                "contiguous", oblique_deg=15.0, flip_rate=0.3, reverse_rate=0.5),
)
# fmt: on


def site_of(index: int, n_sites: int) -> SiteProfile:
    """The site of the ``index``-th study when a set spans ``n_sites`` sites (round robin)."""
    if not 1 <= n_sites <= len(SITE_PROFILES):
        raise ValueError(f"sites must be between 1 and {len(SITE_PROFILES)}, got {n_sites}")
    return SITE_PROFILES[index % n_sites]
