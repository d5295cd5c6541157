"""The Dagster code location: every asset and check of the `lss_pipeline.assets` package, jobs,
sensor, schedule, resources.

A new module under `lss_pipeline/assets/` is picked up without editing this file.
"""

from dagster import (
    Definitions,
    load_asset_checks_from_package_module,
    load_assets_from_package_module,
)

from lss_pipeline import assets as assets_package
from lss_pipeline.jobs import (
    crops_job,
    ingest_job,
    report_job,
    retrain_job,
    training_grid_k8s_job,
    training_job,
)
from lss_pipeline.resources import ComputeDevice, LssSettings, MLflowTracking
from lss_pipeline.schedules import periodic_retrain_schedule
from lss_pipeline.sensors import label_files_sensor

ASSETS = load_assets_from_package_module(assets_package)
ASSET_CHECKS = load_asset_checks_from_package_module(assets_package)


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
