"""Jobs. Dagster runs one partitioning per run, so the graph is cut at partition boundaries;
the whole graph (or the retraining part) runs as an asset backfill, which the daemon orders."""

import time

from dagster import (
    AssetKey,
    AssetSelection,
    Config,
    Failure,
    OpExecutionContext,
    define_asset_job,
    job,
    op,
)
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.execution.backfill import (
    BULK_ACTION_TERMINAL_STATUSES,
    BulkActionStatus,
    PartitionBackfill,
)
from dagster._core.utils import make_new_backfill_id
from dagster._time import get_current_timestamp
from dagster_k8s import k8s_job_executor

from lss_pipeline.partitions import category_partitions, model_partitions
from lss_pipeline.sensors import RETRAIN_JOB_NAME

INGEST_ASSETS = ("dicom_metadata", "labels", "data_splits")
CROP_ASSETS = ("level_crops", "class_weights")
# labels → crops → weights → models → report (DESIGN.md "retraining job").
RETRAIN_ASSETS = ("labels", "data_splits", "level_crops", "class_weights", "trained_model", "evaluation_report")
ALL_ASSETS = ("dicom_metadata", *RETRAIN_ASSETS)

ingest_job = define_asset_job(
    "ingest_job",
    selection=AssetSelection.assets(*INGEST_ASSETS),
    description="DICOM headers → metadata + quarantine; label tables → tidy labels; study folds.",
)
crops_job = define_asset_job(
    "crops_job",
    selection=AssetSelection.assets(*CROP_ASSETS),
    partitions_def=category_partitions,
    description="2.5D level crops and class weights for one category.",
)
training_job = define_asset_job(
    "training_job",
    selection=AssetSelection.assets("trained_model"),
    partitions_def=model_partitions,
    description="Train one architecture × category (in-process; uses the `gpu` pool).",
)
training_grid_k8s_job = define_asset_job(
    "training_grid_k8s_job",
    selection=AssetSelection.assets("trained_model"),
    partitions_def=model_partitions,
    executor_def=k8s_job_executor,
    description="The training grid on Kubernetes: each step a pod with one nvidia.com/gpu (launch as a backfill).",
)
report_job = define_asset_job(
    "report_job",
    selection=AssetSelection.assets("evaluation_report"),
    description="Evaluation report over every trained partition; sets the `champion` aliases.",
)

RETRAIN_KEYS = tuple(AssetKey(name) for name in RETRAIN_ASSETS)
ALL_KEYS = tuple(AssetKey(name) for name in ALL_ASSETS)


# --- retraining ------------------------------------------------------------------------------
# The retraining assets span three partitionings, which no single Dagster run can hold, so the
# retrain job launches them as one asset backfill (the daemon runs it in dependency order, every
# partition) and waits for it: the job succeeds exactly when the retraining did.
class RetrainConfig(Config):
    wait: bool = True  # wait for the backfill so this run's status is the retraining's status
    timeout_s: int = 24 * 3600
    poll_s: float = 10.0


def launch_retrain_backfill(instance, tags: dict[str, str]) -> str:
    """Add an asset backfill of every partition of RETRAIN_ASSETS; returns its id."""
    from lss_pipeline.definitions import defs  # the code location's own graph

    asset_graph = defs.resolve_asset_graph()
    backfill_id = make_new_backfill_id()
    instance.add_backfill(
        PartitionBackfill.from_asset_graph_subset(
            backfill_id=backfill_id,
            dynamic_partitions_store=instance,
            backfill_timestamp=get_current_timestamp(),
            asset_graph_subset=AssetGraphSubset.from_asset_keys(RETRAIN_KEYS, asset_graph),
            tags=tags,
            title="retraining",
            description="labels → data_splits → level_crops → class_weights → trained_model → evaluation_report",
            run_config=None,
        )
    )
    return backfill_id


@op(description="Launch the retraining backfill (all partitions, dependency order) and wait for it.")
def retrain(context: OpExecutionContext, config: RetrainConfig) -> str:
    tags = {k: v for k, v in context.run.tags.items() if k.startswith("lss/")}
    tags["lss/retrain_run_id"] = context.run_id
    backfill_id = launch_retrain_backfill(context.instance, tags)
    context.log.info(f"retraining backfill {backfill_id} launched (needs the Dagster daemon)")
    if not config.wait:
        return backfill_id
    deadline = time.monotonic() + config.timeout_s
    while True:
        backfill = context.instance.get_backfill(backfill_id)
        if backfill.status in BULK_ACTION_TERMINAL_STATUSES:
            break
        if time.monotonic() > deadline:
            raise Failure(description=f"retraining backfill {backfill_id} still {backfill.status.value} after {config.timeout_s} s")
        time.sleep(config.poll_s)
    if backfill.status not in (BulkActionStatus.COMPLETED_SUCCESS, BulkActionStatus.COMPLETED):
        raise Failure(description=f"retraining backfill {backfill_id} ended {backfill.status.value}")
    context.log.info(f"retraining backfill {backfill_id} succeeded")
    return backfill_id


@job(name=RETRAIN_JOB_NAME, description="Retrain on the current labels: labels → crops → weights → models → report.")
def retrain_job():
    retrain()
