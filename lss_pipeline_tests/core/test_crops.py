"""Level crops on hand-built volumes (geometry, order, padding, skips, outputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lss_pipeline.core import constants
from lss_pipeline.core.crops import (
    SKIP_INSTANCE_MISSING,
    SKIP_NO_COORDINATE,
    SKIP_OUTSIDE_IMAGE,
    SKIP_SERIES_MISSING,
    SKIP_UNREADABLE,
    SKIP_WRONG_SERIES,
    build_level_crops,
    extract_window,
)

SAG_ROW = (0.0, 1.0, 0.0)
SAG_COL = (0.0, 0.0, -1.0)


def write_series(
    raw: Path, study: int, series: int, description: str, images: list[np.ndarray], ipps: list[tuple],
    instance_numbers: list[int], *, row_dir=SAG_ROW, col_dir=SAG_COL, spacing=(1.0, 1.0),
    row_dirs: list[tuple] | None = None, col_dirs: list[tuple] | None = None,
) -> pl.DataFrame:
    """Write one series as .npy 'pixel files' and return its dicom_metadata-like rows."""
    rows = []
    for k, (img, ipp, inst) in enumerate(zip(images, ipps, instance_numbers)):
        rel = f"train_images/{study}/{series}/{inst}.npy"
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(raw / rel, img.astype(np.float32))
        r = np.array(row_dirs[k] if row_dirs else row_dir, dtype=float)
        c = np.array(col_dirs[k] if col_dirs else col_dir, dtype=float)
        n = np.cross(r, c)
        rows.append({
            "study_id": study, "series_id": series, "instance_number": inst,
            "series_description": description, "path": rel,
            "rows": img.shape[0], "columns": img.shape[1],
            "pixel_spacing_row": spacing[0], "pixel_spacing_col": spacing[1],
            "ipp_x": ipp[0], "ipp_y": ipp[1], "ipp_z": ipp[2],
            "iop_row_x": r[0], "iop_row_y": r[1], "iop_row_z": r[2],
            "iop_col_x": c[0], "iop_col_y": c[1], "iop_col_z": c[2],
            "normal_x": n[0], "normal_y": n[1], "normal_z": n[2],
            "slice_position": float(np.dot(ipp, n)),
        })
    return pl.DataFrame(rows)


def label_rows(rows: list[dict]) -> pl.DataFrame:
    out = []
    for r in rows:
        cond = r["condition"]
        out.append({
            "study_id": r["study_id"], "category": constants.CONDITION_CATEGORY[cond], "condition": cond,
            "side": constants.CONDITION_SIDE[cond], "level": r.get("level", "L4/L5"), "label": r.get("label", 0),
            "row_id": f"{r['study_id']}_{constants.CONDITION_STEM[cond]}_{r.get('level', 'L4/L5').lower().replace('/', '_')}",
            "series_id": r.get("series_id"), "instance_number": r.get("instance_number"),
            "x": r.get("x"), "y": r.get("y"),
        })
    return pl.DataFrame(out, schema={
        "study_id": pl.Int64, "category": pl.Utf8, "condition": pl.Utf8, "side": pl.Utf8, "level": pl.Utf8,
        "label": pl.Int8, "row_id": pl.Utf8, "series_id": pl.Int64, "instance_number": pl.Int64,
        "x": pl.Float64, "y": pl.Float64,
    })


SCS = "Spinal Canal Stenosis"


@pytest.fixture(scope="module")
def shuffled_sagittal(tmp_path_factory):
    """9 sagittal slices whose instance numbers are a permutation of their spatial order.

    Slice at spatial rank k (slice_position = 3k mm) holds value 100 * (k + 1) plus texture.
    """
    raw = tmp_path_factory.mktemp("raw_sag")
    rng = np.random.default_rng(1)
    perm = [7, 2, 9, 4, 1, 8, 3, 6, 5]  # instance number of spatial rank k
    texture = rng.uniform(0, 20, (64, 48))
    images = [100.0 * (k + 1) + texture for k in range(9)]
    ipps = [(-3.0 * k, -20.0, 50.0) for k in range(9)]  # normal is -x, so position = 3k
    # Files written in instance order so directory order gives no hint either.
    order = np.argsort(perm)
    meta = write_series(raw, 11, 101, "Sagittal T2/STIR",
                        [images[i] for i in order], [ipps[i] for i in order], [perm[i] for i in order])
    return raw, meta, perm


def test_channels_follow_slice_position_not_instance_number(shuffled_sagittal, tmp_path):
    raw, meta, perm = shuffled_sagittal
    centre_rank = 4
    labels = label_rows([{"study_id": 11, "condition": SCS, "series_id": 101,
                          "instance_number": perm[centre_rank], "x": 24.0, "y": 30.0}])
    res = build_level_crops("scs", meta, labels, None, raw, tmp_path, crop_mm=16, crop_px=16,
                            slices=5, workers=1, reader=np.load)
    assert res.n_crops == 1
    index = pl.read_parquet(res.paths["index"])
    assert index["slice_instance_numbers"][0].to_list() == perm[2:7]
    crops = np.load(res.paths["crops"], mmap_mode="r")
    means = crops[0].astype(np.float32).mean(axis=(1, 2))
    assert np.all(np.diff(means) > 0.05), means  # brighter with each spatial step


def test_stack_end_replicates_the_edge_slice(shuffled_sagittal, tmp_path):
    raw, meta, perm = shuffled_sagittal
    labels = label_rows([{"study_id": 11, "condition": SCS, "series_id": 101,
                          "instance_number": perm[0], "x": 24.0, "y": 30.0}])
    res = build_level_crops("scs", meta, labels, None, raw, tmp_path, crop_mm=16, crop_px=16,
                            slices=5, workers=1, reader=np.load)
    index = pl.read_parquet(res.paths["index"])
    assert index["slice_instance_numbers"][0].to_list() == [perm[0], perm[0], perm[0], perm[1], perm[2]]
    assert index["edge_replicated"][0] == 2 and res.edge_replicated == 1
    crop = np.load(res.paths["crops"])[0]
    np.testing.assert_array_equal(crop[0], crop[2])


def test_extract_window_pads_without_shifting():
    img = np.arange(100, dtype=np.float32).reshape(10, 10) + 1
    win, mask, padded = extract_window(img, 1.0, 5.0, 6, 4)
    # x0 = floor(1 - 3 + .5) = -2, y0 = floor(5 - 2 + .5) = 3
    assert padded
    np.testing.assert_array_equal(win[:, :2], 0)
    np.testing.assert_array_equal(win[:, 2:], img[3:7, 0:4])
    assert mask[:, 2:].all() and not mask[:, :2].any()
    win2, _, padded2 = extract_window(img, 5.0, 5.0, 6, 4)
    assert not padded2
    np.testing.assert_array_equal(win2, img[3:7, 2:8])


def test_crop_near_the_edge_is_zero_padded_with_content_in_place(tmp_path):
    raw = tmp_path / "raw"
    rng = np.random.default_rng(2)
    images = [rng.uniform(100, 200, (64, 48)) for _ in range(3)]
    for img in images:
        img[40, 0] = 5000.0  # marker on the image's first column
    meta = write_series(raw, 12, 201, "Sagittal T2/STIR", images,
                        [(-3.0 * k, 0.0, 0.0) for k in range(3)], [1, 2, 3])
    labels = label_rows([{"study_id": 12, "condition": SCS, "series_id": 201,
                          "instance_number": 2, "x": 3.0, "y": 40.0}])
    res = build_level_crops("scs", meta, labels, None, raw, tmp_path / "out", crop_mm=16, crop_px=16,
                            slices=3, workers=1, reader=np.load)
    assert res.padded == 1
    index = pl.read_parquet(res.paths["index"])
    assert index["padded"].to_list() == [True]
    crop = np.load(res.paths["crops"])[0].astype(np.float32)
    # window x0 = floor(3 - 8 + .5) = -5, y0 = 32: five zero columns, then image column 0
    np.testing.assert_array_equal(crop[:, :, :5], 0.0)
    assert crop[1, 8, 5] == pytest.approx(1.0)  # the marker, where it belongs
    valid = np.concatenate([im[32:48, 0:11].ravel() for im in images])
    lo, hi = np.percentile(valid, [1, 99])
    expected = np.clip((images[1][32:48, 0:11] - lo) / (hi - lo), 0, 1)
    np.testing.assert_allclose(crop[1, :, 5:], expected, atol=2e-3)
    assert (crop[:, :, 5:] > 0).mean() > 0.9


def test_swapped_xy_gives_a_different_crop(tmp_path):
    raw = tmp_path / "raw"
    rng = np.random.default_rng(3)
    images = [rng.uniform(0, 1000, (80, 80)) for _ in range(3)]
    meta = write_series(raw, 13, 301, "Sagittal T2/STIR", images,
                        [(-3.0 * k, 0.0, 0.0) for k in range(3)], [1, 2, 3])
    labels = label_rows([
        {"study_id": 13, "condition": SCS, "level": "L3/L4", "series_id": 301, "instance_number": 2, "x": 30.0, "y": 50.0},
        {"study_id": 13, "condition": SCS, "level": "L4/L5", "series_id": 301, "instance_number": 2, "x": 50.0, "y": 30.0},
    ])
    res = build_level_crops("scs", meta, labels, None, raw, tmp_path / "out", crop_mm=20, crop_px=20,
                            slices=3, workers=1, reader=np.load)
    crops = np.load(res.paths["crops"]).astype(np.float32)
    assert np.abs(crops[0] - crops[1]).mean() > 0.1


def test_neighbours_are_sampled_at_the_projected_point(tmp_path):
    """Slices of a stack shifted in-plane: the crop follows the 3D point, not the pixel index."""
    raw = tmp_path / "raw"
    images = [np.zeros((60, 60)) for _ in range(3)]
    # A bright bar at patient z = 50 - 30 = 20 on slice 1 (row 30); slices 0 and 2 are shifted 10 mm
    # down the column direction, so the same patient point sits at row 20 there.
    ipps = [(0.0, 0.0, 40.0), (-3.0, 0.0, 50.0), (-6.0, 0.0, 40.0)]
    for img, ipp in zip(images, ipps):
        img[int(ipp[2] - 20), :] = 1000.0
        img += 10.0
    meta = write_series(raw, 14, 401, "Sagittal T2/STIR", images, ipps, [1, 2, 3])
    labels = label_rows([{"study_id": 14, "condition": SCS, "series_id": 401, "instance_number": 2,
                          "x": 30.0, "y": 30.0}])
    res = build_level_crops("scs", meta, labels, None, raw, tmp_path / "out", crop_mm=11, crop_px=11,
                            slices=3, workers=1, reader=np.load)
    crop = np.load(res.paths["crops"])[0].astype(np.float32)
    for ch in range(3):
        assert int(np.argmax(crop[ch].mean(axis=1))) == 5  # the bar is in the centre row on every slice


def _axial_two_stacks(raw: Path, study: int, series: int) -> pl.DataFrame:
    """Axial series: stack A (flat, instances 1,3,5,7,9) and stack B (tilted 20°, 2,4,6,8,10)."""
    t = np.deg2rad(20.0)
    row_a, col_a = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)
    row_b, col_b = (1.0, 0.0, 0.0), (0.0, np.cos(t), -np.sin(t))
    normal_b = np.cross(row_b, col_b)
    images, ipps, insts, rds, cds = [], [], [], [], []
    for k in range(5):
        images.append(np.full((40, 40), 10.0 + k))
        ipps.append((0.0, 0.0, 4.0 * k))
        insts.append(2 * k + 1)
        rds.append(row_a)
        cds.append(col_a)
        images.append(np.full((40, 40), 500.0 + 100.0 * k))
        ipps.append(tuple(np.array([0.0, 0.0, 80.0]) + 4.0 * (4 - k) * normal_b))  # reversed positions
        insts.append(2 * k + 2)
        rds.append(row_b)
        cds.append(col_b)
    for img in images:
        img[::7, ::5] += 3.0  # some texture so percentiles differ
    return write_series(raw, study, series, "Axial T2", images, ipps, insts, row_dirs=rds, col_dirs=cds)


def test_axial_series_with_two_stacks_uses_the_labelled_stack(tmp_path):
    raw = tmp_path / "raw"
    meta = _axial_two_stacks(raw, 15, 501)
    labels = label_rows([{"study_id": 15, "condition": "Left Subarticular Stenosis", "series_id": 501,
                          "instance_number": 6, "x": 20.0, "y": 20.0}])
    res = build_level_crops("sbs", meta, labels, None, raw, tmp_path / "out", crop_mm=10, crop_px=10,
                            slices=3, workers=1, reader=np.load)
    index = pl.read_parquet(res.paths["index"])
    # Stack B positions run opposite to instance numbers: spatial neighbours of 6 are 8 and 4.
    assert index["slice_instance_numbers"][0].to_list() == [8, 6, 4]


def test_bad_rows_are_skipped_with_a_reason_and_the_run_goes_on(tmp_path):
    raw = tmp_path / "raw"
    rng = np.random.default_rng(4)
    imgs = [rng.uniform(0, 100, (32, 32)) for _ in range(3)]
    good = write_series(raw, 21, 601, "Sagittal T2/STIR", imgs, [(-3.0 * k, 0, 0) for k in range(3)], [1, 2, 3])
    t1 = write_series(raw, 21, 602, "Sagittal T1", imgs, [(-3.0 * k, 0, 0) for k in range(3)], [1, 2, 3])
    broken = write_series(raw, 22, 701, "Sagittal T2/STIR", imgs, [(-3.0 * k, 0, 0) for k in range(3)], [1, 2, 3])
    (raw / broken["path"][1]).write_bytes(b"not an array")
    meta = pl.concat([good, t1, broken])
    lvl = iter(constants.LEVELS)
    labels = label_rows([
        {"study_id": 21, "condition": SCS, "level": next(lvl), "series_id": 601, "instance_number": 2, "x": 16.0, "y": 16.0},
        {"study_id": 21, "condition": SCS, "level": next(lvl), "series_id": 999, "instance_number": 2, "x": 16.0, "y": 16.0},
        {"study_id": 21, "condition": SCS, "level": next(lvl), "series_id": 601, "instance_number": 42, "x": 16.0, "y": 16.0},
        {"study_id": 21, "condition": SCS, "level": next(lvl)},
        {"study_id": 21, "condition": SCS, "level": next(lvl), "series_id": 602, "instance_number": 2, "x": 16.0, "y": 16.0},
        {"study_id": 22, "condition": SCS, "level": "L1/L2", "series_id": 701, "instance_number": 2, "x": 16.0, "y": 16.0},
        {"study_id": 22, "condition": SCS, "level": "L2/L3", "series_id": 701, "instance_number": 1, "x": 16.0, "y": 300.0},
        # blank label: neither cropped nor listed
        {"study_id": 22, "condition": SCS, "level": "L3/L4", "label": None, "series_id": 701, "instance_number": 1, "x": 16.0, "y": 16.0},
    ])
    splits = pl.DataFrame({"study_id": [21, 22], "fold": [3, 1]}, schema={"study_id": pl.Int64, "fold": pl.Int8})
    res = build_level_crops("scs", meta, labels, splits, raw, tmp_path / "out", crop_mm=16, crop_px=8,
                            slices=3, workers=1, reader=np.load)
    assert res.n_crops == 1
    got = {(r["study_id"], r["level"]): r["reason"] for r in res.skipped.iter_rows(named=True)}
    assert got == {
        (21, "L2/L3"): SKIP_SERIES_MISSING, (21, "L3/L4"): SKIP_INSTANCE_MISSING,
        (21, "L4/L5"): SKIP_NO_COORDINATE, (21, "L5/S1"): SKIP_WRONG_SERIES,
        (22, "L1/L2"): SKIP_UNREADABLE, (22, "L2/L3"): SKIP_OUTSIDE_IMAGE,
    }
    assert res.skipped_by_reason[SKIP_UNREADABLE] == 1
    arr = np.load(res.paths["crops"], mmap_mode="r")
    assert arr.shape == (1, 3, 8, 8) and arr.dtype == np.float16
    index = pl.read_parquet(res.paths["index"])
    assert index["fold"].to_list() == [3] and index["crop_index"].to_list() == [0]
    assert pl.read_parquet(res.paths["skipped"]).height == 6
    assert res.paths["samples"].stat().st_size > 1000
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left


class CountingReader:
    def __init__(self):
        self.calls: list[str] = []

    def __call__(self, path):
        self.calls.append(str(path))
        return np.load(path)


def test_each_instance_is_decoded_once_per_study(shuffled_sagittal, tmp_path):
    raw, meta, perm = shuffled_sagittal
    labels = label_rows([
        {"study_id": 11, "condition": SCS, "level": lvl, "series_id": 101, "instance_number": perm[4],
         "x": 10.0 + 5 * i, "y": 30.0}
        for i, lvl in enumerate(constants.LEVELS)
    ])
    reader = CountingReader()
    res = build_level_crops("scs", meta, labels, None, raw, tmp_path, crop_mm=8, crop_px=8,
                            slices=5, workers=1, reader=reader)
    assert res.n_crops == 5
    assert len(reader.calls) == len(set(reader.calls)) == 5
    assert res.timings["instances_decoded"] == 5


def test_process_pool_gives_the_same_output_as_in_process(tmp_path):
    raw = tmp_path / "raw"
    rng = np.random.default_rng(5)
    metas, rows = [], []
    for study in (31, 32, 33):
        imgs = [rng.uniform(0, 100, (32, 32)) for _ in range(4)]
        metas.append(write_series(raw, study, study * 10, "Sagittal T2/STIR", imgs,
                                  [(-3.0 * k, 0, 0) for k in range(4)], [4, 3, 2, 1]))
        rows += [{"study_id": study, "condition": SCS, "level": lvl, "series_id": study * 10,
                  "instance_number": 2, "x": 10.0 + i, "y": 12.0, "label": i % 3}
                 for i, lvl in enumerate(constants.LEVELS[:3])]
    meta, labels = pl.concat(metas), label_rows(rows)
    seen = []
    serial = build_level_crops("scs", meta, labels, None, raw, tmp_path / "a", crop_mm=12, crop_px=12,
                               slices=3, workers=1, reader=np.load)
    pooled = build_level_crops("scs", meta, labels, None, raw, tmp_path / "b", crop_mm=12, crop_px=12,
                               slices=3, workers=2, reader=np.load, progress=lambda d, t: seen.append((d, t)))
    assert pooled.workers == 2 and seen[-1] == (3, 3)
    np.testing.assert_array_equal(np.load(serial.paths["crops"]), np.load(pooled.paths["crops"]))
    assert pl.read_parquet(serial.paths["index"]).equals(pl.read_parquet(pooled.paths["index"]))
    assert serial.class_counts == {"normal_mild": 3, "moderate": 3, "severe": 3}


def test_bad_arguments_fail_with_a_clear_error(shuffled_sagittal, tmp_path):
    raw, meta, _ = shuffled_sagittal
    labels = label_rows([{"study_id": 11, "condition": SCS, "series_id": 101, "instance_number": 1, "x": 1.0, "y": 1.0}])
    with pytest.raises(ValueError, match="slices"):
        build_level_crops("scs", meta, labels, None, raw, tmp_path, crop_mm=8, crop_px=8, slices=4, reader=np.load)
    with pytest.raises(ValueError, match="category"):
        build_level_crops("xyz", meta, labels, None, raw, tmp_path, crop_mm=8, crop_px=8, reader=np.load)
    with pytest.raises(ValueError, match="pixel_spacing_row"):
        build_level_crops("scs", meta.drop("pixel_spacing_row"), labels, None, raw, tmp_path, crop_mm=8, crop_px=8,
                          reader=np.load)


# ----------------------------------------------------------------------------- synthetic RSNA set

SYNTH_CROP_MM, SYNTH_CROP_PX = 40.0, 32


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """10 synthetic studies with every fault kind, balanced classes, shuffled instance order."""
    synth_mod = pytest.importorskip("lss_pipeline.core.synth")
    from lss_pipeline.core.dicom_metadata import scan_dicom_folder
    from lss_pipeline.core.labels import build_labels
    from lss_pipeline.core.splits import make_splits

    root = tmp_path_factory.mktemp("synth_crops")
    raw = root / "raw"
    synth_mod.generate_dataset(
        raw, n_studies=10, seed=5, faults=True, n_test_studies=0, workers=2, rows=96, voxel_mm=1.0,
        shuffled_order_rate=1.0, class_shares={c: (0.4, 0.3, 0.3) for c in constants.CATEGORIES},
    )
    metadata, _ = scan_dicom_folder(raw)
    labels, _ = build_labels(raw)
    splits = make_splits(labels, n_folds=3, seed=0)
    results = {
        cat: build_level_crops(cat, metadata, labels, splits, raw, root / "crops" / cat,
                               crop_mm=SYNTH_CROP_MM, crop_px=SYNTH_CROP_PX, slices=5, workers=1)
        for cat in constants.CATEGORIES
    }
    return {"raw": raw, "root": root, "metadata": metadata, "labels": labels, "splits": splits,
            "results": results, "manifest": synth_mod.read_manifest(raw)}


def _measure(category: str, crops: np.ndarray) -> np.ndarray:
    """The graded anatomy on each crop's labelled (middle) slice, by the phantom's own rulers."""
    from lss_pipeline.core.synth import canal_ap_mm, foramen_fat_mm2, recess_area_mm2

    ruler = {"scs": canal_ap_mm, "nfs": foramen_fat_mm2, "sbs": recess_area_mm2}[category]
    mm = SYNTH_CROP_MM / SYNTH_CROP_PX
    c = SYNTH_CROP_PX / 2
    mid = crops.shape[1] // 2
    return np.array([ruler(crop[mid].astype(np.float32), c, c, (mm, mm)) for crop in crops])


def _auc(normal: np.ndarray, severe: np.ndarray) -> float:
    """P(measure of a normal crop > measure of a severe one); ties count half."""
    diff = normal[:, None] - severe[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def _crops_and_index(result):
    return np.load(result.paths["crops"]).astype(np.float32), pl.read_parquet(result.paths["index"])


@pytest.mark.parametrize("category", constants.CATEGORIES)
def test_synthetic_severe_crops_show_the_graded_anatomy(synth, category):
    crops, index = _crops_and_index(synth["results"][category])
    measure = _measure(category, crops)
    labels = index["label"].to_numpy()
    normal, severe = measure[labels == 0], measure[labels == 2]
    assert len(normal) >= 5 and len(severe) >= 5
    # Canal diameter / foraminal fat / recess CSF shrink with severity (label noise allowed).
    assert severe.mean() < 0.7 * normal.mean(), (normal.mean(), severe.mean())
    assert _auc(normal, severe) > 0.85


def _rebuild(synth, category, labels, name):
    return build_level_crops(category, synth["metadata"], labels, synth["splits"], synth["raw"],
                             synth["root"] / name / category, crop_mm=SYNTH_CROP_MM, crop_px=SYNTH_CROP_PX,
                             slices=5, workers=1)


def _paired(right, wrong):
    """Crops of rows present in both runs, aligned by row_id."""
    (rc, ri), (wc, wi) = _crops_and_index(right), _crops_and_index(wrong)
    common = ri.join(wi.select("row_id", pl.col("crop_index").alias("wrong_index")), on="row_id")
    return rc[common["crop_index"].to_numpy()], wc[common["wrong_index"].to_numpy()], common["label"].to_numpy()


def test_synthetic_swapped_xy_gives_other_crops_without_the_signal(synth):
    swapped = synth["labels"].with_columns(x=pl.col("y"), y=pl.col("x"))
    wrong = _rebuild(synth, "scs", swapped, "swapped_xy")
    right_crops, wrong_crops, labels = _paired(synth["results"]["scs"], wrong)
    assert len(labels) >= 20
    per_crop = np.abs(right_crops - wrong_crops).mean(axis=(1, 2, 3))
    assert (per_crop > 0.05).mean() > 0.9
    m = _measure("scs", wrong_crops)
    assert _auc(m[labels == 0], m[labels == 2]) < 0.8


def test_synthetic_wrong_side_gives_other_crops_without_the_signal(synth):
    # Give every left row the right row's coordinate and vice versa (same study and level).
    labels = synth["labels"]
    coords = ["series_id", "instance_number", "x", "y"]
    mirrored = labels.join(
        labels.filter(pl.col("side").is_not_null()).select(
            "study_id", "category", "level", pl.when(pl.col("side") == "left").then(pl.lit("right"))
            .otherwise(pl.lit("left")).alias("side"), *[pl.col(c).alias(f"{c}_other") for c in coords]),
        on=["study_id", "category", "level", "side"], how="left",
    ).with_columns([pl.col(f"{c}_other").alias(c) for c in coords]).drop([f"{c}_other" for c in coords])
    for category in ("nfs", "sbs"):
        wrong = _rebuild(synth, category, mirrored, "wrong_side")
        right_crops, wrong_crops, truth = _paired(synth["results"][category], wrong)
        assert len(truth) >= 30
        per_crop = np.abs(right_crops - wrong_crops).mean(axis=(1, 2, 3))
        assert (per_crop > 0.02).mean() > 0.8, category
        m = _measure(category, wrong_crops)
        assert _auc(m[truth == 0], m[truth == 2]) < 0.8, category


def test_synthetic_channels_are_in_spatial_order(synth):
    meta = synth["metadata"].select("series_id", "instance_number", "slice_position")
    n_not_by_instance = 0
    for category, result in synth["results"].items():
        index = pl.read_parquet(result.paths["index"])
        for row in index.iter_rows(named=True):
            insts = row["slice_instance_numbers"]
            pos_of = dict(meta.filter(pl.col("series_id") == row["series_id"]).select(
                "instance_number", "slice_position").iter_rows())
            pos = np.array([pos_of[i] for i in insts])
            steps = np.diff(pos)
            # Monotone along the normal (zero steps only where the edge slice is replicated).
            assert np.all(steps >= -1e-6) or np.all(steps <= 1e-6), (category, row["row_id"], insts)
            assert np.count_nonzero(np.abs(steps) < 1e-6) == row["edge_replicated"]
            assert insts[len(insts) // 2] == row["instance_number"]
            n_not_by_instance += insts != sorted(insts) and insts != sorted(insts, reverse=True)
    assert n_not_by_instance > 0  # shuffled instance numbers really were exercised


def test_synthetic_faults_are_skipped_or_handled(synth):
    faults = {f["kind"]: f for f in synth["manifest"]["faults"]}
    skipped = pl.concat([r.skipped for r in synth["results"].values()])
    # The missing series' labels are skipped with a reason, and the run went on.
    miss = faults["missing_series"]
    assert skipped.filter(pl.col("study_id") == miss["study_id"])["reason"].unique().to_list() == [SKIP_SERIES_MISSING]
    off = faults["coordinate_off_image"]
    assert skipped.filter((pl.col("study_id") == off["study_id"]) & (pl.col("level") == off["level"])
                          & (pl.col("condition") == off["condition"]))["reason"].to_list() == [SKIP_OUTSIDE_IMAGE]
    # Two-stack axial series: every crop's slices share the labelled instance's orientation.
    two = faults["axial_two_stacks"]
    meta = synth["metadata"].filter(pl.col("series_id") == two["series_id"])
    normals = {r["instance_number"]: np.array([r["normal_x"], r["normal_y"], r["normal_z"]])
               for r in meta.iter_rows(named=True)}
    index = pl.read_parquet(synth["results"]["sbs"].paths["index"]).filter(pl.col("series_id") == two["series_id"])
    assert index.height > 0
    assert len({r["stack_id"] for r in index.iter_rows(named=True)}) >= 2
    for row in index.iter_rows(named=True):
        n0 = normals[row["instance_number"]]
        assert all(abs(normals[i] @ n0) > 0.999 for i in row["slice_instance_numbers"]), row["level"]
    total = sum(r.n_crops for r in synth["results"].values())
    assert total > 200


def test_synthetic_outputs_match_the_contract(synth):
    result = synth["results"]["scs"]
    arr = np.load(result.paths["crops"], mmap_mode="r")
    assert arr.dtype == np.float16 and arr.shape[1:] == (5, SYNTH_CROP_PX, SYNTH_CROP_PX)
    assert float(arr.min()) >= 0.0 and float(arr.max()) <= 1.0
    index = pl.read_parquet(result.paths["index"])
    assert index["crop_index"].to_list() == list(range(arr.shape[0]))
    for col in ("study_id", "series_id", "instance_number", "row_id", "condition", "side", "level", "label", "fold",
                "center_x", "center_y", "pixel_spacing_row", "pixel_spacing_col", "window_px_x", "window_px_y",
                "slice_instance_numbers", "padded"):
        assert col in index.columns, col
    assert index["fold"].null_count() == 0
    assert sum(result.class_counts.values()) == result.n_crops == arr.shape[0]
    assert result.paths["samples"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
