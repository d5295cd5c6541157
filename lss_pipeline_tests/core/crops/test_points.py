"""Crops at any points: stack choice, slice order and the same crop whatever the storage geometry."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lss_pipeline.core.crops.geometry import patient_to_pixel
from lss_pipeline.core.crops.points import (
    SKIP_INSTANCE_MISSING,
    SKIP_OUTSIDE_IMAGE,
    SKIP_SERIES_MISSING,
    SKIP_WRONG_SERIES,
    crop_points,
)
from lss_pipeline_tests.core.crops.series import (
    AX_COL,
    AX_ROW,
    SAG_COL,
    SAG_ROW,
    mirrored_scene,
    render_scene_series,
    write_series,
)

CROP = {"crop_mm": 24.0, "crop_px": 24, "slices": 5}


def _points(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "study_id": pl.Int64,
            "series_id": pl.Int64,
            "instance_number": pl.Int64,
            "x": pl.Float64,
            "y": pl.Float64,
            "row_id": pl.Utf8,
        },
    )


def _crop_at(
    raw, meta, geoms, instance_numbers, centre_k, point_mm, series_id, **kw
) -> tuple[np.ndarray, pl.DataFrame]:
    x, y, _ = patient_to_pixel(geoms[centre_k], np.asarray(point_mm))
    pts = _points(
        [
            {
                "study_id": 1,
                "series_id": series_id,
                "instance_number": instance_numbers[centre_k],
                "x": float(x),
                "y": float(y),
                "row_id": "p",
            }
        ]
    )
    out = crop_points(pts, meta, raw, reader=np.load, **{**CROP, **kw})
    assert out.skipped.height == 0, out.skipped.to_dicts()
    return out.crops[0].astype(np.float32), out.index


# ----------------------------------------------------------------------------- geometry variants

SAG_CENTRES = [np.array([3.0 * k, 0.0, 0.0]) for k in range(-3, 4)]  # 7 slices, 3 mm apart along x
SAG_POINT = np.array([0.0, 2.0, -1.0])  # on the middle slice (k = 3)
_A = np.deg2rad(12.0)

# name -> (row_dir, col_dir, spacing, shape, instance numbers in centre order, tolerance)
SAG_VARIANTS = {
    "reversed_instance_order": (SAG_ROW, SAG_COL, (0.8, 0.8), (96, 96), [7, 6, 5, 4, 3, 2, 1], 1e-4),
    "shuffled_instance_order": (SAG_ROW, SAG_COL, (0.8, 0.8), (96, 96), [4, 7, 1, 6, 2, 5, 3], 1e-4),
    "flipped_rows": ((0.0, -1.0, 0.0), SAG_COL, (0.8, 0.8), (96, 96), list(range(1, 8)), 1e-4),
    "flipped_columns": (SAG_ROW, (0.0, 0.0, 1.0), (0.8, 0.8), (96, 96), list(range(1, 8)), 1e-4),
    "flipped_both_and_reversed": (
        (0.0, -1.0, 0.0),
        (0.0, 0.0, 1.0),
        (0.8, 0.8),
        (96, 96),
        [7, 6, 5, 4, 3, 2, 1],
        1e-4,
    ),
    "transposed": (SAG_COL, SAG_ROW, (0.8, 0.8), (96, 96), list(range(1, 8)), 1e-4),
    "non_square_pixels": (SAG_ROW, SAG_COL, (0.9, 0.6), (84, 128), list(range(1, 8)), 0.003),
    "rotated_in_plane": (
        (0.0, np.cos(_A), np.sin(_A)),
        (0.0, np.sin(_A), -np.cos(_A)),
        (0.8, 0.8),
        (96, 96),
        list(range(1, 8)),
        0.003,
    ),
}


@pytest.fixture(scope="module")
def standard_sagittal(tmp_path_factory):
    raw = tmp_path_factory.mktemp("standard")
    insts = list(range(1, 8))
    meta, geoms = render_scene_series(
        raw, 1, 10, "Sagittal T1", SAG_CENTRES, insts, row_dir=SAG_ROW, col_dir=SAG_COL
    )
    crop, index = _crop_at(raw, meta, geoms, insts, 3, SAG_POINT, 10)
    return crop, index


def test_the_standard_crop_is_not_symmetric(standard_sagittal):
    """Otherwise the variants below could not tell a flipped crop from the right one."""
    crop, _ = standard_sagittal
    assert np.abs(crop - crop[:, :, ::-1]).mean() > 0.05
    assert np.abs(crop - crop[:, ::-1, :]).mean() > 0.05
    assert np.abs(crop - crop[::-1]).mean() > 0.02


@pytest.mark.parametrize("variant", sorted(SAG_VARIANTS))
def test_a_series_stored_otherwise_gives_the_same_crop(standard_sagittal, tmp_path, variant):
    row_dir, col_dir, spacing, shape, insts, tol = SAG_VARIANTS[variant]
    meta, geoms = render_scene_series(
        tmp_path,
        1,
        10,
        "Sagittal T1",
        SAG_CENTRES,
        insts,
        row_dir=row_dir,
        col_dir=col_dir,
        spacing=spacing,
        shape=shape,
    )
    crop, index = _crop_at(tmp_path, meta, geoms, insts, 3, SAG_POINT, 10)
    expected, expected_index = standard_sagittal
    assert np.abs(crop - expected).max() < tol * 10 and np.abs(crop - expected).mean() < tol, variant
    # Channel 0 is the patient's leftmost slice (largest LPS x) in every variant.
    by_inst = dict(zip(insts, [c[0] for c in SAG_CENTRES]))
    xs = [by_inst[i] for i in index["slice_instance_numbers"][0]]
    assert xs == [6.0, 3.0, 0.0, -3.0, -6.0]


AX_CENTRES = [np.array([0.0, 0.0, -6.0 + 4.0 * k]) for k in range(-2, 3)]  # z -14 .. 2


@pytest.mark.parametrize(
    ("row_dir", "col_dir"), [(AX_ROW, AX_COL), ((-1.0, 0.0, 0.0), AX_COL), (AX_ROW, (0.0, -1.0, 0.0))]
)
def test_axial_crops_put_the_patients_left_on_the_same_side(tmp_path, row_dir, col_dir):
    insts = [1, 2, 3, 4, 5]
    meta, geoms = render_scene_series(
        tmp_path, 1, 20, "Axial T2", AX_CENTRES, insts, row_dir=row_dir, col_dir=col_dir
    )
    crop, _ = _crop_at(tmp_path, meta, geoms, insts, 2, np.array([0.0, 0.0, -6.0]), 20, slices=3)
    # The blob at patient x = +5 mm (the patient's left), y = -3 mm (anterior) is right of and
    # above the centre of the middle slice, as on a radiologist's axial view.
    mid = crop[1]
    row, col = np.unravel_index(np.argmax(mid), mid.shape)
    assert col >= 14 and row <= 9, (row, col)


@pytest.mark.parametrize("right_storage", ["standard", "flipped_rows", "reversed_order"])
def test_mirroring_a_right_crop_gives_the_left_crop_in_patient_space(tmp_path, right_storage):
    """flip_merge's mirror (slice order for sagittal NFS, width for axial SBS) is the patient's
    mid-sagittal mirror, however the right side's series is stored."""
    from lss_pipeline.core.train.augment import flip_to_left

    flipped = right_storage == "flipped_rows"
    reversed_ = right_storage == "reversed_order"
    # NFS on a sagittal series: the foramina at x = +15 (left) and -15 (right).
    centres = [np.array([3.0 * k, 0.0, 0.0]) for k in range(-8, 9)]
    insts = list(range(1, 18))
    left_meta, left_geoms = render_scene_series(
        tmp_path / "l",
        1,
        10,
        "Sagittal T1",
        centres,
        insts,
        row_dir=SAG_ROW,
        col_dir=SAG_COL,
        field=mirrored_scene,
    )
    right_insts = insts[::-1] if reversed_ else insts
    right_meta, right_geoms = render_scene_series(
        tmp_path / "r",
        1,
        10,
        "Sagittal T1",
        centres,
        right_insts,
        row_dir=(0.0, -1.0, 0.0) if flipped else SAG_ROW,
        col_dir=SAG_COL,
        field=mirrored_scene,
    )
    left, _ = _crop_at(tmp_path / "l", left_meta, left_geoms, insts, 13, np.array([15.0, 2.0, -1.0]), 10)
    right, _ = _crop_at(
        tmp_path / "r", right_meta, right_geoms, right_insts, 3, np.array([-15.0, 2.0, -1.0]), 10
    )
    assert np.abs(left - right).mean() > 0.02  # the sides differ before the mirror ...
    np.testing.assert_allclose(flip_to_left(right, "nfs"), left, atol=1e-3)  # ... and match after it
    # SBS on an axial series: the recesses at x = +15 and -15 on one slice.
    ax = [np.array([0.0, 0.0, 4.0 * k]) for k in range(3)]
    meta, geoms = render_scene_series(
        tmp_path / "a",
        1,
        20,
        "Axial T2",
        ax,
        [3, 2, 1] if reversed_ else [1, 2, 3],
        row_dir=(-1.0, 0.0, 0.0) if flipped else AX_ROW,
        col_dir=AX_COL,
        shape=(96, 128),
        field=mirrored_scene,
    )
    ax_insts = [3, 2, 1] if reversed_ else [1, 2, 3]
    left, _ = _crop_at(tmp_path / "a", meta, geoms, ax_insts, 1, np.array([15.0, 2.0, 4.0]), 20, slices=3)
    right, _ = _crop_at(tmp_path / "a", meta, geoms, ax_insts, 1, np.array([-15.0, 2.0, 4.0]), 20, slices=3)
    assert np.abs(left - right).mean() > 0.02
    np.testing.assert_allclose(flip_to_left(right, "sbs"), left, atol=1e-3)


