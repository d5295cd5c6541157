"""Anatomical plausibility of labels in patient space: a clean synthetic set has no offender, each
planted fault (the coordinate CSV edited) is found with its reason, and the real file's CSV-only
offenders are counted."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from lss_pipeline.core import synth
from lss_pipeline.core.constants import COORDINATES_CSV, SERIES_CSV, TRAIN_CSV
from lss_pipeline.core.dicom.scan import scan_dicom_folder
from lss_pipeline.core.labels import anatomy
from lss_pipeline.core.labels.tidy import build_labels
from lss_pipeline.core.paths import Paths
from lss_pipeline_tests.real_labels import REAL_LABELS

SCS = "Spinal Canal Stenosis"
LEFT_NFS, RIGHT_NFS = "Left Neural Foraminal Narrowing", "Right Neural Foraminal Narrowing"
LEFT_SBS, RIGHT_SBS = "Left Subarticular Stenosis", "Right Subarticular Stenosis"
Coordinates = pl.DataFrame


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Paths, pl.DataFrame]:
    """Three synthetic studies (256 px, so a point can be 100 px off) and their dicom_metadata."""
    raw = tmp_path_factory.mktemp("anatomy") / "raw"
    synth.generate_dataset(
        raw, n_studies=3, seed=11, n_test_studies=0, workers=1, sagittal_slices=9, axial_slices_per_level=1
    )
    paths = Paths(data_dir=raw.parent / "data", raw_dir=raw)
    metadata, quarantine = scan_dicom_folder(paths, workers=1)
    assert quarantine.is_empty()
    return paths, metadata


def planted(clean, tmp_path: Path, edit: Callable[[Coordinates], Coordinates]) -> pl.DataFrame:
    """The labels table after ``edit`` of the coordinate CSV (the other label files unchanged)."""
    paths, _ = clean
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in (TRAIN_CSV, SERIES_CSV):
        shutil.copy(paths.raw_dir / name, raw / name)
    edit(pl.read_csv(paths.coordinates_csv)).write_csv(raw / COORDINATES_CSV)
    labels, _ = build_labels(Paths(data_dir=tmp_path / "data", raw_dir=raw))
    return labels


def first_study(coords: Coordinates) -> int:
    return int(coords["study_id"].min())


def at(coords: Coordinates, condition: str, level: str) -> pl.Expr:
    return (
        (pl.col("study_id") == first_study(coords))
        & (pl.col("condition") == condition)
        & (pl.col("level") == level)
    )


def value_of(coords: Coordinates, condition: str, level: str, column: str):
    return coords.filter(at(coords, condition, level))[column].item()


def found(report: anatomy.AnatomyReport) -> set[tuple[str, str]]:
    """(row_id suffix after the study id, reason) of every offender."""
    return {
        (row_id.split("_", 1)[1], reason)
        for row_id, reason in report.offenders.select("row_id", "reason").iter_rows()
    }


def test_clean_synthetic_set_has_no_offender(clean, tmp_path):
    paths, metadata = clean
    labels, _ = build_labels(paths)
    report = anatomy.check_anatomy(labels, metadata)
    assert report.points == labels.filter(pl.col("x").is_not_null()).height > 0
    assert report.points_in_patient_space == report.points
    assert report.offenders.is_empty(), report.offenders
    assert set(report.counts) == set(anatomy.REASONS) and not any(report.counts.values())
    assert report.skipped is None


def test_patient_points_follow_lps(clean):
    """Canal points sit between the left (+x) and right (-x) points, and L1/L2 is above L5/S1 (+z)."""
    paths, metadata = clean
    points = anatomy.patient_points(build_labels(paths)[0], metadata)
    mean_x = dict(points.group_by("condition").agg(pl.col("px").mean()).iter_rows())
    assert mean_x[LEFT_NFS] > mean_x[LEFT_SBS] > mean_x[SCS] > mean_x[RIGHT_SBS] > mean_x[RIGHT_NFS]
    z = dict(points.filter(pl.col("condition") == SCS).group_by("level").agg(pl.col("pz").mean()).iter_rows())
    assert z["L1/L2"] > z["L2/L3"] > z["L3/L4"] > z["L4/L5"] > z["L5/S1"]


def test_swapped_levels_are_out_of_order(clean, tmp_path):
    def swap(coords: Coordinates) -> Coordinates:
        upper = [value_of(coords, SCS, "L1/L2", c) for c in ("x", "y")]
        lower = [value_of(coords, SCS, "L2/L3", c) for c in ("x", "y")]
        return coords.with_columns(
            pl.when(at(coords, SCS, "L1/L2")).then(lower[0]).when(at(coords, SCS, "L2/L3")).then(upper[0])
            .otherwise(pl.col("x")).alias("x"),
            pl.when(at(coords, SCS, "L1/L2")).then(lower[1]).when(at(coords, SCS, "L2/L3")).then(upper[1])
            .otherwise(pl.col("y")).alias("y"),
        )  # fmt: skip

    report = anatomy.check_anatomy(planted(clean, tmp_path, swap), clean[1])
    assert {
        ("spinal_canal_stenosis_l1_l2", "level_order"),
        ("spinal_canal_stenosis_l2_l3", "level_order"),
    } <= found(report)
    order = report.offenders.filter(pl.col("reason") == "level_order")
    assert (order["value"] < 0).all() and (order["unit"] == "mm").all()
    assert report.offending_studies == 1
    assert "L1/L2" in order["detail"][0] and "L2/L3" in order["detail"][0]


def test_levels_too_close_break_the_spacing_bounds(clean, tmp_path):
    """L3/L4 clicked 4 px below L2/L3: too close to L2/L3 (and too far from L4/L5)."""

    def squeeze(coords: Coordinates) -> Coordinates:
        x, y = (value_of(coords, SCS, "L2/L3", c) for c in ("x", "y"))
        return coords.with_columns(
            pl.when(at(coords, SCS, "L3/L4")).then(x).otherwise(pl.col("x")).alias("x"),
            pl.when(at(coords, SCS, "L3/L4")).then(y + 4.0).otherwise(pl.col("y")).alias("y"),
        )

    report = anatomy.check_anatomy(planted(clean, tmp_path, squeeze), clean[1])
    spacing = report.offenders.filter(pl.col("reason") == "level_spacing")
    assert {"spinal_canal_stenosis_l2_l3", "spinal_canal_stenosis_l3_l4"} <= {
        r.split("_", 1)[1] for r in spacing["row_id"]
    }
    assert spacing["value"].min() < anatomy.MIN_LEVEL_SPACING_MM
    assert spacing["value"].max() > anatomy.MAX_LEVEL_SPACING_MM  # L3/L4 to L4/L5 now spans two levels
    assert report.counts["level_order"] == 0


def test_subarticular_points_on_the_wrong_side(clean, tmp_path):
    """Left and right subarticular points of one level swapped: both on the wrong side of the canal."""

    def swap_sides(coords: Coordinates) -> Coordinates:
        left = [value_of(coords, LEFT_SBS, "L3/L4", c) for c in ("instance_number", "x", "y")]
        right = [value_of(coords, RIGHT_SBS, "L3/L4", c) for c in ("instance_number", "x", "y")]
        return coords.with_columns(
            pl.when(at(coords, LEFT_SBS, "L3/L4")).then(r).when(at(coords, RIGHT_SBS, "L3/L4")).then(le)
            .otherwise(pl.col(c)).alias(c)
            for c, le, r in zip(("instance_number", "x", "y"), left, right)
        )  # fmt: skip

    report = anatomy.check_anatomy(planted(clean, tmp_path, swap_sides), clean[1])
    assert found(report) == {
        ("left_subarticular_stenosis_l3_l4", "wrong_side"),
        ("right_subarticular_stenosis_l3_l4", "wrong_side"),
    }
    wrong = report.offenders
    assert (wrong["value"] < 0).all()
    assert "spinal canal point at L3/L4" in wrong["detail"][0]


def test_left_foramen_on_the_right_slice(clean, tmp_path):
    """The left L3/L4 foraminal point put on the right points' instance: wrong slice, and the one left
    point (not the five right ones) on a shared instance."""

    def move(coords: Coordinates) -> Coordinates:
        instance = value_of(coords, RIGHT_NFS, "L3/L4", "instance_number")
        return coords.with_columns(
            pl.when(at(coords, LEFT_NFS, "L3/L4")).then(instance).otherwise(pl.col("instance_number"))
            .alias("instance_number")
        )  # fmt: skip

    labels = planted(clean, tmp_path, move)
    report = anatomy.check_anatomy(labels, clean[1])
    assert found(report) == {
        ("left_neural_foraminal_narrowing_l3_l4", "foramen_slice_side"),
        ("left_neural_foraminal_narrowing_l3_l4", "lr_same_instance"),
    }
    side = report.offenders.filter(pl.col("reason") == "foramen_slice_side").row(0, named=True)
    assert side["value"] < -anatomy.MIN_SIDE_OFFSET_MM and "to the patient's right" in side["detail"]
    # Without dicom_metadata only the CSV-only check runs, and the report says why.
    csv_only = anatomy.check_anatomy(labels, None)
    assert set(csv_only.offenders["reason"]) == {"lr_same_instance"} and csv_only.offenders.height == 1
    assert csv_only.skipped and "dicom_metadata" in csv_only.skipped
    assert csv_only.points_in_patient_space == 0


def shift_l3_l4(coords: Coordinates) -> Coordinates:
    """The first study's canal L3/L4 point moved 120 px across the sagittal image."""
    return coords.with_columns(
        pl.when(at(coords, SCS, "L3/L4")).then(pl.col("x") + 120.0).otherwise(pl.col("x")).alias("x")
    )


