"""The Dagster code location: every asset and check of the `lss_pipeline.assets` package with
its automation condition, the stage jobs, the sensors, and the resources of the deployment.

A new module under `lss_pipeline/assets/` is picked up without editing this file. What changes
with the settings (LSS_DEPLOYMENT, LSS_RETRAIN_CRON) is read once, when the code location loads.
"""

from dagster import (
    AssetsDefinition,
    ConfigurableResource,
    Definitions,
    SensorDefinition,
    load_asset_checks_from_package_module,
    load_assets_from_package_module,
)

from lss_pipeline import assets as assets_package
from lss_pipeline.assets.predict import study_folders_sensor
from lss_pipeline.automation import automation_sensor, with_automation
from lss_pipeline.core.settings import Settings
from lss_pipeline.jobs import jobs_for
from lss_pipeline.resources import resources_for
from lss_pipeline.sensors import label_files_sensor


def _package_assets() -> list[AssetsDefinition]:
    loaded = load_assets_from_package_module(assets_package)
    others = [a for a in loaded if not isinstance(a, AssetsDefinition)]
    if others:
        # A SourceAsset or bare AssetSpec would get no automation condition: define it with a decorator.
        raise TypeError(
            f"lss_pipeline.assets: expected asset definitions (decorated functions), got {others}"
        )
    return [a for a in loaded if isinstance(a, AssetsDefinition)]


ASSETS = _package_assets()
ASSET_CHECKS = load_asset_checks_from_package_module(assets_package)


def sensors_for(settings: Settings) -> list[SensorDefinition]:
    """The automation, the new-test-study sensor; the label-file sensor unless periodic retraining
    observes at its cron."""
    base = [automation_sensor, study_folders_sensor]
    return base if settings.retrain_cron else [*base, label_files_sensor]


def build_definitions(settings: Settings) -> Definitions:
    return Definitions(
        assets=with_automation(ASSETS, settings),
        asset_checks=ASSET_CHECKS,
        jobs=jobs_for(settings.deployment),
        sensors=sensors_for(settings),
        resources=resources_for(settings.deployment),
    )


SETTINGS = Settings.from_env()


def default_resources() -> dict[str, ConfigurableResource]:
    """The resources of this deployment (LSS_DEPLOYMENT)."""
    return resources_for(SETTINGS.deployment)


defs = build_definitions(SETTINGS)