# ----------------------------------------------------------------------------- stacks


def _two_overlapping_axial_stacks(raw, b_numbers):
    """Stack A: instances 1-6 at z 0..20; stack B (instances ``b_numbers``) at z 2..22, same orientation."""
    centres_a = [np.array([0.0, 0.0, 4.0 * k]) for k in range(6)]
    centres_b = [np.array([0.0, 0.0, 2.0 + 4.0 * k]) for k in range(6)]
    meta_a, geoms_a = render_scene_series(
        raw, 1, 30, "Axial T2", centres_a, [1, 2, 3, 4, 5, 6], row_dir=AX_ROW, col_dir=AX_COL
    )
    meta_b, geoms_b = render_scene_series(
        raw, 1, 30, "Axial T2", centres_b, b_numbers, row_dir=AX_ROW, col_dir=AX_COL
    )
    return pl.concat([meta_a, meta_b]), geoms_b


@pytest.mark.parametrize("b_numbers", [[7, 8, 9, 10, 11, 12], [12, 11, 10, 9, 8, 7]])
def test_a_point_on_one_of_two_overlapping_axial_stacks_is_cropped_from_that_stack(tmp_path, b_numbers):
    meta, geoms_b = _two_overlapping_axial_stacks(tmp_path / "both", b_numbers)
    point = np.array([1.0, -2.0, 10.0])  # on stack B's slice at z = 10 (k = 2)
    crop, index = _crop_at(tmp_path / "both", meta, geoms_b, b_numbers, 2, point, 30, slices=3)
    # Neighbours from stack B only, in head-ward order (z 6, 10, 14), whatever B's numbering.
    z_of = dict(zip(b_numbers, [2.0 + 4.0 * k for k in range(6)]))
    assert [z_of.get(i) for i in index["slice_instance_numbers"][0]] == [6.0, 10.0, 14.0]
    # The same crop as from a series that holds stack B alone.
    centres_b = [np.array([0.0, 0.0, 2.0 + 4.0 * k]) for k in range(6)]
    alone, geoms = render_scene_series(
        tmp_path / "alone", 1, 30, "Axial T2", centres_b, b_numbers, row_dir=AX_ROW, col_dir=AX_COL
    )
    crop_alone, _ = _crop_at(tmp_path / "alone", alone, geoms, b_numbers, 2, point, 30, slices=3)
    np.testing.assert_allclose(crop, crop_alone, atol=1e-6)


