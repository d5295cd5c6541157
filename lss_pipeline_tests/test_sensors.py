from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterInstance, RunRequest, SensorResult, SkipReason, build_sensor_context

from lss_pipeline.core import label_watch
from lss_pipeline.core.constants import COORDINATES_CSV, SERIES_CSV, TRAIN_CSV
from lss_pipeline_tests.conftest import write_label_files
from lss_pipeline.sensors import CODE_VERSION_TAG, LABELS_HASH_TAG, label_files_sensor


def write_labels(raw: Path) -> None:
    write_label_files(raw)


@pytest.fixture
def raw_dir(watched_raw_dir) -> Path:
    return watched_raw_dir


@pytest.fixture(scope="module")
def instance():
    with DagsterInstance.ephemeral() as inst:
        yield inst


def tick(cursor: str | None, instance: DagsterInstance):
    """Evaluate one sensor tick; return (run requests, skip message, new cursor)."""
    context = build_sensor_context(cursor=cursor, instance=instance)
    result = label_files_sensor(context)
    if isinstance(result, SkipReason):
        return [], result.skip_message, context.cursor
    if isinstance(result, SensorResult):
        return list(result.run_requests or []), None, context.cursor
    assert isinstance(result, RunRequest)
    return [result], None, context.cursor


def test_sensor_definition_contract():
    from dagster import DefaultSensorStatus

    assert label_files_sensor.name == "label_files_sensor"
    assert label_files_sensor.job_name == "retrain_job"
    assert label_files_sensor.default_status == DefaultSensorStatus.RUNNING
    assert label_files_sensor.minimum_interval_seconds == 60


def test_first_tick_requests_then_same_files_skip_then_edit_requests(raw_dir, instance):
    write_labels(raw_dir)
    requests, skip, cursor = tick(None, instance)
    assert skip is None and len(requests) == 1
    first = requests[0]
    assert first.job_name == "retrain_job"
    assert first.run_key == cursor and len(cursor) == 64
    assert first.tags[LABELS_HASH_TAG] == cursor
    assert first.tags[CODE_VERSION_TAG] == label_watch.code_version()

    requests, skip, cursor_after = tick(cursor, instance)
    assert requests == [] and "unchanged" in skip
    assert cursor_after == cursor

    with (raw_dir / COORDINATES_CSV).open("a") as handle:
        handle.write("1,2,4,Spinal Canal Stenosis,L2/L3,6.0,7.0\n")
    requests, skip, new_cursor = tick(cursor, instance)
    assert skip is None and len(requests) == 1
    assert new_cursor != cursor and requests[0].run_key == new_cursor


def test_missing_files_skip_with_reason(raw_dir, instance):
    requests, skip, cursor = tick(None, instance)
    assert requests == [] and "missing" in skip and TRAIN_CSV in skip
    assert cursor is None

    write_labels(raw_dir)
    (raw_dir / SERIES_CSV).unlink()
    requests, skip, _ = tick(None, instance)
    assert requests == [] and SERIES_CSV in skip and TRAIN_CSV not in skip


def test_half_written_file_is_not_acted_on(raw_dir, instance, monkeypatch):
    write_labels(raw_dir)
    _, _, cursor = tick(None, instance)

    # A copy in progress: train.csv grows between the sensor's two reads.
    def writer_still_appending(seconds: float) -> None:
        with (raw_dir / TRAIN_CSV).open("a") as handle:
            handle.write("2,Moderate\n")

    monkeypatch.setattr(label_watch, "_pause", writer_still_appending)
    requests, skip, cursor_after = tick(cursor, instance)
    assert requests == [] and "still being written" in skip and TRAIN_CSV in skip
    assert cursor_after == cursor  # the cursor does not move to a half-written hash

    # Once the writer is done, the next tick sees the new content and acts once.
    monkeypatch.setattr(label_watch, "_pause", lambda seconds: None)
    requests, skip, new_cursor = tick(cursor, instance)
    assert len(requests) == 1 and new_cursor != cursor


def test_first_tick_after_a_labels_build_from_the_same_files_skips(raw_dir):
    from dagster import AssetMaterialization

    write_labels(raw_dir)
    snapshot = label_watch.read_label_snapshot(raw_dir, settle_seconds=0.0)
    with DagsterInstance.ephemeral() as fresh:
        fresh.report_runless_asset_event(
            AssetMaterialization("labels", metadata={"labels_hash": snapshot.labels_hash})
        )
        requests, skip, cursor = tick(None, fresh)
        assert requests == [] and "already materialized" in skip
        assert cursor == snapshot.labels_hash
        (raw_dir / TRAIN_CSV).write_text("study_id,spinal_canal_stenosis_l1_l2\n1,Severe\n")
        requests, skip, _ = tick(cursor, fresh)
        assert len(requests) == 1 and requests[0].run_key != snapshot.labels_hash
