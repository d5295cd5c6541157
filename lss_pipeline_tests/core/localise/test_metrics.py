"""Localisation errors against labelled points: in-plane, through-plane, window, level."""

import polars as pl
import pytest

from lss_pipeline.core.crops.geometry import add_slice_position
from lss_pipeline.core.localise.infer import POINTS_SCHEMA, row_id
from lss_pipeline.core.localise.metrics import point_errors, summarise

LEVEL_ROWS = {"L1/L2": 20.0, "L2/L3": 50.0, "L3/L4": 80.0}  # image row of each level's label (1 mm pixels)


def sagittal_metadata() -> pl.DataFrame:
    rows = []
    for k in range(5):  # slices 4 mm apart along x, instance k + 1
        rows.append(
            {
                "study_id": 1, "series_id": 9, "instance_number": k + 1, "path": f"9/{k + 1}.dcm",
                "rows": 128, "columns": 128, "pixel_spacing_row": 1.0, "pixel_spacing_col": 1.0,
                "ipp_x": 4.0 * k, "ipp_y": 0.0, "ipp_z": 0.0,
                "iop_row_x": 0.0, "iop_row_y": 1.0, "iop_row_z": 0.0,
                "iop_col_x": 0.0, "iop_col_y": 0.0, "iop_col_z": -1.0,
            }
        )  # fmt: skip
    return add_slice_position(pl.DataFrame(rows))


def labels() -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "study_id": 1,
                "category": "scs",
                "condition": "Spinal Canal Stenosis",
                "level": lvl,
                "row_id": row_id(1, "Spinal Canal Stenosis", lvl),
                "series_id": 9,
                "instance_number": 3,
                "x": 60.0,
                "y": y,
            }  # fmt: skip
            for lvl, y in LEVEL_ROWS.items()
        ]
    )


def predicted(overrides: dict[str, dict]) -> pl.DataFrame:
    rows = []
    for lvl, y in LEVEL_ROWS.items():
        row = {c: None for c in POINTS_SCHEMA}
        row.update(study_id=1, row_id=row_id(1, "Spinal Canal Stenosis", lvl), category="scs",
                   condition="Spinal Canal Stenosis", level=lvl, series_id=9, instance_number=3, x=60.0, y=y,
                   status="ok")  # fmt: skip
        row.update(overrides.get(lvl, {}))
        rows.append(row)
    return pl.DataFrame(rows, schema=POINTS_SCHEMA, orient="row")


def errors(overrides: dict[str, dict]) -> pl.DataFrame:
    return point_errors(predicted(overrides), labels(), sagittal_metadata(), crop_mm=40.0, slices=5).sort(
        "level"
    )


def test_exact_points_have_no_error():
    e = errors({})
    assert e["in_plane_mm"].to_list() == [0.0, 0.0, 0.0]
    assert e["through_plane_slices"].to_list() == [0.0, 0.0, 0.0]
    assert e["within_half_window"].all() and e["level_correct"].all()


def test_in_plane_and_through_plane_are_measured_apart():
    e = errors({"L2/L3": {"instance_number": 4, "x": 63.0, "y": 54.0}})  # next slice, 5 mm off in-plane
    row = e.filter(pl.col("level") == "L2/L3").row(0, named=True)
    assert row["in_plane_mm"] == pytest.approx(5.0)
    assert row["through_plane_mm"] == pytest.approx(4.0) and row["through_plane_slices"] == 1.0
    assert row["within_half_window"] and row["level_correct"]


def test_a_point_at_another_level_is_the_wrong_level_and_far():
    e = errors({"L1/L2": {"y": 48.0}})
    row = e.filter(pl.col("level") == "L1/L2").row(0, named=True)
    assert not row["level_correct"]
    assert row["in_plane_mm"] == pytest.approx(28.0) and not row["within_half_window"]


def test_points_not_given_count_as_wrong():
    e = errors({"L3/L4": {"status": "series_missing", "instance_number": None, "x": None, "y": None}})
    row = e.filter(pl.col("level") == "L3/L4").row(0, named=True)
    assert not row["localised"] and not row["level_correct"] and row["in_plane_mm"] is None
    summary = summarise(e).row(0, named=True)
    assert summary["points"] == 3 and summary["localised_share"] == pytest.approx(2 / 3)
    assert summary["level_accuracy"] == pytest.approx(2 / 3)
    assert summary["in_plane_median_mm"] == 0.0
