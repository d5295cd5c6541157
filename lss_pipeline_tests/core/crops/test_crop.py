"""Cutting one crop: the patient-space grid, padding, anti-aliasing, normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from lss_pipeline.core.crops.crop import cut_crop, sample_grid, sample_slice
from lss_pipeline.core.crops.geometry import CropFrame, SliceGeometry

SAG_FRAME = CropFrame.for_normal(np.array([-1.0, 0.0, 0.0]))


def _sagittal(x_mm: float, *, ipp_yz=(0.0, 0.0), spacing=(1.0, 1.0)) -> SliceGeometry:
    return SliceGeometry(
        ipp=np.array([x_mm, *ipp_yz]),
        row_dir=np.array([0.0, 1.0, 0.0]),
        col_dir=np.array([0.0, 0.0, -1.0]),
        spacing_row=spacing[0],
        spacing_col=spacing[1],
    )


def test_grid_is_centred_on_the_point_in_millimetres():
    geom = _sagittal(0.0, spacing=(0.5, 0.25))
    point = np.array([0.0, 10.0, -20.0])  # column 40, row 40
    xs, ys = sample_grid(geom, SAG_FRAME, point, crop_mm=8.0, crop_px=4)
    # Samples 2 mm apart, centred: offsets -3, -1, 1, 3 mm -> columns 40 + k/0.25, rows 40 + k/0.5.
    np.testing.assert_allclose(xs[0], [28.0, 36.0, 44.0, 52.0])
    np.testing.assert_allclose(ys[:, 0], [34.0, 38.0, 42.0, 46.0])


def test_samples_outside_the_image_are_zero_padded_not_shifted():
    img = np.arange(100, dtype=np.float32).reshape(10, 10) + 1
    xs, ys = np.meshgrid(np.arange(-2.0, 4.0), np.arange(3.0, 7.0))
    window, mask = sample_slice(img, xs, ys)
    np.testing.assert_array_equal(window[:, :2], 0)
    np.testing.assert_array_equal(window[:, 2:], img[3:7, 0:4])
    assert mask[:, 2:].all() and not mask[:, :2].any()
    # The last half pixel of the image still counts as inside (it repeats the border pixel).
    w2, m2 = sample_slice(img, np.array([[-0.4, 9.4]]), np.array([[0.0, 0.0]]))
    assert m2.all() and w2.tolist() == [[1.0, 10.0]]


def test_crop_near_the_edge_is_zero_padded_with_content_in_place():
    rng = np.random.default_rng(2)
    images = [rng.uniform(100, 200, (64, 48)).astype(np.float32) for _ in range(3)]
    for img in images:
        img[40, 0] = 5000.0  # marker on the image's first column
    geoms = [_sagittal(-3.0 * k) for k in range(3)]
    # Centre (3.5, 40.5): 16 samples 1 mm apart at columns -4..11, rows 33..48.
    crop = cut_crop(images, geoms, SAG_FRAME, 1, 3.5, 40.5, crop_mm=16, crop_px=16)
    assert crop.padded
    px = crop.pixels
    np.testing.assert_array_equal(px[:, :, :4], 0.0)
    assert px[1, 7, 4] == pytest.approx(1.0)  # the marker, where it belongs
    valid = np.concatenate([im[33:49, 0:12].ravel() for im in images])
    lo, hi = np.percentile(valid, [1, 99])
    np.testing.assert_allclose(
        px[1, :, 4:], np.clip((images[1][33:49, 0:12] - lo) / (hi - lo), 0, 1), atol=1e-5
    )


def test_crop_inside_the_image_is_not_padded_and_lies_in_unit_range():
    rng = np.random.default_rng(3)
    images = [rng.uniform(0, 1000, (80, 80)).astype(np.float32) for _ in range(3)]
    geoms = [_sagittal(-3.0 * k) for k in range(3)]
    crop = cut_crop(images, geoms, SAG_FRAME, 1, 40.0, 40.0, crop_mm=20, crop_px=24)
    assert not crop.padded and crop.pixels.shape == (3, 24, 24)
    assert crop.pixels.min() >= 0.0 and crop.pixels.max() <= 1.0
    assert crop.window_px == (20.0, 20.0)
    other = cut_crop(images, geoms, SAG_FRAME, 1, 30.0, 50.0, crop_mm=20, crop_px=24)
    assert np.abs(crop.pixels - other.pixels).mean() > 0.1  # swapped x/y is another place


def test_neighbours_are_sampled_at_the_projected_point():
    """Slices of a stack shifted in-plane: the crop follows the 3D point, not the pixel index."""
    images = [np.full((60, 60), 10.0, dtype=np.float32) for _ in range(3)]
    # A bright bar at patient z = 20 on every slice; slices 0 and 2 start 10 mm lower, so the
    # bar is at row 20 there and at row 30 on slice 1.
    ipp_z = (40.0, 50.0, 40.0)
    geoms = [_sagittal(-3.0 * k, ipp_yz=(0.0, z)) for k, z in enumerate(ipp_z)]
    for img, z in zip(images, ipp_z):
        img[int(z - 20), :] = 1000.0
    crop = cut_crop(images, geoms, SAG_FRAME, 1, 30.0, 30.0, crop_mm=11, crop_px=11)
    for ch in range(3):
        assert (
            int(np.argmax(crop.pixels[ch].mean(axis=1))) == 5
        )  # the bar is in the centre row on every slice


def test_fine_texture_is_smoothed_before_a_coarser_grid_samples_it():
    # One-pixel stripes at 0.25 mm: a 1 mm grid would alias them into stripes of its own.
    stripes = np.tile(np.array([0.0, 1000.0], dtype=np.float32), (200, 100))
    xs, ys = np.meshgrid(np.arange(50.0, 150.0, 4.0), np.arange(50.0, 150.0, 4.0))
    aliased, _ = sample_slice(stripes, xs + 0.1, ys)
    smooth, _ = sample_slice(stripes, xs + 0.1, ys, sigma_x=1.5, sigma_y=1.5)
    assert aliased.mean() < 200  # every sample lands on the same stripe phase: a wrong grey
    assert smooth.std() < 30 and abs(smooth.mean() - 500.0) < 30


def test_bad_crop_sizes_are_refused():
    with pytest.raises(ValueError, match="crop_mm"):
        cut_crop([np.zeros((4, 4))], [_sagittal(0.0)], SAG_FRAME, 0, 1.0, 1.0, crop_mm=0.0, crop_px=4)
