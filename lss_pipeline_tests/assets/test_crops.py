"""The crop assets and checks in Dagster: outputs, UI metadata, and a decoder bug that blocks training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, materialize

from lss_pipeline.assets import crops
from lss_pipeline.core import synth
from lss_pipeline.core.dicom.store import ingest_dicom_folder
from lss_pipeline.core.labels import splits
from lss_pipeline.core.labels.store import ingest_labels
from lss_pipeline.core.paths import Paths
from lss_pipeline.resources import LssSettings

CROPS = [crops.level_crops, crops.class_weights]
SMALL = {"ops": {"level_crops": {"config": {"crop_px": 16, "slices": 3}}}}


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> Paths:
    """A small synthetic set with its dicom_metadata, labels and data_splits published (no Dagster)."""
    root = tmp_path_factory.mktemp("crops_assets")
    paths = Paths(data_dir=root / "data", raw_dir=root / "raw")
    synth.generate_dataset(
        paths.raw_dir, n_studies=8, seed=4, n_test_studies=0, workers=1, rows=48, sagittal_slices=5,
        axial_slices_per_level=1,
    )  # fmt: skip
    ingest_dicom_folder(paths, workers=1)
    labels, _, _ = ingest_labels(paths)
    splits.write_splits(splits.make_splits(labels, n_folds=2, test_share=0.25, seed=1), paths)
    return paths


def _copy(paths: Paths, root: Path) -> Paths:
    """The raw folder and published tables in a fresh data folder, so tests can break them alone."""
    shutil.copytree(paths.raw_dir, root / "raw")
    shutil.copytree(paths.processed_dir, root / "data" / paths.processed_dir.name)
    return Paths(data_dir=root / "data", raw_dir=root / "raw")


def run(paths: Paths, category: str):
    return materialize(
        CROPS,
        partition_key=category,
        resources={"settings": LssSettings(data_dir=str(paths.data_dir), raw_dir=str(paths.raw_dir))},
        run_config=SMALL,
        raise_on_error=False,
    )


def checks(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def test_crops_and_class_weights_of_a_category(ingested, tmp_path):
    paths = _copy(ingested, tmp_path)
    result = run(paths, "nfs")
    assert result.success
    assert materialized(result) == {"level_crops", "class_weights"}
    evaluations = checks(result)
    assert evaluations["skipped_share_within_bound"].passed
    assert evaluations["index_matches_crops"].passed
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey("level_crops")]
    meta = event.materialization.metadata
    assert meta["crops"].value > 0 and "samples_preview" in meta
    index = pl.read_parquet(paths.crops_index("nfs"))
    assert {"split", "fold", "level_index", "side"} <= set(index.columns)
    assert set(index["split"].unique()) <= {"cv", "test"}
    weights = json.loads(paths.class_weights("nfs").read_text())
    cv_crops = index.filter(pl.col("split") == "cv").height
    assert sum(weights["all_folds"]["train_counts"]) == cv_crops  # test-split crops never count


def test_a_decoder_that_reads_nothing_fails_the_blocking_check_and_stops_class_weights(ingested, tmp_path):
    paths = _copy(ingested, tmp_path)
    metadata = pl.read_parquet(paths.dicom_metadata)
    # Every Sagittal T2/STIR file still has its header but no decodable pixels: what a missing
    # decoder plugin or a wrong path looks like to the crop step.
    for rel in metadata.filter(pl.col("series_description") == "Sagittal T2/STIR")["path"]:
        path = paths.raw_dir / rel
        path.write_bytes(path.read_bytes()[:-200])
    result = run(paths, "scs")
    evaluations = checks(result)
    check = evaluations["skipped_share_within_bound"]
    assert not check.passed
    assert check.metadata["skipped_share"].value == 1.0
    assert "no crop at all" in check.metadata["problems"].value
    assert "level_crops" in materialized(result) and "class_weights" not in materialized(result)
    assert not paths.class_weights("scs").exists()
