"""The ingest assets and checks in Dagster: outputs, UI metadata, and bad inputs that fail loudly."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, materialize

from lss_pipeline.assets import ingest
from lss_pipeline.core import synth
from lss_pipeline.core.paths import Paths
from lss_pipeline.resources import LssSettings

INGEST = [
    ingest.dicom_metadata,
    ingest.labels,
    ingest.data_splits,
    ingest.coordinates_point_at_instances,
    ingest.studies_have_required_series,
    ingest.quarantine_share_below_bound,
    ingest.folds_are_study_grouped_and_stratified,
]


@pytest.fixture(scope="module")
def synth_raw(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("ingest") / "raw"
    synth.generate_dataset(
        raw, n_studies=16, seed=3, faults=True, n_test_studies=1, workers=1, rows=48, sagittal_slices=5,
        axial_slices_per_level=1,
    )  # fmt: skip
    return raw


def run(raw: Path, data: Path, selection: str | list[str], run_config: dict | None = None):
    return materialize(
        INGEST,
        selection=selection,
        resources={"settings": LssSettings(data_dir=str(data), raw_dir=str(raw))},
        run_config=run_config,
        raise_on_error=False,
    )


def materialized(result, asset: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey(asset)]
    return event.materialization.metadata


def checks(result) -> dict:
    """check name -> its AssetCheckEvaluation (``passed``, ``description``, ``metadata``)."""
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_ingest_builds_tables_splits_and_checks(synth_raw, tmp_path):
    result = run(synth_raw, tmp_path / "data", ["dicom_metadata", "labels", "data_splits"], {
        "ops": {"data_splits": {"config": {"n_folds": 3}}}
    })  # fmt: skip
    assert result.success
    paths = Paths(data_dir=tmp_path / "data", raw_dir=synth_raw)
    for path in (paths.dicom_metadata, paths.quarantine, paths.labels, paths.labels_stats, paths.data_splits):
        assert path.is_file(), path
    splits = pl.read_parquet(paths.data_splits)
    assert splits.columns == ["study_id", "split", "fold"] and splits.height == 16
    split_meta = materialized(result, "data_splits")
    assert "| category | class | test | fold 0 | fold 1 | fold 2 |" in split_meta["class_counts"].value
    evaluations = checks(result)
    assert evaluations["quarantine_share_below_bound"].passed
    assert evaluations["folds_are_study_grouped_and_stratified"].passed
    assert not any(p.name.endswith(".tmp.parquet") for p in paths.processed_dir.iterdir())
