"""level_crops outputs: crops.npy, index.parquet (split, fold, level_index), skipped.parquet, samples.png."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lss_pipeline.core import constants
from lss_pipeline.core.crops.points import (
    SKIP_INSTANCE_MISSING,
    SKIP_NO_COORDINATE,
    SKIP_OUTSIDE_IMAGE,
    SKIP_SERIES_MISSING,
    SKIP_UNREADABLE,
    SKIP_WRONG_SERIES,
)
from lss_pipeline.core.crops.stacks import assign_stacks
from lss_pipeline.core.crops.writer import INDEX_SCHEMA, _shrink_npy, build_level_crops
from lss_pipeline.core.paths import Paths
from lss_pipeline_tests.core.crops.series import SCS, label_rows, write_series


def _paths(tmp_path, raw=None) -> Paths:
    return Paths(data_dir=tmp_path / "data", raw_dir=raw or tmp_path / "raw")


def test_bad_rows_are_skipped_with_a_reason_and_the_run_goes_on(tmp_path):
    paths = _paths(tmp_path)
    raw = paths.raw_dir
    rng = np.random.default_rng(4)
    imgs = [rng.uniform(0, 100, (32, 32)) for _ in range(3)]
    ipps = [(-3.0 * k, 0, 0) for k in range(3)]
    good = write_series(raw, 21, 601, "Sagittal T2/STIR", imgs, ipps, [1, 2, 3])
    t1 = write_series(raw, 21, 602, "Sagittal T1", imgs, ipps, [1, 2, 3])
    broken = write_series(raw, 22, 701, "Sagittal T2/STIR", imgs, ipps, [1, 2, 3])
    (raw / broken["path"][1]).write_bytes(b"not an array")
    meta = pl.concat([good, t1, broken])
    lvl = iter(constants.LEVELS)
    labels = label_rows(
        [
            {
                "study_id": 21,
                "condition": SCS,
                "level": next(lvl),
                "series_id": 601,
                "instance_number": 2,
                "x": 16.0,
                "y": 16.0,
            },
            {
                "study_id": 21,
                "condition": SCS,
                "level": next(lvl),
                "series_id": 999,
                "instance_number": 2,
                "x": 16.0,
                "y": 16.0,
            },
            {
                "study_id": 21,
                "condition": SCS,
                "level": next(lvl),
                "series_id": 601,
                "instance_number": 42,
                "x": 16.0,
                "y": 16.0,
            },
            {"study_id": 21, "condition": SCS, "level": next(lvl)},
            {
                "study_id": 21,
                "condition": SCS,
                "level": next(lvl),
                "series_id": 602,
                "instance_number": 2,
                "x": 16.0,
                "y": 16.0,
            },
            {
                "study_id": 22,
                "condition": SCS,
                "level": "L1/L2",
                "series_id": 701,
                "instance_number": 2,
                "x": 16.0,
                "y": 16.0,
            },
            {
                "study_id": 22,
                "condition": SCS,
                "level": "L2/L3",
                "series_id": 701,
                "instance_number": 1,
                "x": 16.0,
                "y": 300.0,
            },
            # blank label: neither cropped nor listed
            {
                "study_id": 22,
                "condition": SCS,
                "level": "L3/L4",
                "label": None,
                "series_id": 701,
                "instance_number": 1,
                "x": 16.0,
                "y": 16.0,
            },
        ]
    )
    splits = pl.DataFrame(
        {"study_id": [21, 22], "split": ["cv", "test"], "fold": [3, None]},
        schema={"study_id": pl.Int64, "split": pl.Utf8, "fold": pl.Int8},
    )
    res = build_level_crops(
        "scs", meta, labels, splits, paths, crop_mm=16, crop_px=8, slices=3, workers=1, reader=np.load
    )
    assert res.n_crops == 1 and res.n_points == 7
    got = {(r["study_id"], r["level"]): r["reason"] for r in res.skipped.iter_rows(named=True)}
    assert got == {
        (21, "L2/L3"): SKIP_SERIES_MISSING,
        (21, "L3/L4"): SKIP_INSTANCE_MISSING,
        (21, "L4/L5"): SKIP_NO_COORDINATE,
        (21, "L5/S1"): SKIP_WRONG_SERIES,
        (22, "L1/L2"): SKIP_UNREADABLE,
        (22, "L2/L3"): SKIP_OUTSIDE_IMAGE,
    }
    assert res.skipped_by_reason[SKIP_UNREADABLE] == 1
    arr = np.load(paths.crops_array("scs"), mmap_mode="r")
    assert arr.shape == (1, 3, 8, 8) and arr.dtype == np.float16
    index = pl.read_parquet(paths.crops_index("scs"))
    assert dict(index.schema) == INDEX_SCHEMA
    assert index.select("split", "fold", "level_index", "crop_index").rows() == [("cv", 3, 0, 0)]
    skipped = pl.read_parquet(paths.crops_skipped("scs"))
    assert skipped.height == 6 and skipped["row_id"].null_count() == 0
    assert paths.crops_samples_png("scs").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    leftovers = [p for p in paths.crops_category_dir("scs").iterdir() if p.name.startswith(".")]
    assert not leftovers  # no temp files


def test_a_crop_of_a_test_split_study_has_no_fold_and_old_splits_tables_still_work(tmp_path):
    paths = _paths(tmp_path)
    imgs = [np.random.default_rng(k).uniform(0, 100, (32, 32)) for k in range(3)]
    meta = pl.concat(
        [
            write_series(
                paths.raw_dir,
                s,
                s * 10,
                "Axial T2",
                imgs,
                [(0, 0, 4.0 * k) for k in range(3)],
                [1, 2, 3],
                row_dir=(1.0, 0, 0),
                col_dir=(0, 1.0, 0),
            )
            for s in (1, 2)
        ]
    )
    labels = label_rows(
        [
            {
                "study_id": s,
                "condition": "Right Subarticular Stenosis",
                "level": "L5/S1",
                "series_id": s * 10,
                "instance_number": 2,
                "x": 16.0,
                "y": 16.0,
            }
            for s in (1, 2)
        ]
    )
    new = pl.DataFrame(
        {"study_id": [1, 2], "split": ["cv", "test"], "fold": [0, None]},
        schema={"study_id": pl.Int64, "split": pl.Utf8, "fold": pl.Int8},
    )
    res = build_level_crops("sbs", meta, labels, new, paths, crop_mm=8, crop_px=8, slices=3, reader=np.load)
    index = pl.read_parquet(res.paths["index"])
    assert index.select("study_id", "split", "fold", "level_index", "side").rows() == [
        (1, "cv", 0, 4, "right"),
        (2, "test", None, 4, "right"),
    ]
    old = new.drop("split")  # a data_splits table written before the test split existed
    res = build_level_crops("sbs", meta, labels, old, paths, crop_mm=8, crop_px=8, slices=3, reader=np.load)
    assert pl.read_parquet(res.paths["index"])["split"].to_list() == ["cv", "test"]


def test_process_pool_gives_the_same_output_as_in_process(tmp_path):
    raw = tmp_path / "raw"
    rng = np.random.default_rng(5)
    metas, rows = [], []
    for study in (31, 32, 33):
        imgs = [rng.uniform(0, 100, (32, 32)) for _ in range(4)]
        metas.append(
            write_series(
                raw,
                study,
                study * 10,
                "Sagittal T2/STIR",
                imgs,
                [(-3.0 * k, 0, 0) for k in range(4)],
                [4, 3, 2, 1],
            )
        )
        rows += [
            {
                "study_id": study,
                "condition": SCS,
                "level": lvl,
                "series_id": study * 10,
                "instance_number": 2,
                "x": 10.0 + i,
                "y": 12.0,
                "label": i % 3,
            }
            for i, lvl in enumerate(constants.LEVELS[:3])
        ]
    meta, labels = pl.concat(metas), label_rows(rows)
    seen = []
    serial = build_level_crops(
        "scs",
        meta,
        labels,
        None,
        Paths(tmp_path / "a", raw),
        crop_mm=12,
        crop_px=12,
        slices=3,
        workers=1,
        reader=np.load,
    )
    pooled = build_level_crops(
        "scs",
        meta,
        labels,
        None,
        Paths(tmp_path / "b", raw),
        crop_mm=12,
        crop_px=12,
        slices=3,
        workers=2,
        reader=np.load,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert pooled.workers == 2 and seen[-1] == (3, 3)
    np.testing.assert_array_equal(np.load(serial.paths["crops"]), np.load(pooled.paths["crops"]))
    assert pl.read_parquet(serial.paths["index"]).equals(pl.read_parquet(pooled.paths["index"]))
    assert serial.class_counts == {"normal_mild": 3, "moderate": 3, "severe": 3}


def test_bad_arguments_fail_with_a_clear_error(tmp_path):
    paths = _paths(tmp_path)
    meta = write_series(paths.raw_dir, 1, 2, "Sagittal T2/STIR", [np.zeros((8, 8))], [(0, 0, 0)], [1])
    labels = label_rows(
        [{"study_id": 1, "condition": SCS, "series_id": 2, "instance_number": 1, "x": 1.0, "y": 1.0}]
    )
    with pytest.raises(ValueError, match="slices"):
        build_level_crops("scs", meta, labels, None, paths, crop_mm=8, crop_px=8, slices=4, reader=np.load)
    with pytest.raises(ValueError, match="category"):
        build_level_crops("xyz", meta, labels, None, paths, crop_mm=8, crop_px=8, reader=np.load)
    with pytest.raises(ValueError, match="pixel_spacing_row"):
        build_level_crops(
            "scs", meta.drop("pixel_spacing_row"), labels, None, paths, crop_mm=8, crop_px=8, reader=np.load
        )
    with pytest.raises(ValueError, match="data_splits lacks"):
        build_level_crops(
            "scs", meta, labels, pl.DataFrame({"study_id": [1]}), paths, crop_mm=8, crop_px=8, reader=np.load
        )


def test_temp_files_of_a_killed_run_are_removed_and_outputs_replaced_together(tmp_path):
    paths = _paths(tmp_path)
    meta = write_series(paths.raw_dir, 1, 2, "Sagittal T2/STIR", [np.ones((8, 8)) * k for k in range(3)],
                        [(-3.0 * k, 0, 0) for k in range(3)], [1, 2, 3])  # fmt: skip
    labels = label_rows(
        [{"study_id": 1, "condition": SCS, "series_id": 2, "instance_number": 2, "x": 4.0, "y": 4.0}]
    )
    folder = paths.crops_category_dir("scs")
    folder.mkdir(parents=True)
    stale = [folder / ".crops.npy.k1ll3d.tmp.npy", folder / ".index.parquet.k1ll3d.tmp.parquet"]
    for path in stale:
        path.write_bytes(b"half written")
    build_level_crops("scs", meta, labels, None, paths, crop_mm=8, crop_px=4, slices=3, reader=np.load)
    assert not any(p.exists() for p in stale)
    first = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert set(first) == {"crops.npy", "index.parquet", "skipped.parquet", "samples.png"}
    build_level_crops("scs", meta, labels, None, paths, crop_mm=8, crop_px=4, slices=3, reader=np.load)
    assert all(p.stat().st_mtime_ns != first[p.name] for p in folder.iterdir())


@pytest.mark.parametrize("n_rows", [0, 3, 7])
def test_shrinking_a_npy_file_keeps_its_first_rows(tmp_path, n_rows):
    data = np.arange(7 * 2 * 3, dtype=np.float16).reshape(7, 2, 3)
    path = tmp_path / "a.npy"
    np.save(path, data)
    _shrink_npy(path, n_rows)
    np.testing.assert_array_equal(np.load(path), data[:n_rows])


# ----------------------------------------------------------------------------- synthetic RSNA set

SYNTH_CROP_MM, SYNTH_CROP_PX = 40.0, 32


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """10 synthetic studies with every fault kind, balanced classes, shuffled instance order."""
    from lss_pipeline.core import synth as synth_mod
    from lss_pipeline.core.dicom.scan import scan_dicom_folder
    from lss_pipeline.core.labels.splits import make_splits
    from lss_pipeline.core.labels.tidy import build_labels

    root = tmp_path_factory.mktemp("synth_crops")
    raw = root / "raw"
    paths = Paths(data_dir=root / "data", raw_dir=raw)
    synth_mod.generate_dataset(
        raw,
        n_studies=10,
        seed=5,
        faults=True,
        n_test_studies=0,
        workers=2,
        rows=96,
        voxel_mm=1.0,
        shuffled_order_rate=1.0,
        class_shares={c: (0.4, 0.3, 0.3) for c in constants.CATEGORIES},
    )
    metadata, _ = scan_dicom_folder(paths)
    labels, _ = build_labels(paths)
    splits = make_splits(labels, n_folds=3, seed=0)
    results = {
        cat: build_level_crops(
            cat,
            metadata,
            labels,
            splits,
            paths,
            crop_mm=SYNTH_CROP_MM,
            crop_px=SYNTH_CROP_PX,
            slices=5,
            workers=1,
        )
        for cat in constants.CATEGORIES
    }
    return {
        "raw": raw,
        "root": root,
        "paths": paths,
        "metadata": metadata,
        "labels": labels,
        "splits": splits,
        "results": results,
        "manifest": synth_mod.read_manifest(raw),
    }


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
    paths = Paths(data_dir=synth["root"] / name, raw_dir=synth["raw"])
    return build_level_crops(
        category,
        synth["metadata"],
        labels,
        synth["splits"],
        paths,
        crop_mm=SYNTH_CROP_MM,
        crop_px=SYNTH_CROP_PX,
        slices=5,
        workers=1,
    )


def _paired(right, wrong):
    """Crops of rows present in both runs, aligned by row_id."""
    (rc, ri), (wc, wi) = _crops_and_index(right), _crops_and_index(wrong)
    common = ri.join(wi.select("row_id", pl.col("crop_index").alias("wrong_index")), on="row_id")
    return (
        rc[common["crop_index"].to_numpy()],
        wc[common["wrong_index"].to_numpy()],
        common["label"].to_numpy(),
    )


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
    mirrored = (
        labels.join(
            labels.filter(pl.col("side").is_not_null()).select(
                "study_id",
                "category",
                "level",
                pl.when(pl.col("side") == "left")
                .then(pl.lit("right"))
                .otherwise(pl.lit("left"))
                .alias("side"),
                *[pl.col(c).alias(f"{c}_other") for c in coords],
            ),
            on=["study_id", "category", "level", "side"],
            how="left",
        )
        .with_columns([pl.col(f"{c}_other").alias(c) for c in coords])
        .drop([f"{c}_other" for c in coords])
    )
    for category in ("nfs", "sbs"):
        wrong = _rebuild(synth, category, mirrored, "wrong_side")
        right_crops, wrong_crops, truth = _paired(synth["results"][category], wrong)
        assert len(truth) >= 30
        per_crop = np.abs(right_crops - wrong_crops).mean(axis=(1, 2, 3))
        assert (per_crop > 0.02).mean() > 0.8, category
        m = _measure(category, wrong_crops)
        assert _auc(m[truth == 0], m[truth == 2]) < 0.8, category


def test_synthetic_channels_are_in_patient_order(synth):
    """Channels run along each stack's patient-space normal (towards the patient's right on
    sagittals, towards the head on axials), whatever the instance numbering."""
    meta = assign_stacks(synth["metadata"]).select("series_id", "instance_number", "stack_position")
    n_not_by_instance = 0
    for category, result in synth["results"].items():
        index = pl.read_parquet(result.paths["index"])
        for row in index.iter_rows(named=True):
            insts = row["slice_instance_numbers"]
            pos_of = dict(
                meta.filter(pl.col("series_id") == row["series_id"])
                .select("instance_number", "stack_position")
                .iter_rows()
            )
            steps = np.diff([pos_of[i] for i in insts])
            # Ascending (zero steps only where the edge slice is replicated).
            assert np.all(steps >= -1e-6), (category, row["row_id"], insts)
            assert np.count_nonzero(np.abs(steps) < 1e-6) == row["edge_replicated"]
            assert insts[len(insts) // 2] == row["instance_number"]
            n_not_by_instance += insts != sorted(insts) and insts != sorted(insts, reverse=True)
    assert n_not_by_instance > 0  # shuffled instance numbers really were exercised


def test_synthetic_faults_are_skipped_or_handled(synth):
    faults = {f["kind"]: f for f in synth["manifest"]["faults"]}
    skipped = pl.concat([r.skipped for r in synth["results"].values()])
    # The missing series' labels are skipped with a reason, and the run went on.
    miss = faults["missing_series"]
    assert skipped.filter(pl.col("study_id") == miss["study_id"])["reason"].unique().to_list() == [
        SKIP_SERIES_MISSING
    ]
    off = faults["coordinate_off_image"]
    assert skipped.filter(
        (pl.col("study_id") == off["study_id"])
        & (pl.col("level") == off["level"])
        & (pl.col("condition") == off["condition"])
    )["reason"].to_list() == [SKIP_OUTSIDE_IMAGE]
    # Two-stack axial series: every crop's slices share the labelled instance's orientation.
    two = faults["axial_two_stacks"]
    meta = synth["metadata"].filter(pl.col("series_id") == two["series_id"])
    normals = {
        r["instance_number"]: np.array([r["normal_x"], r["normal_y"], r["normal_z"]])
        for r in meta.iter_rows(named=True)
    }
    index = pl.read_parquet(synth["results"]["sbs"].paths["index"]).filter(
        pl.col("series_id") == two["series_id"]
    )
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
    for col in (
        "study_id",
        "series_id",
        "instance_number",
        "row_id",
        "condition",
        "side",
        "level",
        "label",
        "fold",
        "center_x",
        "center_y",
        "pixel_spacing_row",
        "pixel_spacing_col",
        "window_px_x",
        "window_px_y",
        "slice_instance_numbers",
        "padded",
    ):
        assert col in index.columns, col
    assert index["split"].null_count() == 0
    assert index.filter((pl.col("split") == "test") != pl.col("fold").is_null()).height == 0
    assert sum(result.class_counts.values()) == result.n_crops == arr.shape[0]
    assert result.paths["samples"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
