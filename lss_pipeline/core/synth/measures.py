"""Measure the graded structure on an image around a labelled point (the phantom's own measures).

Each measure counts bright pixels (CSF on T2, fat on T1) near the point: they shrink with the
severity of the structure the label grades, so a crop or coordinate that misses its structure
shows up as a measure that does not follow the grade.
"""

from __future__ import annotations

import numpy as np

# Fraction of the image's bright end (fat on T1, CSF on T2) a pixel must reach to count:
# high enough to exclude marrow, disc nucleus and epidural fat.
BRIGHT_FRACTION = 0.75


def canal_ap_mm(
    image: np.ndarray,
    x: float,
    y: float,
    pixel_spacing: tuple[float, float],
    threshold: float | None = None,
    search_mm: float = 14.0,
) -> float:
    """CSF run length (mm) along the image row through (x, y): the canal's AP diameter on a
    sagittal image (rows run antero-posterior there). ``threshold`` defaults to BRIGHT_FRACTION of the
    image's 99.5th percentile, CSF being the brightest tissue on T2."""
    img = np.asarray(image, dtype=np.float32)
    thr = BRIGHT_FRACTION * float(np.percentile(img, 99.5)) if threshold is None else threshold
    r = int(round(y))
    n = int(round(search_mm / pixel_spacing[1]))
    c0 = int(round(x))
    row = img[np.clip(r, 0, img.shape[0] - 1), max(c0 - n, 0) : c0 + n + 1]
    return float((row > thr).sum() * pixel_spacing[1])


def bright_area_mm2(
    image: np.ndarray,
    x: float,
    y: float,
    pixel_spacing: tuple[float, float],
    radius_mm: float,
    threshold: float | None = None,
) -> float:
    """Area (mm²) of pixels above ``threshold`` within ``radius_mm`` of (x, y)."""
    img = np.asarray(image, dtype=np.float32)
    thr = BRIGHT_FRACTION * float(np.percentile(img, 99.5)) if threshold is None else threshold
    rr, cc = np.ogrid[: img.shape[0], : img.shape[1]]
    near = ((rr - y) * pixel_spacing[0]) ** 2 + ((cc - x) * pixel_spacing[1]) ** 2 <= radius_mm**2
    return float(((img > thr) & near).sum() * pixel_spacing[0] * pixel_spacing[1])


def foramen_fat_mm2(
    image: np.ndarray, x: float, y: float, pixel_spacing: tuple[float, float], threshold: float | None = None
) -> float:
    """Fat area of the foramen around an NFS point on a parasagittal T1 image (fat is the
    brightest tissue on T1)."""
    return bright_area_mm2(image, x, y, pixel_spacing, radius_mm=7.0, threshold=threshold)


def recess_area_mm2(
    image: np.ndarray, x: float, y: float, pixel_spacing: tuple[float, float], threshold: float | None = None
) -> float:
    """CSF area of the lateral recess around an SBS point on an axial T2 image."""
    return bright_area_mm2(image, x, y, pixel_spacing, radius_mm=3.2, threshold=threshold)