@pytest.fixture(scope="module")
def shuffled_sagittal(tmp_path_factory):
    """9 sagittal slices whose instance numbers are a permutation of their spatial order.

    Slice at spatial rank k (3k mm towards the patient's right) holds 100 * (k + 1) plus texture.
    """
    raw = tmp_path_factory.mktemp("raw_sag")
    rng = np.random.default_rng(1)
    perm = [7, 2, 9, 4, 1, 8, 3, 6, 5]  # instance number of spatial rank k
    texture = rng.uniform(0, 20, (64, 48))
    images = [100.0 * (k + 1) + texture for k in range(9)]
    ipps = [(-3.0 * k, -20.0, 50.0) for k in range(9)]
    order = np.argsort(perm)  # files written in instance order so directory order gives no hint either
    meta = write_series(
        raw,
        11,
        101,
        "Sagittal T2/STIR",
        [images[i] for i in order],
        [ipps[i] for i in order],
        [perm[i] for i in order],
    )
    return raw, meta, perm


def test_channels_follow_space_not_instance_number(shuffled_sagittal):
    raw, meta, perm = shuffled_sagittal
    pts = _points(
        [{"study_id": 11, "series_id": 101, "instance_number": perm[4], "x": 24.0, "y": 30.0, "row_id": "a"}]
    )
    out = crop_points(pts, meta, raw, crop_mm=16, crop_px=16, slices=5, reader=np.load)
    assert out.index["slice_instance_numbers"][0].to_list() == perm[2:7]
    means = out.crops[0].astype(np.float32).mean(axis=(1, 2))
    assert np.all(np.diff(means) > 0.05), means  # brighter with each step towards the patient's right


