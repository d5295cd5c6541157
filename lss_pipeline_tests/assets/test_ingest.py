"""The ingest assets and checks in Dagster: outputs, UI metadata, and bad inputs that fail loudly."""

from __future__ import annotations

import shutil
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
    ingest.labels_make_anatomical_sense,
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


# ----------------------------------------------------------------------------- silent failures, now loud


def failure_message(result) -> str:
    [failure] = result.get_step_failure_events()
    data = failure.step_failure_data
    return data.user_failure_data.description if data.user_failure_data else data.error.message


@pytest.fixture()
def built(synth_raw, tmp_path) -> tuple[Path, Path]:
    """A private copy of the synthetic raw folder with every ingest table built from it."""
    raw = tmp_path / "raw"
    shutil.copytree(synth_raw, raw)
    data = tmp_path / "data"
    assert run(raw, data, ["dicom_metadata", "labels"]).success
    return raw, data


def test_header_only_train_csv_fails_in_the_ui_and_keeps_the_table(built):
    raw, data = built
    paths = Paths(data_dir=data, raw_dir=raw)
    before = paths.labels.read_bytes()
    paths.train_csv.write_text(paths.train_csv.read_text().splitlines()[0] + "\n")
    result = run(raw, data, ["labels"])
    assert not result.success
    message = failure_message(result)
    assert "train.csv has a header and 0 study rows" in message and "16 studies" in message
    assert paths.labels.read_bytes() == before


def test_missing_image_folders_fail_in_the_ui_and_keep_the_table(built):
    raw, data = built
    paths = Paths(data_dir=data, raw_dir=raw)
    before = paths.dicom_metadata.read_bytes()
    shutil.rmtree(paths.train_images)
    shutil.rmtree(paths.test_images)
    result = run(raw, data, ["dicom_metadata"])
    assert not result.success
    assert "train_images/ is missing, test_images/ is missing" in failure_message(result)
    assert paths.dicom_metadata.read_bytes() == before


def test_label_checks_without_dicom_metadata_warn_with_a_reason(synth_raw, tmp_path):
    result = run(synth_raw, tmp_path / "data", ["labels"])
    assert result.success  # the asset succeeded; its checks say what they could not check
    evaluations = checks(result)
    for name in ("coordinates_point_at_instances", "studies_have_required_series"):
        assert not evaluations[name].passed
        assert evaluations[name].severity.value == "WARN"
        assert "materialize the `dicom_metadata` asset first" in evaluations[name].description


def test_quarantine_check_fails_at_zero_of_zero(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "train.csv").write_text("study_id\n")
    result = run(raw, tmp_path / "data", ["dicom_metadata"], {
        "ops": {"dicom_metadata": {"config": {"allow_empty": True}}}
    })  # fmt: skip
    assert result.success
    evaluation = checks(result)["quarantine_share_below_bound"]
    assert not evaluation.passed and "0 of 0" in evaluation.description


def test_anatomy_check_warns_with_a_table_of_offenders(synth_raw, built):
    """The synthetic set's planted fault (left/right foraminal points on one instance) is listed."""
    raw, data = built
    faults = synth.read_manifest(raw)["faults"]
    planted = {f["study_id"] for f in faults if f["kind"] == "lr_foraminal_same_instance"}
    result = run(raw, data, ["labels"])
    evaluation = checks(result)["labels_make_anatomical_sense"]
    assert result.success and not evaluation.passed and evaluation.severity.value == "WARN"
    meta = evaluation.metadata
    assert meta["offenders_lr_same_instance"].value >= len(planted) > 0
    assert meta["points_in_patient_space"].value > 0 and "skipped_because" not in meta
    table = meta["offenders"].value
    assert "| study_id | row_id |" in table and all(str(s) in table for s in planted)
    assert "lr_same_instance" in evaluation.description


def test_anatomy_check_without_dicom_metadata_runs_the_csv_only_part(synth_raw, tmp_path):
    result = run(synth_raw, tmp_path / "data", ["labels"])
    evaluation = checks(result)["labels_make_anatomical_sense"]
    assert not evaluation.passed and "dicom_metadata is not built" in evaluation.description
    assert evaluation.metadata["offenders_lr_same_instance"].value > 0
    assert evaluation.metadata["points_in_patient_space"].value == 0
