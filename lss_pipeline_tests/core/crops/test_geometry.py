"""Patient-space geometry: pixel <-> patient transforms, slice position, the crop frame."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lss_pipeline.core.crops.geometry import (
    CropFrame,
    SliceGeometry,
    add_slice_position,
    patient_to_pixel,
    pixel_to_patient,
    plane_of,
    stack_normal,
)


def _sagittal(ipp=(10.0, 20.0, 30.0), spacing_row=0.5, spacing_col=0.8) -> SliceGeometry:
    # Sagittal: rows run anterior->posterior (+y), columns run head->feet (-z).
    return SliceGeometry(
        ipp=np.array(ipp),
        row_dir=np.array([0.0, 1.0, 0.0]),
        col_dir=np.array([0.0, 0.0, -1.0]),
        spacing_row=spacing_row,
        spacing_col=spacing_col,
    )


def test_pixel_to_patient_uses_column_spacing_for_x_and_row_spacing_for_y():
    g = _sagittal()
    p = pixel_to_patient(g, 10, 4)
    # x=10 columns * 0.8 mm along row_dir (+y); y=4 rows * 0.5 mm along col_dir (-z)
    np.testing.assert_allclose(p, [10.0, 28.0, 28.0])
    np.testing.assert_allclose(g.normal, [-1.0, 0.0, 0.0])
    assert g.position == pytest.approx(-10.0)


def test_patient_pixel_round_trip_on_an_oblique_plane():
    rng = np.random.default_rng(0)
    a = np.deg2rad(17.0)
    row_dir = np.array([1.0, 0.0, 0.0])
    col_dir = np.array([0.0, np.cos(a), -np.sin(a)])
    g = SliceGeometry(
        ipp=np.array([-120.0, -90.0, 40.0]),
        row_dir=row_dir,
        col_dir=col_dir,
        spacing_row=0.7,
        spacing_col=0.45,
    )
    xs, ys = rng.uniform(0, 512, 20), rng.uniform(0, 384, 20)
    pts = pixel_to_patient(g, xs, ys)
    x2, y2, dist = patient_to_pixel(g, pts)
    np.testing.assert_allclose(x2, xs, atol=1e-9)
    np.testing.assert_allclose(y2, ys, atol=1e-9)
    np.testing.assert_allclose(dist, 0.0, atol=1e-9)
    # A point 3 mm along the normal projects to the same pixel, 3 mm off the plane.
    x3, y3, d3 = patient_to_pixel(g, pts[0] + 3.0 * g.normal)
    assert (float(x3), float(y3), float(d3)) == pytest.approx((xs[0], ys[0], 3.0))


def test_add_slice_position_is_ipp_dot_normal():
    df = pl.DataFrame(
        {
            "ipp_x": [5.0, -3.0],
            "ipp_y": [1.0, 2.0],
            "ipp_z": [0.0, 7.0],
            "iop_row_x": [0.0, 1.0],
            "iop_row_y": [1.0, 0.0],
            "iop_row_z": [0.0, 0.0],
            "iop_col_x": [0.0, 0.0],
            "iop_col_y": [0.0, 1.0],
            "iop_col_z": [-1.0, 0.0],
        }
    )
    out = add_slice_position(df)
    # row 0 sagittal: normal (0,1,0)x(0,0,-1) = (-1,0,0); row 1 axial: (1,0,0)x(0,1,0) = (0,0,1)
    assert out["slice_position"].to_list() == pytest.approx([-5.0, 7.0])
    assert out.select("normal_x", "normal_y", "normal_z").rows() == [(-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)]


@pytest.mark.parametrize(
    ("normal", "plane", "u", "v"),
    [
        # Sagittal, either sign: width anterior->posterior (+y), height head->feet (-z).
        ((1.0, 0.0, 0.0), "sagittal", (0, 1, 0), (0, 0, -1)),
        ((-1.0, 0.0, 0.0), "sagittal", (0, 1, 0), (0, 0, -1)),
        # Axial, either sign: width patient right->left (+x), height anterior->posterior (+y).
        ((0.0, 0.0, 1.0), "axial", (1, 0, 0), (0, 1, 0)),
        ((0.0, 0.0, -1.0), "axial", (1, 0, 0), (0, 1, 0)),
        ((0.0, 1.0, 0.0), "coronal", (1, 0, 0), (0, 0, -1)),
    ],
)
def test_crop_frame_axes_are_patient_directions_whatever_the_normal_sign(normal, plane, u, v):
    frame = CropFrame.for_normal(np.array(normal))
    assert frame.plane == plane == plane_of(np.array(normal))
    np.testing.assert_allclose(frame.u, u, atol=1e-12)
    np.testing.assert_allclose(frame.v, v, atol=1e-12)
    np.testing.assert_allclose(frame.n, np.cross(frame.u, frame.v), atol=1e-12)


def test_crop_frame_of_an_oblique_axial_keeps_patient_left_along_the_width():
    t = np.deg2rad(15.0)
    normal = np.array([0.0, np.sin(t), np.cos(t)])  # tilted about x, as disc-angled axials are
    frame = CropFrame.for_normal(-normal)
    np.testing.assert_allclose(frame.u, [1.0, 0.0, 0.0], atol=1e-12)
    assert frame.n @ normal == pytest.approx(1.0)
    assert abs(frame.u @ frame.n) < 1e-12 and abs(frame.v @ frame.n) < 1e-12
    assert frame.v[1] > 0.9  # still anterior -> posterior


def test_stack_normal_averages_normals_of_either_sign():
    n = stack_normal(np.array([[0, 0, 1.0], [0, 0, -1.0], [0, 0.02, 1.0]]))
    assert n @ np.array([0, 0, 1.0]) > 0.999


def test_slice_geometry_rejects_bad_orientation_and_spacing():
    row = {
        "ipp_x": 0.0,
        "ipp_y": 0.0,
        "ipp_z": 0.0,
        "iop_row_x": 1.0,
        "iop_row_y": 0.0,
        "iop_row_z": 0.0,
        "iop_col_x": 1.0,
        "iop_col_y": 0.0,
        "iop_col_z": 0.0,
        "pixel_spacing_row": 1.0,
        "pixel_spacing_col": 1.0,
        "path": "a/b/1.dcm",
    }
    with pytest.raises(ValueError, match="parallel"):
        SliceGeometry.from_row(row)
    with pytest.raises(ValueError, match="PixelSpacing"):
        SliceGeometry.from_row({**row, "iop_col_x": 0.0, "iop_col_y": 1.0, "pixel_spacing_row": 0.0})
    with pytest.raises(ValueError, match="a/b/1.dcm"):
        SliceGeometry.from_row({**row, "ipp_x": None})


def _axial_series(stacks: list[tuple[np.ndarray, float, float]]) -> pl.DataFrame:
    """Axial slices (64 x 64, 1 mm) through ``(centre_z, tilt_deg)`` per stack, 4 slices 4 mm apart."""
    rows, number = [], 0
    for z0, tilt_deg in stacks:
        t = np.deg2rad(tilt_deg)
        r, c = np.array([1.0, 0.0, 0.0]), np.array([0.0, np.cos(t), -np.sin(t)])
        n = np.cross(r, c)
        for k in range(4):
            number += 1
            centre = np.array([0.0, 0.0, z0]) + (k - 1.5) * 4.0 * n
            ipp = centre - 31.5 * r - 31.5 * c
            rows.append({
                "instance_number": number, "rows": 64, "columns": 64, "pixel_spacing_row": 1.0,
                "pixel_spacing_col": 1.0, "ipp_x": ipp[0], "ipp_y": ipp[1], "ipp_z": ipp[2],
                "iop_row_x": r[0], "iop_row_y": r[1], "iop_row_z": r[2],
                "iop_col_x": c[0], "iop_col_y": c[1], "iop_col_z": c[2],
            })  # fmt: skip
    return pl.DataFrame(rows)


def test_nearest_slices_picks_the_stack_and_slice_a_point_falls_in():
    from lss_pipeline.core.crops.geometry import nearest_slices

    series = _axial_series([(0.0, 0.0), (40.0, 15.0)])  # instances 1-4 around z 0, 5-8 tilted around z 40
    out = nearest_slices(
        series, np.array([[2.0, -3.0, 2.5], [0.0, 0.0, 40.0 + 6.2], [0.0, 0.0, 400.0], [0, 90.0, 0]])
    )
    first, second, far, outside = out.rows(named=True)
    assert first["instance_number"] == 3 and first["distance_mm"] == pytest.approx(0.5)
    assert (first["x"], first["y"]) == pytest.approx((33.5, 28.5))
    assert second["instance_number"] in (7, 8) and abs(second["distance_mm"]) <= 2.0 + 1e-9
    assert far["distance_mm"] > 300  # a slice is still named: the caller judges the distance
    assert outside["instance_number"] is None and outside["x"] is None
