"""The stage jobs select what their names say; each resolves in the code location."""

import pytest
from dagster import AssetKey

from lss_pipeline.definitions import defs

STAGES = {
    "ingest_job": {"label_files", "dicom_metadata", "labels", "data_splits"},
    "crops_job": {"level_crops", "class_weights"},
    "training_job": {"trained_model"},
    "report_job": {"evaluation_report"},
}


@pytest.mark.parametrize(("job_name", "assets"), STAGES.items())
def test_stage_job_selects_its_assets(job_name, assets):
    job = defs.resolve_job_def(job_name)
    assert job.asset_layer.executable_asset_keys == {AssetKey(name) for name in assets}


def test_partitioned_stage_jobs_take_the_partitions_of_their_assets():
    assert defs.resolve_job_def("crops_job").partitions_def.get_partition_keys() == ["scs", "nfs", "sbs"]
    assert len(defs.resolve_job_def("training_job").partitions_def.get_partition_keys()) == 9
    assert defs.resolve_job_def("ingest_job").partitions_def is None


def test_no_job_waits_on_other_runs():
    # Retraining is the automation's (automation.py): no op that launches or polls runs.
    names = {job.name for job in defs.jobs or []}
    assert "retrain_job" not in names
    for name in names:
        job = defs.resolve_job_def(name)
        assert job.asset_layer.executable_asset_keys, f"{name} is not an asset job"
