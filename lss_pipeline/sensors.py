"""`label_files_sensor`: observes the label files when their content changed.

Hashing the three CSVs takes well under a second, so the sensor does it every minute and asks
for an observation of `label_files` only when the hash on disk differs from the last recorded
data version. The automation (automation.py) then rebuilds what depends on the labels, once.
"""

from dagster import (
    AssetKey,
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from lss_pipeline.assets.sources import LABEL_FILES_KEY, label_files
from lss_pipeline.core.label_watch import read_label_snapshot
from lss_pipeline.resources import LssSettings

LABEL_FILES_SENSOR_NAME = "label_files_sensor"
# How often the label files are hashed: well under a second's work each time.
LABEL_POLL_SECONDS = 60


def latest_observation(instance: DagsterInstance, key: AssetKey = LABEL_FILES_KEY) -> tuple[int, str | None]:
    """(storage id, data version) of the newest observation of ``key``; (0, None) if never observed."""
    records = instance.fetch_observations(key, limit=1).records
    if not records or records[0].asset_observation is None:
        return 0, None
    return records[0].storage_id, records[0].asset_observation.data_version


def check_label_files(context: SensorEvaluationContext, settings: LssSettings) -> RunRequest | SkipReason:
    """One evaluation: skip while files are missing or unchanged, else ask to observe label_files."""
    files = settings.get().paths.label_files
    snapshot = read_label_snapshot(files)
    if not snapshot.ok or snapshot.labels_hash is None:
        return SkipReason(snapshot.reason)
    storage_id, observed = latest_observation(context.instance)
    if observed == snapshot.labels_hash:
        return SkipReason(f"label files unchanged (sha256 {observed[:12]}) in {snapshot.raw_dir}")
    context.log.info(
        f"label files changed in {snapshot.raw_dir}: {(observed or 'never observed')[:12]} -> "
        f"{snapshot.labels_hash[:12]}; observing label_files"
    )
    # One request per (last observation, new hash): a tick while the observation is still
    # queued does not ask again, and going back to an earlier file version is a new request.
    return RunRequest(run_key=f"{storage_id}:{snapshot.labels_hash}", asset_selection=[LABEL_FILES_KEY])


def label_files_sensor_every(seconds: int) -> SensorDefinition:
    """The label-file sensor, evaluated every ``seconds`` (tests of a real daemon use a few)."""

    @sensor(
        name=LABEL_FILES_SENSOR_NAME,
        target=[label_files],
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=seconds,
        description=(
            "Hashes train.csv, train_label_coordinates.csv and train_series_descriptions.csv in the "
            f"raw folder every {seconds} s; observes label_files when the hash differs from its last "
            "data version. Skips while files are missing or still being written."
        ),
    )
    def label_files_sensor(context: SensorEvaluationContext, settings: LssSettings):
        return check_label_files(context, settings)

    return label_files_sensor


label_files_sensor = label_files_sensor_every(LABEL_POLL_SECONDS)
