"""Jobs for launching one stage by hand from the UI. Dagster runs one partitioning per run, so
the graph is cut at partition boundaries. Rebuilding on new labels needs none of them: the
automation conditions (automation.py) do it.
"""

from dagster import AssetSelection, define_asset_job
from dagster_k8s import k8s_job_executor

from lss_pipeline.core.settings import Deployment

ingest_job = define_asset_job(
    "ingest_job",
    # Observing label_files first records which label files were read, so the automation does
    # not rebuild from them a second time.
    selection=AssetSelection.assets("label_files", "dicom_metadata", "labels", "data_splits"),
    description="Label files observed; DICOM headers → metadata + quarantine; tidy labels; study splits.",
)
crops_job = define_asset_job(
    "crops_job",
    selection=AssetSelection.assets("level_crops", "class_weights"),
    description="2.5D level crops and class weights for one category.",
)
training_job = define_asset_job(
    "training_job",
    selection=AssetSelection.assets("trained_model"),
    description="Train one architecture × category (in-process; uses the `gpu` pool).",
)
report_job = define_asset_job(
    "report_job",
    selection=AssetSelection.assets("evaluation_report"),
    description="Evaluation report over every trained partition; sets the `champion` aliases.",
)
training_grid_k8s_job = define_asset_job(
    "training_grid_k8s_job",
    selection=AssetSelection.assets("trained_model"),
    executor_def=k8s_job_executor,
    description="The training grid on Kubernetes: one pod with one nvidia.com/gpu per step (as a backfill).",
)


def jobs_for(deployment: Deployment) -> list:
    """The stage jobs, plus the Kubernetes training grid in the ``k8s`` deployment."""
    jobs = [ingest_job, crops_job, training_job, report_job]
    if deployment == "k8s":
        jobs.append(training_grid_k8s_job)
    return jobs