def test_point_far_off_the_spine_line(clean, tmp_path):
    """L3/L4 of the canal moved 120 px across the image: far off, and its pairs are not blamed."""
    report = anatomy.check_anatomy(planted(clean, tmp_path, shift_l3_l4), clean[1])
    assert found(report) == {("spinal_canal_stenosis_l3_l4", "far_off")}
    far = report.offenders.row(0, named=True)
    assert far["unit"] == "px" and 100 < far["value"] < 130


def test_offender_table_and_exclusion(clean, tmp_path):
    labels = planted(clean, tmp_path, shift_l3_l4)
    report = anatomy.check_anatomy(labels, clean[1])
    table = anatomy.offenders_markdown(report.offenders)
    row_id = report.offenders["row_id"][0]
    assert row_id in table and "far_off" in table and " px |" in table
    kept = anatomy.exclude_offenders(labels, report.offenders)
    assert kept.height == labels.height - 1 and row_id not in kept["row_id"].to_list()
    assert anatomy.offenders_markdown(report.offenders.clear()) == "_none_"


def test_crop_step_can_leave_offenders_out(clean, tmp_path):
    """``crop_category(exclude_implausible_labels=True)``: the far-off row gets no crop, the rest do."""
    from lss_pipeline.core.crops.store import crop_category
    from lss_pipeline.core.dicom import store as dicom_store
    from lss_pipeline.core.labels import splits
    from lss_pipeline.core.labels import store as labels_store

    source, metadata = clean
    planted(clean, tmp_path, shift_l3_l4)
    paths = Paths(data_dir=tmp_path / "data", raw_dir=tmp_path / "raw")
    (paths.raw_dir / "train_images").symlink_to(source.train_images)
    labels, _, _ = labels_store.ingest_labels(paths)
    dicom_store.publish_metadata(metadata, pl.DataFrame(schema=dicom_store.QUARANTINE_SCHEMA), paths)
    splits.write_splits(splits.make_splits(labels, n_folds=2, test_share=0.0), paths)
    far_off = f"{labels['study_id'].min()}_spinal_canal_stenosis_l3_l4"
    sizes = dict(crop_mm=30.0, crop_px=16, slices=3, workers=1)
    kept = crop_category(paths, "scs", **sizes, exclude_implausible_labels=True)
    rows = pl.read_parquet(paths.crops_index("scs"))["row_id"].to_list()
    assert far_off not in rows and kept.n_points == kept.n_crops == len(rows) > 0
    everything = crop_category(paths, "scs", **sizes)
    assert far_off in pl.read_parquet(paths.crops_index("scs"))["row_id"].to_list()
    assert everything.n_points == kept.n_points + 1


