"""A study graded from its DICOMs: 25 rows always, a missing series named, a multi-stack axial series
handled, outputs of `lss-pipeline predict` written."""

import json
import shutil

import numpy as np
import polars as pl
import pytest

from lss_pipeline.core.constants import CLASS_NAMES, TRAIN_LABEL_COLUMNS
from lss_pipeline.core.crops.stacks import assign_stacks
from lss_pipeline.core.paths import Paths
from lss_pipeline.core.predict.folder import predict_folder
from lss_pipeline.core.predict.run import TIMING_KEYS, grade_study
from lss_pipeline.core.predict.study import scan_study_folder
from lss_pipeline_tests.core.localise.tiny import tiny_models

pytestmark = pytest.mark.slow


def a_test_study(tiny_set, tmp_path):
    source = sorted(p for p in tiny_set.settings.paths.test_images.iterdir() if p.is_dir())[0]
    return shutil.copytree(source, tmp_path / source.name)


def test_every_row_is_graded_or_says_why(tiny_set, tiny_localisers, tmp_path):
    scan = scan_study_folder(a_test_study(tiny_set, tmp_path))
    result = grade_study(scan.study_id, scan.metadata, scan.folder, tiny_models(tiny_set))
    table = result.table
    assert [r.split("_", 1)[1] for r in table["row_id"]] == list(TRAIN_LABEL_COLUMNS)
    np.testing.assert_allclose(table.select(CLASS_NAMES).to_numpy().sum(axis=1), 1.0, atol=1e-9)
    graded = table.filter(pl.col("graded"))
    assert graded.filter(pl.col("category") != "sbs").height == 15  # sagittal points always come back
    not_graded = table.filter(~pl.col("graded"))
    assert (not_graded["status"] != "ok").all()
    assert len(result.messages) == (1 if not_graded.height else 0)
    assert set(result.timings) == set(TIMING_KEYS) and all(v >= 0 for v in result.timings.values())


def test_a_missing_series_names_the_grades_it_costs(tiny_set, tiny_localisers, tmp_path):
    folder = a_test_study(tiny_set, tmp_path)
    scan = scan_study_folder(folder)
    t1 = next(s for s, d in scan.descriptions.items() if d == "Sagittal T1")
    shutil.rmtree(folder / str(t1))
    scan = scan_study_folder(folder)
    result = grade_study(scan.study_id, scan.metadata, scan.folder, tiny_models(tiny_set))
    nfs = result.table.filter(pl.col("category") == "nfs")
    assert nfs.height == 10 and not nfs["graded"].any() and (nfs["status"] == "series_missing").all()
    assert result.table.filter(pl.col("category") == "scs")["graded"].all()
    message = next(m for m in result.messages if m.startswith("nfs"))
    assert "Sagittal T1" in message and "10 of 10 grades cannot be given" in message


def test_multi_stack_axial_series_grades_each_level_on_its_own_stack(tiny_set, tiny_localisers, tmp_path):
    """The synthetic axial series holds one stack per disc; with the sagittal levels known, each level's
    subarticular points land on its stack (the solution file says which instance shows them)."""
    from lss_pipeline.core.localise.infer import localise_study
    from lss_pipeline.core.localise.series import PixelCache
    from lss_pipeline.core.synth import read_solution

    folder = a_test_study(tiny_set, tmp_path)
    scan = scan_study_folder(folder)
    axial = scan.metadata.filter(pl.col("series_description") == "Axial T2")
    stacks = assign_stacks(axial)
    assert stacks["stack_id"].n_unique() == 5
    solution = pl.DataFrame(read_solution(tiny_set.settings.raw_dir)).filter(
        pl.col("study_id") == str(scan.study_id)
    )
    canal = solution.filter(pl.col("condition") == "Spinal Canal Stenosis")
    from lss_pipeline.core.crops.geometry import SliceGeometry, pixel_to_patient

    levels = {}
    for r in canal.iter_rows(named=True):
        row = scan.metadata.filter(
            (pl.col("series_id") == int(r["series_id"]))
            & (pl.col("instance_number") == int(r["instance_number"]))
        ).row(0, named=True)
        levels[r["level"]] = pixel_to_patient(SliceGeometry.from_row(row), float(r["x"]), float(r["y"]))
    models = tiny_models(tiny_set)
    points = localise_study(
        scan.study_id, scan.metadata, PixelCache(folder), models.localisers, known_levels=levels
    )
    sbs = points.points.filter(pl.col("category") == "sbs").join(
        solution.select("row_id", pl.col("instance_number").cast(pl.Int64).alias("true_instance")),
        on="row_id",
    )
    assert sbs.height == 10 and (sbs["status"] == "ok").all()
    stack_of = dict(zip(stacks["instance_number"].to_list(), stacks["stack_id"].to_list()))
    assert all(stack_of[p] == stack_of[t] for p, t in zip(sbs["instance_number"], sbs["true_instance"]))
    assert ((sbs["instance_number"] - sbs["true_instance"]).abs() <= 1).all()


def test_predict_folder_writes_grades_points_and_pictures(tiny_set, tiny_localisers, tmp_path):
    folder = a_test_study(tiny_set, tmp_path)
    (folder / sorted(p.name for p in folder.iterdir())[0] / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    result = predict_folder(folder, out, tiny_set.settings, models=tiny_models(tiny_set))
    grades = pl.read_csv(Paths.study_grades_csv(out))
    assert grades.height == 25 and grades.columns[:6] == ["row_id", "condition", "level", *CLASS_NAMES]
    document = json.loads(Paths.study_grades_json(out).read_text())
    assert document["study_id"] == int(folder.name) and len(document["grades"]) == 25
    assert any("notes.txt" in m for m in document["messages"])
    assert document["skipped_files"][0]["error_type"] == "bad_path"
    pngs = sorted(out.glob("series_*.png"))
    assert len(pngs) >= 2 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert Paths.study_points_parquet(out) in result.written