def test_stack_end_replicates_the_edge_slice(shuffled_sagittal):
    raw, meta, perm = shuffled_sagittal
    pts = _points(
        [{"study_id": 11, "series_id": 101, "instance_number": perm[0], "x": 24.0, "y": 30.0, "row_id": "a"}]
    )
    out = crop_points(pts, meta, raw, crop_mm=16, crop_px=16, slices=5, reader=np.load)
    assert out.index["slice_instance_numbers"][0].to_list() == [perm[0], perm[0], perm[0], perm[1], perm[2]]
    assert out.index["edge_replicated"][0] == 2
    np.testing.assert_array_equal(out.crops[0][0], out.crops[0][2])


class CountingReader:
    def __init__(self):
        self.calls: list[str] = []

    def __call__(self, path):
        self.calls.append(str(path))
        return np.load(path)


def test_each_instance_is_decoded_once_per_study(shuffled_sagittal):
    raw, meta, perm = shuffled_sagittal
    pts = _points(
        [
            {
                "study_id": 11,
                "series_id": 101,
                "instance_number": perm[4],
                "x": 10.0 + 5 * i,
                "y": 30.0,
                "row_id": str(i),
            }
            for i in range(5)
        ]
    )
    reader = CountingReader()
    out = crop_points(pts, meta, raw, crop_mm=8, crop_px=8, slices=5, reader=reader)
    assert out.crops.shape == (5, 5, 8, 8)
    assert len(reader.calls) == len(set(reader.calls)) == 5


# ----------------------------------------------------------------------------- points without labels