def test_synthetic_faults_are_found(tmp_path):
    """The generator's own planted fault (left/right foraminal points on one instance) is found."""
    raw = tmp_path / "raw"
    summary = synth.generate_dataset(
        raw, n_studies=4, seed=3, faults=True, n_test_studies=0, workers=1, rows=48, sagittal_slices=5,
        axial_slices_per_level=1,
    )  # fmt: skip
    planted_studies = {f["study_id"] for f in summary.faults if f["kind"] == "lr_foraminal_same_instance"}
    assert planted_studies
    labels, _ = build_labels(Paths(data_dir=tmp_path / "data", raw_dir=raw))
    report = anatomy.check_anatomy(labels, None)
    assert set(report.offenders["study_id"]) == planted_studies


def test_real_file_csv_only_offenders():
    """Left/right foraminal points on one instance in the real coordinate file: 65 rows of 10 studies
    (91 rows share an instance with the other side; the minority side of each instance is listed)."""
    if not (REAL_LABELS / COORDINATES_CSV).is_file():
        pytest.skip(f"real Kaggle label tables not at {REAL_LABELS} (set LSS_RSNA_LABELS_DIR)")
    labels, _ = build_labels(Paths(data_dir=Path("/nonexistent"), raw_dir=REAL_LABELS))
    report = anatomy.check_anatomy(labels, None)
    assert report.counts["lr_same_instance"] == report.offenders.height
    assert report.offending_studies == 10
    assert report.offenders.height == 65


def test_every_foraminal_point_on_one_instance_lists_both_sides(clean, tmp_path):
    def one_slice(coords: Coordinates) -> Coordinates:
        instance = value_of(coords, RIGHT_NFS, "L3/L4", "instance_number")
        left = (pl.col("study_id") == first_study(coords)) & (pl.col("condition") == LEFT_NFS)
        return coords.with_columns(
            pl.when(left).then(instance).otherwise(pl.col("instance_number")).alias("instance_number")
        )

    report = anatomy.check_anatomy(planted(clean, tmp_path, one_slice), None)
    assert report.counts["lr_same_instance"] == 10  # a 5 : 5 tie: both sides are listed
