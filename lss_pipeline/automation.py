"""When the daemon rebuilds what: declarative automation conditions on every asset.

- `label_files` (assets/sources.py) is observed, not built: its data version is the content hash
  of the label CSVs. `label_files_sensor` (sensors.py) asks for an observation when the hash on
  disk differs from the last one recorded.
- Every asset is rebuilt, partition by partition, once something it depends on has a new version
  (new label files, or an upstream asset rebuilt) or its own code version changed. It waits while
  something upstream is missing or still running, and when a blocking check upstream failed.
  One tick's requests that span several partitionings go out as one backfill, so
  level_crops [scs] is built before the models of scs; training steps queue on the `gpu` pool.
- Periodic retraining (off by default; on with LSS_RETRAIN_CRON, e.g. ``0 3 * * 1``): the label
  files are looked at only at that cron's ticks, so new labels wait for the night. A new code
  version is a deliberate release and is acted on at once in both modes.
"""

from collections.abc import Sequence

from dagster import (
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    map_asset_specs,
)

from lss_pipeline.assets.sources import LABEL_FILES_KEY
from lss_pipeline.core.settings import Settings

AUTOMATION_SENSOR_NAME = "automation"
# How often the daemon evaluates the conditions; each evaluation is a few database reads.
AUTOMATION_INTERVAL_SECONDS = 30


def rebuild_condition() -> AutomationCondition:
    """Rebuild once per new upstream version or code version; never twice for the same one."""
    inputs_changed: AutomationCondition = AutomationCondition.any_deps_updated()
    code_changed: AutomationCondition = AutomationCondition.code_version_changed()
    return (
        (inputs_changed | code_changed).since_last_handled()
        & ~AutomationCondition.any_deps_missing()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
        & AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label("rebuild when inputs or code changed")


def label_observation_condition(
    retrain_cron: str | None, timezone: str = "UTC"
) -> AutomationCondition | None:
    """Periodic retraining observes the label files at each tick; otherwise the sensor does, at once."""
    if retrain_cron is None:
        return None
    return AutomationCondition.cron_tick_passed(retrain_cron, timezone).with_label(
        f"look at the label files at {retrain_cron} ({timezone})"
    )


def with_automation(assets: Sequence[AssetsDefinition], settings: Settings) -> list[AssetsDefinition]:
    """The assets with their automation conditions: rebuild on change; label files observed as set."""
    rebuild = rebuild_condition()
    observe = label_observation_condition(settings.retrain_cron, settings.retrain_timezone)

    def add_condition(spec: AssetSpec) -> AssetSpec:
        condition = observe if spec.key == LABEL_FILES_KEY else rebuild
        return spec.replace_attributes(automation_condition=condition)

    return list(map_asset_specs(add_condition, assets))


def automation_sensor_every(seconds: int) -> AutomationConditionSensorDefinition:
    """The automation sensor, evaluated every ``seconds`` (tests of a real daemon use a few)."""
    return AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR_NAME,
        target=AssetSelection.all() | AssetSelection.assets(LABEL_FILES_KEY),
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=seconds,
        # Requests spanning several partitionings become one backfill, which runs them in
        # dependency order (crops of a category before the models of that category).
        emit_backfills=True,
        description=(
            "Rebuilds what depends on new label files or changed code, partition by partition "
            "(declarative automation; conditions in lss_pipeline/automation.py)."
        ),
    )


automation_sensor = automation_sensor_every(AUTOMATION_INTERVAL_SECONDS)
