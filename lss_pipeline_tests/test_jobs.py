"""The retrain job launches one asset backfill over labels → … → report, every partition."""

from dagster import AssetKey, DagsterInstance

from lss_pipeline.definitions import defs
from lss_pipeline.jobs import RETRAIN_ASSETS


def test_retrain_job_launches_backfill_of_every_retraining_partition():
    instance = DagsterInstance.ephemeral()
    job = defs.resolve_job_def("retrain_job")
    result = job.execute_in_process(
        instance=instance,
        run_config={"ops": {"retrain": {"config": {"wait": False}}}},
        tags={"lss/labels_hash": "abc123", "lss/code_version": "def456"},
    )
    assert result.success
    backfill_id = result.output_for_node("retrain")
    backfill = instance.get_backfill(backfill_id)
    assert backfill.tags["lss/labels_hash"] == "abc123"
    assert backfill.tags["lss/code_version"] == "def456"
    subset = backfill.asset_backfill_data.target_subset
    assert subset.asset_keys == {AssetKey(name) for name in RETRAIN_ASSETS}
    partitions = {(key.to_user_string(), p.partition_key) for p in subset.iterate_asset_partitions() for key in [p.asset_key]}
    assert ("trained_model", "swin|sbs") in partitions
    assert {k for k, pk in partitions if pk is None} == {"labels", "data_splits", "evaluation_report"}
    assert len([1 for k, _ in partitions if k == "trained_model"]) == 9
    assert len([1 for k, _ in partitions if k == "level_crops"]) == 3


def test_retrain_job_fails_when_the_backfill_fails(monkeypatch):
    from dagster._core.execution.backfill import BulkActionStatus

    instance = DagsterInstance.ephemeral()
    original = instance.get_backfill

    def failed_backfill(backfill_id):
        return original(backfill_id).with_status(BulkActionStatus.COMPLETED_FAILED)

    monkeypatch.setattr(instance, "get_backfill", failed_backfill)
    result = defs.resolve_job_def("retrain_job").execute_in_process(
        instance=instance, run_config={"ops": {"retrain": {"config": {"poll_s": 0.01}}}}, raise_on_error=False
    )
    assert not result.success
