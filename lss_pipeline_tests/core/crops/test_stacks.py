"""Stacks: orientation, spatial overlap, instance runs, gaps; one stack normal for slice order."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lss_pipeline.core.crops.stacks import assign_stacks, neighbour_indices, spatial_order, split_stacks


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
            rows.append(
                {
                    "study_id": 7,
                    "series_id": series,
                    "instance_number": inst,
                    "ipp_x": 0.0,
                    "ipp_y": 0.0,
                    "ipp_z": 4.0 * inst,
                    "normal_x": n[0],
                    "normal_y": n[1],
                    "normal_z": n[2],
                }
            )
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


def _axial_block(z: np.ndarray, tilt_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    n = _axial_normals(len(z), tilt_deg)
    return n, np.asarray(z, dtype=float)[:, None] * n


def test_two_parallel_axial_stacks_overlapping_in_space_are_told_apart_by_instance_runs():
    # Stack A: instances 1-6 at z 0..20; stack B: instances 7-12 at z 2..22 (same orientation).
    na, ia = _axial_block(np.arange(6) * 4.0)
    nb, ib = _axial_block(np.arange(6) * 4.0 + 2.0)
    ids = split_stacks(np.vstack([na, nb]), np.vstack([ia, ib]), np.arange(1, 13))
    assert ids.tolist() == [0] * 6 + [1] * 6
    # Stack B numbered against its spatial direction: still two stacks.
    ids = split_stacks(np.vstack([na, nb]), np.vstack([ia, ib[::-1]]), np.arange(1, 13))
    assert ids.tolist() == [0] * 6 + [1] * 6


def test_two_stacks_at_the_same_positions_are_two_stacks():
    n, ipp = _axial_block(np.arange(5) * 4.0)
    ids = split_stacks(np.vstack([n, n]), np.vstack([ipp, ipp]), np.arange(1, 11))
    assert ids.tolist() == [0] * 5 + [1] * 5


def test_a_slice_numbered_out_of_turn_and_reversed_numbering_stay_one_stack():
    # Instance 4 sits where instance 6 belongs: three runs by number, one regular block in space.
    n, ipp = _axial_block(np.array([0.0, 4.0, 8.0, 20.0, 12.0, 16.0]))
    assert split_stacks(n, ipp, np.arange(1, 7)).tolist() == [0] * 6
    # Numbered feet to head or head to feet: the same single stack.
    n, ipp = _axial_block(np.arange(8) * 3.0)
    assert split_stacks(n, ipp, np.arange(8, 0, -1)).tolist() == [0] * 8


def test_an_interleaved_acquisition_numbered_in_two_runs_is_two_stacks_at_twice_the_step():
    z = np.concatenate([np.arange(0, 40, 8.0), np.arange(4, 44, 8.0)])
    n, ipp = _axial_block(z)
    assert split_stacks(n, ipp, np.arange(1, 11)).tolist() == [0] * 5 + [1] * 5


def test_shuffled_numbering_falls_back_to_space_alone():
    perm = np.array([7, 2, 9, 4, 1, 8, 3, 6, 5])
    n, ipp = _axial_block(np.arange(9) * 3.0)
    assert split_stacks(n, ipp, perm).tolist() == [0] * 9
    # ... and still cuts a large gap.
    z = np.array([0, 4, 8, 12, 60, 64, 68, 72.0])
    n, ipp = _axial_block(z)
    assert split_stacks(n, ipp, np.array([5, 2, 7, 1, 8, 3, 6, 4])).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_three_disc_blocks_numbered_in_one_run_are_three_stacks():
    z = np.concatenate([np.arange(5) * 4.0, 50 + np.arange(5) * 4.0, 100 + np.arange(5) * 4.0])
    n, ipp = _axial_block(z)
    assert split_stacks(n, ipp, np.arange(1, 16)).tolist() == [0] * 5 + [1] * 5 + [2] * 5


def test_assign_stacks_orders_slices_along_one_stack_normal():
    """A stack whose slices' own normals differ slightly (within tolerance) and whose IPPs are
    shifted in-plane: ``stack_position`` follows the stack normal, head-ward for axials, whatever
    the normal sign in the file."""
    rows = []
    rng = np.random.default_rng(0)
    for inst, z in enumerate([12.0, 8.0, 4.0, 0.0], start=1):  # numbered head to feet
        sign = -1.0 if inst % 2 else 1.0  # flipped normal on every other slice
        row, col = np.array([sign, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
        tilt = rng.normal(0, 0.01, 3)
        n = np.cross(row, col) + tilt
        rows.append(
            {
                "study_id": 1,
                "series_id": 2,
                "instance_number": inst,
                "ipp_x": rng.uniform(-5, 5),
                "ipp_y": rng.uniform(-5, 5),
                "ipp_z": z,
                "normal_x": n[0],
                "normal_y": n[1],
                "normal_z": n[2],
            }
        )
    out = assign_stacks(pl.DataFrame(rows))
    assert out["stack_id"].to_list() == [0] * 4
    pos = out["stack_position"].to_numpy()
    assert np.all(np.diff(pos) < 0)  # instance 1 is the highest slice: largest position along +z
    np.testing.assert_allclose(pos, [12.0, 8.0, 4.0, 0.0], atol=0.5)
