from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultScheduleStatus,
    RunRequest,
    build_schedule_context,
    instance_for_test,
)

from lss_pipeline import schedules
from lss_pipeline.core import label_watch
from lss_pipeline.core.constants import TRAIN_CSV
from lss_pipeline_tests.conftest import write_label_files
from lss_pipeline.schedules import periodic_retrain_schedule, retrain_cron
from lss_pipeline.sensors import CODE_VERSION_TAG, LABELS_HASH_TAG


@pytest.fixture
def raw_dir(watched_raw_dir) -> Path:
    write_label_files(watched_raw_dir, severity="Severe")
    return watched_raw_dir


@pytest.fixture
def instance():
    # A real (temp-dir) instance: the schedule context needs an instance reference.
    with instance_for_test() as inst:
        yield inst


def add_retrain_run(instance: DagsterInstance, status: DagsterRunStatus, tags: dict[str, str]) -> DagsterRun:
    run = DagsterRun(job_name="retrain_job", run_id=str(uuid.uuid4()), status=status, tags=tags)
    return instance.add_run(run)


def evaluate(instance: DagsterInstance):
    context = build_schedule_context(instance=instance)
    return periodic_retrain_schedule.evaluate_tick(context)


def current_tags(raw: Path) -> dict[str, str]:
    snapshot = label_watch.read_label_snapshot(raw, settle_seconds=0)
    return {LABELS_HASH_TAG: snapshot.labels_hash, CODE_VERSION_TAG: label_watch.code_version()}


def test_schedule_definition_contract():
    assert periodic_retrain_schedule.name == "periodic_retrain_schedule"
    assert periodic_retrain_schedule.job_name == "retrain_job"
    assert periodic_retrain_schedule.default_status == DefaultScheduleStatus.STOPPED
    assert periodic_retrain_schedule.cron_schedule == "0 3 * * 1"


def test_cron_from_env_and_rejects_garbage():
    assert retrain_cron({}) == "0 3 * * 1"
    assert retrain_cron({"LSS_RETRAIN_CRON": "15 2 * * *"}) == "15 2 * * *"
    with pytest.raises(ValueError, match="LSS_RETRAIN_CRON"):
        retrain_cron({"LSS_RETRAIN_CRON": "weekly"})


def test_requests_when_no_successful_retrain_yet(raw_dir, instance):
    # A failed run with the same tags does not count as a successful retraining.
    add_retrain_run(instance, DagsterRunStatus.FAILURE, current_tags(raw_dir))
    result = evaluate(instance)
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert isinstance(request, RunRequest) and request.job_name == "retrain_job"
    assert request.tags[LABELS_HASH_TAG] == current_tags(raw_dir)[LABELS_HASH_TAG]


def test_skips_when_labels_and_code_unchanged_since_last_success(raw_dir, instance):
    last = add_retrain_run(instance, DagsterRunStatus.SUCCESS, current_tags(raw_dir))
    result = evaluate(instance)
    assert not result.run_requests
    assert "unchanged" in result.skip_message and last.run_id in result.skip_message


def test_requests_when_labels_changed(raw_dir, instance):
    add_retrain_run(instance, DagsterRunStatus.SUCCESS, current_tags(raw_dir))
    with (raw_dir / TRAIN_CSV).open("a") as handle:
        handle.write("2,Moderate\n")
    result = evaluate(instance)
    assert len(result.run_requests) == 1
    assert result.run_requests[0].tags[LABELS_HASH_TAG] == current_tags(raw_dir)[LABELS_HASH_TAG]


def test_requests_when_code_changed(raw_dir, instance, monkeypatch):
    add_retrain_run(instance, DagsterRunStatus.SUCCESS, current_tags(raw_dir))
    monkeypatch.setattr(schedules, "code_version", lambda: "f" * 64)
    result = evaluate(instance)
    assert len(result.run_requests) == 1
    assert result.run_requests[0].tags[CODE_VERSION_TAG] == "f" * 64


def test_only_latest_success_counts(raw_dir, instance):
    tags = current_tags(raw_dir)
    add_retrain_run(instance, DagsterRunStatus.SUCCESS, tags)
    # A later successful retraining on other labels: the current files differ from it.
    add_retrain_run(instance, DagsterRunStatus.SUCCESS, {**tags, LABELS_HASH_TAG: "0" * 64})
    result = evaluate(instance)
    assert len(result.run_requests) == 1


def test_missing_labels_skip(raw_dir, instance):
    (raw_dir / TRAIN_CSV).unlink()
    result = evaluate(instance)
    assert not result.run_requests and TRAIN_CSV in result.skip_message


def test_a_full_build_on_the_same_labels_and_code_counts_as_a_retraining(raw_dir, instance):
    from lss_pipeline.sensors import FULL_BUILD_TRIGGER, TRIGGER_TAG

    build = DagsterRun(
        job_name="__ASSET_JOB", run_id=str(uuid.uuid4()), status=DagsterRunStatus.SUCCESS,
        tags={**current_tags(raw_dir), TRIGGER_TAG: FULL_BUILD_TRIGGER},
    )
    instance.add_run(build)
    result = evaluate(instance)
    assert not result.run_requests and build.run_id in result.skip_message
    (raw_dir / TRAIN_CSV).write_text("study_id,spinal_canal_stenosis_l1_l2\n1,Moderate\n")
    assert len(evaluate(instance).run_requests) == 1