def test_unlabelled_points_are_cropped_and_their_columns_carried(shuffled_sagittal):
    """What the predictions stage does: points from a localiser, no label column."""
    raw, meta, perm = shuffled_sagittal
    pts = pl.DataFrame(
        {
            "study_id": [11, 11, 11, 11, 12],
            "series_id": [101, 101, 101, 101, 5],
            "instance_number": [perm[4], perm[5], 99, perm[4], 1],
            "x": [20.0, 30.0, 20.0, 400.0, 1.0],
            "y": [30.0, 31.0, 30.0, 1.0, 1.0],
            "predicted_level": ["L3/L4", "L4/L5", "L5/S1", "L1/L2", "L2/L3"],
            "confidence": [0.9, 0.8, 0.7, 0.6, 0.5],
        }
    )
    out = crop_points(pts, meta, raw, crop_mm=16, crop_px=16, slices=3, reader=np.load, workers=None)
    assert out.crops.shape == (2, 3, 16, 16) and out.crops.dtype == np.float16
    assert out.index["predicted_level"].to_list() == ["L3/L4", "L4/L5"]
    assert out.index["crop_index"].to_list() == [0, 1]
    assert out.index["confidence"].to_list() == [0.9, 0.8]
    reasons = dict(zip(out.skipped["predicted_level"], out.skipped["reason"]))
    assert reasons == {
        "L5/S1": SKIP_INSTANCE_MISSING,
        "L1/L2": SKIP_OUTSIDE_IMAGE,
        "L2/L3": SKIP_SERIES_MISSING,
    }
    # The patient point of each crop, for carrying it into other series.
    assert out.index.select("point_x_mm", "point_y_mm", "point_z_mm").null_count().sum_horizontal()[0] == 0


def test_a_series_of_the_wrong_kind_is_skipped_only_when_asked(shuffled_sagittal):
    raw, meta, perm = shuffled_sagittal
    pts = _points(
        [{"study_id": 11, "series_id": 101, "instance_number": perm[4], "x": 20.0, "y": 30.0, "row_id": "a"}]
    )
    out = crop_points(
        pts, meta, raw, crop_mm=8, crop_px=8, slices=1, reader=np.load, series_description="Axial T2"
    )
    assert out.skipped["reason"].to_list() == [SKIP_WRONG_SERIES] and out.crops.shape == (0, 1, 8, 8)
    assert crop_points(pts, meta, raw, crop_mm=8, crop_px=8, slices=1, reader=np.load).crops.shape[0] == 1


def test_points_without_the_needed_columns_fail_clearly(shuffled_sagittal):
    raw, meta, _ = shuffled_sagittal
    with pytest.raises(ValueError, match=r"points lacks columns \['instance_number'\]"):
        crop_points(
            pl.DataFrame({"study_id": [11], "series_id": [101], "x": [1.0], "y": [1.0]}),
            meta,
            raw,
            crop_mm=8,
            crop_px=8,
            slices=1,
        )
    with pytest.raises(ValueError, match="slices"):
        crop_points(_points([]), meta, raw, crop_mm=8, crop_px=8, slices=4)


# ------------------------------------------------------------------ synthetic studies, site variants

# Small images, exact clicks; the demo protocol (site None) and each site as it exports and
# flipped with its instance order the other way round.
LANDMARK_CROP = {"crop_mm": 40.0, "crop_px": 64, "slices": 5}


