"""The Dagster code location: assets, checks, jobs, sensor, schedule, resources."""


from dagster import Definitions, load_asset_checks_from_modules

from lss_pipeline import checks
from lss_pipeline.assets import evaluation, ingest, preprocess, training
from lss_pipeline.jobs import crops_job, ingest_job, report_job, retrain_job, training_grid_k8s_job, training_job
from lss_pipeline.resources import ComputeDevice, LssSettings, MLflowTracking
from lss_pipeline.schedules import periodic_retrain_schedule
from lss_pipeline.sensors import label_files_sensor

ASSETS = [
    ingest.dicom_metadata,
    ingest.labels,
    preprocess.data_splits,
    preprocess.level_crops,
    preprocess.class_weights,
    training.trained_model,
    evaluation.evaluation_report,
]
ASSET_CHECKS = [*load_asset_checks_from_modules([checks]), preprocess.folds_are_study_grouped_and_stratified]


def default_resources() -> dict:
    return {
        "settings": LssSettings(),
        "mlflow_tracking": MLflowTracking(),
        "compute": ComputeDevice(),
    }


defs = Definitions(
    assets=ASSETS,
    asset_checks=ASSET_CHECKS,
    jobs=[ingest_job, crops_job, training_job, training_grid_k8s_job, report_job, retrain_job],
    sensors=[label_files_sensor],
    schedules=[periodic_retrain_schedule],
    resources=default_resources(),
)
