"""Cut one 2.5D crop: a (slices, px, px) grid in patient space around one point.

The crop is a square grid ``crop_mm`` wide with ``crop_px`` samples a side, laid along the
stack's :class:`~lss_pipeline.core.crops.geometry.CropFrame` (width ``u``, height ``v``),
centred on the point, on every slice of the stack around it (channels in ``n`` order). The
point is given as (x, y) on the centre slice and carried to the other slices through patient
space, so in-plane shifts between slices are honoured. Because the grid is defined in patient
space, a series stored flipped, transposed, with non-square pixels or in reversed slice order
gives the same crop.

Samples are bilinear. Where a crop sample is coarser than the image's pixels, the image is
first smoothed (Gaussian, sigma = (shrink - 1) / 2 per image axis) so that fine texture does
not alias. Samples that fall outside the image are **zero-padded, never shifted** (``padded``).
Intensities are normalised per crop (all slices together) from the 1st-99th percentiles of the
in-image samples to [0, 1]; padding stays 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from lss_pipeline.core.crops.geometry import (
    CropFrame,
    SliceGeometry,
    patient_to_pixel,
    pixel_to_patient,
    unit,
)

LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.0
PERCENTILE_SAMPLES = 32768


@dataclass(frozen=True)
class Crop:
    """One cut crop and how it was cut."""

    pixels: np.ndarray  # (slices, crop_px, crop_px) float32 in [0, 1]
    padded: bool  # some sample of some slice fell outside its image
    window_px: tuple[float, float]  # crop width in image columns / rows of the centre slice
    point: np.ndarray  # (3,) the crop centre in patient coordinates (mm)


def sample_grid(
    geom: SliceGeometry, frame: CropFrame, point: np.ndarray, crop_mm: float, crop_px: int
) -> tuple[np.ndarray, np.ndarray]:
    """Image coordinates (x column, y row), each (crop_px, crop_px), of the crop grid on one slice.

    Grid sample (i, j) sits at ``point + a_j u + b_i v`` projected onto the slice, with
    offsets ``(k + 0.5 - crop_px / 2) * crop_mm / crop_px``: the grid centre is the point.
    """
    normal = geom.normal
    u = unit(frame.u - (frame.u @ normal) * normal)  # frame axes laid into this slice's plane
    v = unit(frame.v - (frame.v @ normal) * normal - (frame.v @ u) * u)
    cx, cy, _ = patient_to_pixel(geom, point)
    step = crop_mm / crop_px
    offsets = (np.arange(crop_px, dtype=np.float64) + 0.5 - crop_px / 2.0) * step
    a, b = offsets[None, :], offsets[:, None]  # a along width (columns), b along height (rows)
    xs = cx + (a * (u @ geom.row_dir) + b * (v @ geom.row_dir)) / geom.spacing_col
    ys = cy + (a * (u @ geom.col_dir) + b * (v @ geom.col_dir)) / geom.spacing_row
    return xs, ys


def _gaussian_kernel(sigma: float) -> np.ndarray:
    """1-D Gaussian of radius ceil(3 sigma); the identity for sigma 0."""
    if sigma <= 0:
        return np.ones((1, 1), dtype=np.float32)
    return cv2.getGaussianKernel(2 * int(math.ceil(3 * sigma)) + 1, sigma, cv2.CV_32F)


def _smooth_window(
    image: np.ndarray, xs: np.ndarray, ys: np.ndarray, sigma_x: float, sigma_y: float
) -> tuple[np.ndarray, int, int]:
    """Gaussian-smoothed part of ``image`` that covers the samples, and its (x, y) offset.

    Only the covered part (plus the kernel radius) is filtered; edges replicate the image's
    own border, so the result equals smoothing the whole image there.
    """
    rows, cols = image.shape
    rx, ry = int(math.ceil(3 * sigma_x)), int(math.ceil(3 * sigma_y))
    x_lo = max(0, int(math.floor(xs.min())) - rx - 2)
    x_hi = min(cols - 1, int(math.ceil(xs.max())) + rx + 2)
    y_lo = max(0, int(math.floor(ys.min())) - ry - 2)
    y_hi = min(rows - 1, int(math.ceil(ys.max())) + ry + 2)
    if x_lo > x_hi or y_lo > y_hi:  # the grid misses the image entirely
        return image, 0, 0
    part = np.ascontiguousarray(image[y_lo : y_hi + 1, x_lo : x_hi + 1], dtype=np.float32)
    smooth = cv2.sepFilter2D(
        part,
        cv2.CV_32F,
        _gaussian_kernel(sigma_x),
        _gaussian_kernel(sigma_y),
        borderType=cv2.BORDER_REPLICATE,
    )
    return smooth, x_lo, y_lo


def sample_slice(
    image: np.ndarray, xs: np.ndarray, ys: np.ndarray, *, sigma_x: float = 0.0, sigma_y: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear samples of ``image`` at (xs, ys) and the in-image mask; outside samples are 0.

    A sample is inside when it lies within the image's pixel area (-0.5 .. size - 0.5); the
    last half pixel repeats the border pixel.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {image.shape}")
    rows, cols = image.shape
    inside = (xs >= -0.5) & (xs <= cols - 0.5) & (ys >= -0.5) & (ys <= rows - 0.5)
    out = np.zeros(xs.shape, dtype=np.float32)
    if not inside.any():
        return out, inside
    src, x_off, y_off = image, 0, 0
    if sigma_x > 0 or sigma_y > 0:
        src, x_off, y_off = _smooth_window(image, xs[inside], ys[inside], sigma_x, sigma_y)
    # OpenCV's bilinear remap (1/32-pixel weights, symmetric under flips); the border pixel
    # repeats over the last half pixel.
    map_x = (xs - x_off).astype(np.float32)
    map_y = (ys - y_off).astype(np.float32)
    sampled = cv2.remap(src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out[inside] = sampled[inside]
    return out, inside


def normalise_windows(windows: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
    """Map all windows of one crop to [0, 1] by the 1st-99th percentiles of their in-image pixels."""
    valid = np.concatenate([w[m] for w, m in zip(windows, masks)])
    if valid.size == 0:
        return [np.zeros_like(w) for w in windows]
    # Big crops: percentiles of an even subsample (the grid is in patient space, so the same
    # samples whatever the storage order) cost a fraction of the full sort.
    valid = valid[:: max(1, valid.size // PERCENTILE_SAMPLES)]
    lo, hi = np.percentile(valid, [LOW_PERCENTILE, HIGH_PERCENTILE])
    scale = 1.0 / (hi - lo) if hi > lo else 0.0
    out = []
    for w, m in zip(windows, masks):
        n = np.clip((w - lo) * scale, 0.0, 1.0).astype(np.float32)
        n[~m] = 0.0  # padding stays black whatever the percentiles
        out.append(n)
    return out


def cut_crop(
    images: list[np.ndarray],
    geoms: list[SliceGeometry],
    frame: CropFrame,
    centre_slice: int,
    x: float,
    y: float,
    *,
    crop_mm: float,
    crop_px: int,
) -> Crop:
    """Crop every slice (in channel order) around pixel (x column, y row) of slice ``centre_slice``."""
    if crop_mm <= 0 or crop_px < 1:
        raise ValueError(f"crop_mm must be > 0 and crop_px >= 1, got {crop_mm}, {crop_px}")
    point = pixel_to_patient(geoms[centre_slice], x, y)
    step = crop_mm / crop_px
    windows, masks = [], []
    for image, geom in zip(images, geoms):
        xs, ys = sample_grid(geom, frame, point, crop_mm, crop_px)
        # Smooth only where a sample spans several pixels (anti-aliasing).
        sigma_x = max(0.0, (step / geom.spacing_col - 1.0) / 2.0)
        sigma_y = max(0.0, (step / geom.spacing_row - 1.0) / 2.0)
        window, mask = sample_slice(image, xs, ys, sigma_x=sigma_x, sigma_y=sigma_y)
        windows.append(window)
        masks.append(mask)
    pixels = np.stack(normalise_windows(windows, masks)).astype(np.float32)
    centre = geoms[centre_slice]
    return Crop(
        pixels=np.clip(pixels, 0.0, 1.0),
        padded=not all(bool(m.all()) for m in masks),
        window_px=(crop_mm / centre.spacing_col, crop_mm / centre.spacing_row),
        point=point,
    )
