"""Canvases: patient-space grids that do not care how a series was stored."""

import numpy as np
import pytest

from lss_pipeline.core.crops.geometry import CropFrame, SliceGeometry, pixel_to_patient
from lss_pipeline.core.localise.canvas import CanvasSpec, build_canvas

SIZE = 64  # native pixels
SPACING = 1.0


def sagittal_stack(n: int = 9, step: float = 4.0, flip_rows: bool = False, reverse: bool = False):
    """A sagittal stack (rows head->feet, columns anterior->posterior) with a bright dot on one slice."""
    geoms, images, numbers = [], [], []
    for k in range(n):
        x = (k - n // 2) * step
        col_dir = np.array([0.0, 0.0, 1.0 if flip_rows else -1.0])
        top = 31.5 if flip_rows else -31.5
        ipp = np.array([x, -31.5, -top])
        geoms.append(SliceGeometry(ipp=ipp, row_dir=np.array([0.0, 1.0, 0.0]), col_dir=col_dir,
                                   spacing_row=SPACING, spacing_col=SPACING))  # fmt: skip
        image = np.tile(
            np.linspace(0.0, 0.3, SIZE, dtype=np.float32), (SIZE, 1)
        )  # a ramp: percentiles differ
        if k == 6:
            point = np.array([x, 5.5, 10.5])  # patient mm of the dot, on a pixel centre either way
            r = int(round((point - ipp) @ col_dir / SPACING))
            c = int(round((point - ipp) @ np.array([0.0, 1.0, 0.0]) / SPACING))
            image[r - 1 : r + 2, c - 1 : c + 2] = 1.0
        images.append(image)
        numbers.append(k + 1)
    order = list(range(n))[::-1] if reverse else list(range(n))
    return [images[i] for i in order], [geoms[i] for i in order], [numbers[i] for i in order]


def frame_of(geoms):
    return CropFrame.for_normal(geoms[0].normal)


SPEC = CanvasSpec(size=48, mm_per_px=1.5, depth=9, depth_step_mm=4.0)


def test_round_trip_patient_canvas():
    images, geoms, numbers = sagittal_stack()
    canvas = build_canvas(images, geoms, numbers, frame_of(geoms), np.zeros(3), SPEC)
    points = np.array([[3.0, -7.5, 12.0], [-10.0, 20.0, -4.0]])
    col, row, depth = canvas.from_patient(points)
    np.testing.assert_allclose(canvas.to_patient(col, row, depth), points, atol=1e-9)


@pytest.mark.parametrize("flip_rows, reverse", [(False, True), (True, False), (True, True)])
def test_flipped_or_reversed_series_gives_the_same_canvas(flip_rows, reverse):
    plain = sagittal_stack()
    other = sagittal_stack(flip_rows=flip_rows, reverse=reverse)
    a = build_canvas(*plain, frame_of(plain[1]), np.zeros(3), SPEC)
    b = build_canvas(*other, frame_of(other[1]), np.zeros(3), SPEC)
    np.testing.assert_allclose(a.image, b.image, atol=1e-4)


def test_the_dot_lands_where_its_patient_point_maps():
    images, geoms, numbers = sagittal_stack()
    canvas = build_canvas(images, geoms, numbers, frame_of(geoms), np.zeros(3), SPEC)
    dot = np.array([(6 - 4) * 4.0, 5.5, 10.5])
    col, row, depth = canvas.from_patient(dot)
    channel = int(round(depth / SPEC.depth_step_mm + (SPEC.depth - 1) / 2))
    assert canvas.image[channel, int(row), int(col)] == pytest.approx(1.0, abs=0.02)
    assert canvas.image[channel - 2, int(row), int(col)] < 0.8  # two slices away: the ramp, no dot
    native, x, y, dist = canvas.nearest_slice(dot)
    assert native.instance_number == 7 and abs(dist) < 1e-6
    np.testing.assert_allclose(pixel_to_patient(native.geometry, x, y), dot, atol=1e-6)


def test_depth_outside_the_stack_is_blank():
    images, geoms, numbers = sagittal_stack(n=3)
    spec = CanvasSpec(size=16, mm_per_px=4.0, depth=9, depth_step_mm=4.0)
    canvas = build_canvas(images, geoms, numbers, frame_of(geoms), np.zeros(3), spec)
    assert canvas.image[0].max() == 0.0 and canvas.image[-1].max() == 0.0
    assert canvas.image[4].max() > 0.0
