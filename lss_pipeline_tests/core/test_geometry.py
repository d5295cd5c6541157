"""Slice geometry: pixel <-> patient transforms, spatial order, stack splitting."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lss_pipeline.core.geometry import (
    SliceGeometry,
    add_slice_position,
    assign_stacks,
    neighbour_indices,
    patient_to_pixel,
    pixel_to_patient,
    spatial_order,
    split_stacks,
)


def _sagittal(ipp=(10.0, 20.0, 30.0), spacing_row=0.5, spacing_col=0.8) -> SliceGeometry:
    # Sagittal: rows run anterior->posterior (+y), columns run head->feet (-z).
    return SliceGeometry(
        ipp=np.array(ipp), row_dir=np.array([0.0, 1.0, 0.0]), col_dir=np.array([0.0, 0.0, -1.0]),
        spacing_row=spacing_row, spacing_col=spacing_col,
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
    g = SliceGeometry(ipp=np.array([-120.0, -90.0, 40.0]), row_dir=row_dir, col_dir=col_dir,
                      spacing_row=0.7, spacing_col=0.45)
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
    df = pl.DataFrame({
        "ipp_x": [5.0, -3.0], "ipp_y": [1.0, 2.0], "ipp_z": [0.0, 7.0],
        "iop_row_x": [0.0, 1.0], "iop_row_y": [1.0, 0.0], "iop_row_z": [0.0, 0.0],
        "iop_col_x": [0.0, 0.0], "iop_col_y": [0.0, 1.0], "iop_col_z": [-1.0, 0.0],
    })
    out = add_slice_position(df)
    # row 0 sagittal: normal (0,1,0)x(0,0,-1) = (-1,0,0); row 1 axial: (1,0,0)x(0,1,0) = (0,0,1)
    assert out["slice_position"].to_list() == pytest.approx([-5.0, 7.0])
    assert out.select("normal_x", "normal_y", "normal_z").rows() == [(-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)]


def test_spatial_order_ignores_instance_numbers():
    positions = np.array([3.0, -1.0, 7.0, 0.5])
    assert spatial_order(positions).tolist() == [1, 3, 0, 2]


def _axial_normals(n: int, tilt_deg: float) -> np.ndarray:
    t = np.deg2rad(tilt_deg)
    return np.tile([0.0, np.sin(t), np.cos(t)], (n, 1))


def test_split_stacks_separates_orientations_interleaved_in_instance_order():
    n1 = _axial_normals(6, 0.0)
    n2 = _axial_normals(6, 20.0)
    ipp1 = np.array([[0.0, 0.0, z] for z in np.arange(6) * 4.0])
    ipp2 = np.array([[0.0, 0.0, 100.0]]) + np.arange(6)[:, None] * 4.0 * n2[0]
    normals = np.empty((12, 3))
    ipps = np.empty((12, 3))
    normals[0::2], normals[1::2] = n1, n2
    ipps[0::2], ipps[1::2] = ipp1, ipp2
    stack = split_stacks(normals, ipps)
    assert stack.tolist() == [0, 1] * 6


def test_split_stacks_cuts_same_orientation_at_a_large_gap_but_not_at_one_missing_slice():
    normals = _axial_normals(10, 0.0)
    z = np.array([0, 4, 8, 12, 16, 60, 64, 68, 72, 76], dtype=float)
    ipps = np.stack([np.zeros(10), np.zeros(10), z], axis=1)
    assert split_stacks(normals, ipps).tolist() == [0] * 5 + [1] * 5
    z_missing_one = np.array([0, 4, 8, 16, 20, 24], dtype=float)  # 12 mm lost to quarantine
    ipps2 = np.stack([np.zeros(6), np.zeros(6), z_missing_one], axis=1)
    assert split_stacks(_axial_normals(6, 0.0), ipps2).tolist() == [0] * 6


def test_split_stacks_treats_antiparallel_normals_as_one_orientation():
    normals = np.array([[0, 0, 1.0], [0, 0, -1.0], [0, 0, 1.0]])
    ipps = np.array([[0, 0, 0.0], [0, 0, 4.0], [0, 0, 8.0]])
    assert split_stacks(normals, ipps).tolist() == [0, 0, 0]


def test_assign_stacks_is_per_series():
    rows = []
    for series, tilt in ((1, 0.0), (2, 25.0)):
        n = _axial_normals(1, tilt)[0]
        for inst in range(1, 5):
            rows.append({"study_id": 7, "series_id": series, "instance_number": inst,
                         "ipp_x": 0.0, "ipp_y": 0.0, "ipp_z": 4.0 * inst,
                         "normal_x": n[0], "normal_y": n[1], "normal_z": n[2]})
    out = assign_stacks(pl.DataFrame(rows))
    assert out["stack_id"].to_list() == [0] * 8


@pytest.mark.parametrize(
    ("centre", "n_avail", "n_slices", "expected", "replicated"),
    [
        (5, 10, 5, [3, 4, 5, 6, 7], 0),
        (0, 10, 5, [0, 0, 0, 1, 2], 2),
        (9, 10, 5, [7, 8, 9, 9, 9], 2),
        (1, 3, 5, [0, 0, 1, 2, 2], 2),
        (0, 1, 3, [0, 0, 0], 2),
        (2, 4, 1, [2], 0),
    ],
)
def test_neighbour_indices_replicate_the_edge(centre, n_avail, n_slices, expected, replicated):
    idx, n_rep = neighbour_indices(centre, n_avail, n_slices)
    assert idx.tolist() == expected
    assert n_rep == replicated


def test_neighbour_indices_rejects_a_centre_outside_the_stack():
    with pytest.raises(IndexError):
        neighbour_indices(4, 4, 3)