def _synthetic_tasks(root) -> list:
    from dataclasses import replace

    from lss_pipeline.core.synth import SITE_PROFILES
    from lss_pipeline.core.synth.grades import CELLS
    from lss_pipeline.core.synth.options import SynthOptions
    from lss_pipeline.core.synth.study import StudyTask

    options = SynthOptions(rows=96, annotation_jitter_mm=0.0, label_noise=0.0, blank_rate=0.0)
    profiles = [None, None, *(p for site in SITE_PROFILES for p in (
        site, replace(site, flip_rate=1.0, reverse_rate=1 - site.reverse_rate)))]  # fmt: skip
    rng = np.random.default_rng(7)
    tasks = []
    for k, profile in enumerate(profiles):
        study_id = 2_000_000 + k
        true = [int(v) for v in rng.integers(0, 3, len(CELLS))]
        ids = {d: study_id * 10 + j for j, d in enumerate(("Sagittal T1", "Sagittal T2/STIR", "Axial T2"), 1)}
        tasks.append(StudyTask(study_id, "train", ids, 0, (0, study_id, 7919), true, true, [], options,
                               str(root), profile))  # fmt: skip
    return tasks


@pytest.fixture(scope="module")
def synthetic_crops(tmp_path_factory):
    """Studies written by the synthetic generator, cropped at their label points from the DICOMs."""
    from lss_pipeline.core.dicom.scan import scan_files
    from lss_pipeline.core.synth.study import plan_study, render_study

    root = tmp_path_factory.mktemp("synthetic_sites")
    plans, rows = {}, []
    for task in _synthetic_tasks(root):
        result = render_study(task)
        plans[task.study_id] = (task, plan_study(task))
        for study_id, series_id, number, cond, level, x, y in result.coordinates:
            rows.append({"study_id": study_id, "series_id": series_id, "instance_number": number,
                         "x": x, "y": y, "condition": cond, "level": level})  # fmt: skip
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.dcm"))
    metadata, quarantine = scan_files(files, root, workers=1)
    assert quarantine.height == 0
    metadata = metadata.with_columns(pl.lit(None, pl.Utf8).alias("series_description"))
    out = crop_points(pl.DataFrame(rows), metadata, root, **LANDMARK_CROP)
    return plans, out, metadata


