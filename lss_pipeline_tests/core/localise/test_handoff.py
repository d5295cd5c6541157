"""Levels carried into an axial series: the nearest slice over every stack, or none when out of reach."""

import numpy as np
import polars as pl

from lss_pipeline.core.localise.handoff import level_points, nearest_slice
from lss_pipeline.core.localise.series import study_stacks


def axial_rows(series_id: int, z_values, tilt_deg: float, first_instance: int) -> list[dict]:
    """Axial slices (64 x 64 px, 1 mm) centred on x = y = 0, tilted about x."""
    t = np.deg2rad(tilt_deg)
    col_dir = np.array([0.0, np.cos(t), np.sin(t)])
    rows = []
    for k, z in enumerate(z_values):
        centre = np.array([0.0, 0.0, z])
        ipp = centre - np.array([1.0, 0.0, 0.0]) * 31.5 - col_dir * 31.5
        rows.append(
            {
                "study_id": 1, "series_id": series_id, "instance_number": first_instance + k,
                "series_description": "Axial T2", "path": f"{series_id}/{first_instance + k}.dcm",
                "rows": 64, "columns": 64, "pixel_spacing_row": 1.0, "pixel_spacing_col": 1.0,
                "ipp_x": ipp[0], "ipp_y": ipp[1], "ipp_z": ipp[2], "iop_row_x": 1.0, "iop_row_y": 0.0,
                "iop_row_z": 0.0, "iop_col_x": col_dir[0], "iop_col_y": col_dir[1], "iop_col_z": col_dir[2],
            }
        )  # fmt: skip
    return rows


def two_stack_series() -> list:
    rows = axial_rows(7, [0.0, 4.0, 8.0, 12.0], 0.0, 1) + axial_rows(7, [40.0, 44.0, 48.0], 14.0, 5)
    stacks = study_stacks(pl.DataFrame(rows))[7]
    assert len(stacks) == 2
    return stacks


def test_nearest_slice_is_chosen_across_stacks():
    stacks = two_stack_series()
    choice = nearest_slice(stacks, np.array([0.0, 0.0, 43.0]))
    assert choice is not None
    assert choice.stack.instance_numbers[choice.index] == 6  # z = 44 in the tilted stack
    assert abs(choice.distance_mm) < 2.0
    low = nearest_slice(stacks, np.array([0.0, 5.0, 5.0]))
    assert low is not None and low.stack.instance_numbers[low.index] == 2  # z = 4
    assert abs(low.x - 31.5) < 1e-6 and abs(low.y - 36.5) < 1e-6


def test_a_level_far_from_every_slice_is_not_covered():
    stacks = two_stack_series()
    assert nearest_slice(stacks, np.array([0.0, 0.0, 26.0])) is None  # in the gap between the stacks
    assert nearest_slice(stacks, np.array([0.0, 0.0, 120.0])) is None
    assert nearest_slice(stacks, np.array([200.0, 0.0, 4.0])) is None  # projects outside every image


def test_offset_moves_the_target_along_the_stack_normal():
    stacks = two_stack_series()
    plain = nearest_slice(stacks, np.array([0.0, 0.0, 5.5]))
    moved = nearest_slice(stacks, np.array([0.0, 0.0, 5.5]), offset_mm=2.0)
    assert plain is not None and moved is not None
    assert plain.stack.instance_numbers[plain.index] == 2
    assert moved.stack.instance_numbers[moved.index] == 3


def test_levels_from_the_canal_else_between_the_foramina():
    canal = {"L1/L2": np.array([0.0, 10.0, 50.0])}
    left = {"L1/L2": np.array([20.0, 0.0, 52.0]), "L2/L3": np.array([20.0, 0.0, 20.0])}
    right = {"L1/L2": np.array([-20.0, 0.0, 52.0]), "L2/L3": np.array([-16.0, 0.0, 22.0])}
    levels = level_points(canal, left, right)
    np.testing.assert_allclose(levels["L1/L2"], canal["L1/L2"])
    np.testing.assert_allclose(levels["L2/L3"], [2.0, 0.0, 21.0])
    assert set(levels) == {"L1/L2", "L2/L3"}
    assert level_points(None, left, None) == {}
