"""Retrain when the label files change: one retraining run per new content hash."""

from __future__ import annotations

from dagster import (
    AssetKey,
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from lss_pipeline.core.label_watch import code_version, read_label_snapshot
from lss_pipeline.core.settings import Settings

RETRAIN_JOB_NAME = "retrain_job"
LABELS_HASH_TAG = "lss/labels_hash"
CODE_VERSION_TAG = "lss/code_version"
TRIGGER_TAG = "lss/trigger"
# The last run of `lss-pipeline demo` (a full build) carries the retraining tags with this trigger.
FULL_BUILD_TRIGGER = "full_build"


def retrain_tags(labels_hash: str, code: str, trigger: str) -> dict[str, str]:
    """Run tags that let the schedule see which labels and code a retraining used."""
    return {LABELS_HASH_TAG: labels_hash, CODE_VERSION_TAG: code, TRIGGER_TAG: trigger}


def hash_of_last_labels_build(instance: DagsterInstance) -> str | None:
    """The label-file hash the latest `labels` materialization recorded (None if never built)."""
    event = instance.get_latest_materialization_event(AssetKey("labels"))
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get("labels_hash")
    return getattr(value, "value", value)


@sensor(
    job_name=RETRAIN_JOB_NAME,
    default_status=DefaultSensorStatus.RUNNING,
    # Hashing the label CSVs takes well under a second; once a minute is plenty for
    # files that change a few times a year, and cheap for the daemon.
    minimum_interval_seconds=60,
    description=(
        "Watches train.csv, train_label_coordinates.csv and train_series_descriptions.csv "
        "in the raw folder by content hash; requests retrain_job once per new hash "
        "(run key = hash). Skips when files are missing, unchanged or still being written."
    ),
)
def label_files_sensor(context: SensorEvaluationContext):
    settings = Settings.from_env()
    snapshot = read_label_snapshot(settings.raw_dir)
    if not snapshot.ok:
        return SkipReason(snapshot.reason)
    labels_hash = snapshot.labels_hash
    if context.cursor == labels_hash:
        return SkipReason(f"label files unchanged (sha256 {labels_hash[:12]}) in {settings.raw_dir}")

    previous = context.cursor
    if previous is None and hash_of_last_labels_build(context.instance) == labels_hash:
        # First tick after `make demo` (or a manual build): the models already match these files.
        context.update_cursor(labels_hash)
        return SkipReason(f"labels already materialized from these files (sha256 {labels_hash[:12]})")
    context.update_cursor(labels_hash)
    context.log.info(
        f"label files changed in {settings.raw_dir}: "
        f"{(previous or 'none')[:12]} -> {labels_hash[:12]}; requesting {RETRAIN_JOB_NAME}"
    )
    # run_key = hash: Dagster launches at most one run per key, even if the cursor is reset.
    return RunRequest(
        run_key=labels_hash,
        job_name=RETRAIN_JOB_NAME,
        tags=retrain_tags(labels_hash, code_version(), trigger="label_files_sensor"),
    )