@pytest.mark.slow
def test_every_crop_of_every_variant_lands_on_its_structure(synthetic_crops):
    """Each crop's centre is in the tissue it grades (canal and recess CSF, foraminal fat) of the
    phantom the study was drawn from; on the crop itself the canal measured across its width
    (antero-posterior in the crop frame) follows the phantom's canal, whatever the series' storage:
    oblique, flipped, reversed, non-square, overlapping axial stacks, 8 transfer syntaxes."""
    # A crop frame that swapped or mirrored axes would measure the canal's cranio-caudal extent
    # or miss it; a wrong stack or slice order would put the centre off the structure.
    from lss_pipeline.core.constants import CONDITION_CATEGORY
    from lss_pipeline.core.synth.anatomy import CSF, FAT
    from lss_pipeline.core.synth.measures import canal_ap_mm
    from lss_pipeline.core.synth.phantom import Phantom

    plans, out, _ = synthetic_crops
    assert out.skipped.height == 0, out.skipped.head().to_dicts()
    expected_tissue = {"scs": CSF, "nfs": FAT, "sbs": CSF}
    phantoms = {
        sid: Phantom(plan.geometry, voxel_mm=task.options.voxel_mm) for sid, (task, plan) in plans.items()
    }
    step = LANDMARK_CROP["crop_mm"] / LANDMARK_CROP["crop_px"]
    centre = (LANDMARK_CROP["crop_px"] - 1) / 2
    checked = {"scs": 0, "nfs": 0, "sbs": 0}
    canal = []
    for row in out.index.iter_rows(named=True):
        category = CONDITION_CATEGORY[row["condition"]]
        point = np.array([row["point_x_mm"], row["point_y_mm"], row["point_z_mm"]])
        tissue = phantoms[row["study_id"]].tissue_at(point)
        assert tissue == expected_tissue[category], (row["study_id"], row["condition"], row["level"], tissue)
        checked[category] += 1
        if category == "scs":
            _, plan = plans[row["study_id"]]
            expected = plan.geometry.canal_ap * plan.geometry.scale(row["condition"], row["level"])
            middle = out.crops[row["crop_index"], LANDMARK_CROP["slices"] // 2].astype(np.float32)
            measured = canal_ap_mm(middle, centre, centre, (step, step))
            # Bilinear upsampling of coarse pixels (~3 mm here) blurs the canal's edges by up
            # to about a source pixel; the phantom's own test allows 2.5 pixels on the file.
            source_mm = max(row["pixel_spacing_row"], row["pixel_spacing_col"])
            assert abs(measured - expected) <= 1.5 * source_mm + 1.0, (
                row["study_id"],
                row["level"],
                measured,
            )
            canal.append((expected, measured))
    n = len(plans)
    assert checked == {"scs": 5 * n, "nfs": 10 * n, "sbs": 10 * n}
    expected, measured = np.array(canal).T
    assert np.corrcoef(expected, measured)[0, 1] > 0.85


@pytest.mark.slow
def test_left_points_lie_on_the_patients_left_in_every_variant(synthetic_crops):
    """LPS x of each crop centre: left foramen and recess > canal > right ones, whatever the storage."""
    _, out, _ = synthetic_crops
    x = {
        (r["study_id"], r["condition"], r["level"]): r["point_x_mm"] for r in out.index.iter_rows(named=True)
    }
    for (study, condition, level), canal_x in x.items():
        if condition != "Spinal Canal Stenosis":
            continue
        for kind in ("Neural Foraminal Narrowing", "Subarticular Stenosis"):
            assert x[(study, f"Left {kind}", level)] > canal_x > x[(study, f"Right {kind}", level)], (
                study,
                level,
            )


@pytest.mark.slow
def test_stacks_found_from_the_tags_are_the_stacks_the_generator_wrote(synthetic_crops):
    """Per-level, overlapping per-level, contiguous and two parallel overlapping axial stacks,
    and every sagittal series: the same partition of instances as the generator's."""
    from lss_pipeline.core.crops.stacks import assign_stacks

    plans, _, metadata = synthetic_crops
    stacks = assign_stacks(metadata)
    layouts = set()
    for task, plan in plans.values():
        for description, layout in plan.series.items():
            rows = stacks.filter(pl.col("series_id") == task.series_ids[description])
            found = dict(zip(rows["instance_number"], rows["stack_id"]))
            pairs = {(truth, found[number]) for number, truth in zip(layout.numbers, layout.stacks)}
            assert len(pairs) == len(set(layout.stacks)) == rows["stack_id"].n_unique(), (
                task.study_id,
                description,
            )
            layouts.add(task.site.axial_layout if task.site else "plain")
    assert layouts == {"plain", "per_level", "per_level_overlap", "contiguous", "two_stacks"}


@pytest.mark.slow
def test_a_canal_point_carried_into_the_axial_series_lands_on_its_levels_stack(synthetic_crops):
    """What grading an unlabelled study does: a level found on the sagittal series, carried through
    patient space (``geometry.nearest_slices``), picks the axial slice of that level, in the right
    stack of a multi-stack series, within half a slice step."""
    from lss_pipeline.core.crops.geometry import nearest_slices

    plans, out, metadata = synthetic_crops
    n_levelled = 0
    for study_id, (task, plan) in plans.items():
        layout = plan.series["Axial T2"]
        level_of = dict(zip(layout.numbers, layout.levels))
        axial = metadata.filter(pl.col("series_id") == task.series_ids["Axial T2"])
        canal = out.index.filter(
            (pl.col("study_id") == study_id) & (pl.col("condition") == "Spinal Canal Stenosis")
        )
        found = nearest_slices(axial, canal.select("point_x_mm", "point_y_mm", "point_z_mm").to_numpy())
        for level, number, distance in zip(canal["level"], found["instance_number"], found["distance_mm"]):
            assert number is not None and abs(distance) <= 2.5, (study_id, level, distance)
            if level_of[number] is not None:  # stacks drawn per level name theirs
                assert level_of[number] == level, (study_id, level, level_of[number])
                n_levelled += 1
    assert n_levelled >= 5 * 8
