"""One study's 25 points from tiny localisers: every row comes back, missing series say so, the axial
slice of each level is found across the stacks of a multi-stack series."""

import polars as pl
import pytest

from lss_pipeline.core.constants import TRAIN_LABEL_COLUMNS
from lss_pipeline.core.localise.data import canal_points_of
from lss_pipeline.core.localise.infer import NOT_COVERED, OK, SERIES_MISSING, localise_study
from lss_pipeline.core.localise.run import load_localiser
from lss_pipeline.core.localise.series import PixelCache, study_stacks

pytestmark = pytest.mark.slow  # fits three small localisers first


def models(tiny_set):
    return {c: load_localiser(tiny_set.settings.paths, c) for c in ("scs", "nfs", "sbs")}


def test_every_row_comes_back_localised(tiny_set, tiny_localisers):
    study_id = int(tiny_set.splits.filter(pl.col("split") == "test")["study_id"][0])
    result = localise_study(
        study_id, tiny_set.metadata, PixelCache(tiny_set.settings.raw_dir), models(tiny_set)
    )
    points = result.points
    assert points.height == 25
    assert [r.split("_", 1)[1] for r in points["row_id"]] == list(TRAIN_LABEL_COLUMNS)
    # Sagittal points always come back; the tiny models' levels may miss the axial stacks.
    assert (points.filter(pl.col("category") != "sbs")["status"] == OK).all()
    assert set(points.filter(pl.col("category") == "sbs")["status"]) <= {OK, NOT_COVERED}
    ok = points.filter(pl.col("status") == OK)
    assert ok["instance_number"].null_count() == 0 and ok["x"].null_count() == 0
    assert set(result.timings) == {"decode_s", "localise_s"}


def test_a_missing_series_costs_only_its_points(tiny_set, tiny_localisers):
    study_id = int(tiny_set.splits.filter(pl.col("split") == "test")["study_id"][0])
    meta = tiny_set.metadata.filter(pl.col("series_description") != "Sagittal T1")
    points = localise_study(study_id, meta, PixelCache(tiny_set.settings.raw_dir), models(tiny_set)).points
    nfs = points.filter(pl.col("category") == "nfs")
    assert (nfs["status"] == SERIES_MISSING).all()
    assert nfs["detail"].str.contains("Sagittal T1").all()
    assert (points.filter(pl.col("category") == "scs")["status"] == OK).all()


def test_axial_slices_follow_the_levels_across_stacks(tiny_set, tiny_localisers):
    """With the labelled canal points as levels, each level's axial slice is its labelled one."""
    checked = 0
    for study_id in tiny_set.splits.filter(pl.col("split") == "cv")["study_id"].to_list():
        meta = tiny_set.metadata.filter(pl.col("study_id") == study_id)
        labels = tiny_set.labels.filter(pl.col("study_id") == study_id)
        stacks = study_stacks(meta)
        axial_series = meta.filter(pl.col("series_description") == "Axial T2")["series_id"].unique()
        if axial_series.len() != 1 or len(stacks[int(axial_series[0])]) < 2:
            continue
        levels = canal_points_of(labels, stacks)
        points = localise_study(
            study_id, meta, PixelCache(tiny_set.settings.raw_dir), models(tiny_set), known_levels=levels
        ).points
        truth = labels.filter((pl.col("category") == "sbs") & pl.col("instance_number").is_not_null())
        joined = truth.select("row_id", pl.col("instance_number").alias("true_instance")).join(
            points.select("row_id", "instance_number"), on="row_id"
        )
        assert joined.height > 0
        # the labelled slice is the nearest to the landmark, 1 mm below the canal point: same or next slice
        assert ((joined["instance_number"] - joined["true_instance"]).abs() <= 1).all()
        checked += 1
    assert checked >= 2
