"""Periodic retraining (off by default): runs only when labels or code changed.

Cron from ``LSS_RETRAIN_CRON`` (default weekly, Monday 03:00), timezone from
``LSS_RETRAIN_TIMEZONE`` (default UTC); both read when the definitions load.
"""

from __future__ import annotations

import os

from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultScheduleStatus,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from lss_pipeline.core.label_watch import code_version, read_label_snapshot
from lss_pipeline.core.settings import Settings
from lss_pipeline.sensors import (
    CODE_VERSION_TAG,
    FULL_BUILD_TRIGGER,
    LABELS_HASH_TAG,
    RETRAIN_JOB_NAME,
    TRIGGER_TAG,
    retrain_tags,
)

RETRAIN_CRON_ENV = "LSS_RETRAIN_CRON"
RETRAIN_TIMEZONE_ENV = "LSS_RETRAIN_TIMEZONE"
DEFAULT_RETRAIN_CRON = "0 3 * * 1"


def retrain_cron(environ: dict | None = None) -> str:
    env = os.environ if environ is None else environ
    cron = (env.get(RETRAIN_CRON_ENV) or DEFAULT_RETRAIN_CRON).strip()
    if len(cron.split()) != 5:
        raise ValueError(
            f"{RETRAIN_CRON_ENV}={cron!r} is not a 5-field cron string (e.g. {DEFAULT_RETRAIN_CRON!r})"
        )
    return cron


def last_successful_retrain(instance: DagsterInstance) -> DagsterRun | None:
    """The newest successful retraining: a ``retrain_job`` run, or the last run of a full build
    (``lss-pipeline demo``), which carries the same tags. None if there is neither."""
    records = [
        *instance.get_run_records(
            filters=RunsFilter(job_name=RETRAIN_JOB_NAME, statuses=[DagsterRunStatus.SUCCESS]), limit=1
        ),
        *instance.get_run_records(
            filters=RunsFilter(tags={TRIGGER_TAG: FULL_BUILD_TRIGGER}, statuses=[DagsterRunStatus.SUCCESS]), limit=1
        ),
    ]
    return max(records, key=lambda record: record.create_timestamp).dagster_run if records else None


@schedule(
    job_name=RETRAIN_JOB_NAME,
    cron_schedule=retrain_cron(),
    execution_timezone=os.environ.get(RETRAIN_TIMEZONE_ENV) or "UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description=(
        "Periodic retraining (cron from LSS_RETRAIN_CRON, default weekly). Skips when the "
        "label files and the code are unchanged since the last successful retraining "
        "(a retrain_job run, or a full build by `lss-pipeline demo`)."
    ),
)
def periodic_retrain_schedule(context: ScheduleEvaluationContext):
    settings = Settings.from_env()
    snapshot = read_label_snapshot(settings.raw_dir)
    if not snapshot.ok:
        return SkipReason(snapshot.reason)
    labels_hash = snapshot.labels_hash
    code = code_version()

    last = last_successful_retrain(context.instance)
    if last is not None and last.tags.get(LABELS_HASH_TAG) == labels_hash and last.tags.get(CODE_VERSION_TAG) == code:
        return SkipReason(
            f"labels (sha256 {labels_hash[:12]}) and code ({code[:12]}) unchanged since the last "
            f"successful retraining (run {last.run_id})"
        )
    if last is None:
        why = "no successful retraining yet"
    else:
        changed = [
            what
            for what, tag, now in (("labels", LABELS_HASH_TAG, labels_hash), ("code", CODE_VERSION_TAG, code))
            if last.tags.get(tag) != now
        ]
        why = f"{' and '.join(changed)} changed since run {last.run_id}"
    context.log.info(f"requesting {RETRAIN_JOB_NAME}: {why}")
    return RunRequest(job_name=RETRAIN_JOB_NAME, tags=retrain_tags(labels_hash, code, trigger="periodic_retrain_schedule"))
