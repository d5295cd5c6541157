"""`label_files_sensor`: observes `label_files` once per new content hash, reading the folder the
`settings` resource names."""

from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    SkipReason,
    build_sensor_context,
    materialize,
)

from lss_pipeline.assets.sources import LABEL_FILES_KEY, label_files
from lss_pipeline.core import label_watch
from lss_pipeline.core.constants import COORDINATES_CSV, SERIES_CSV, TRAIN_CSV
from lss_pipeline.core.settings import Settings
from lss_pipeline.definitions import build_definitions
from lss_pipeline.resources import LssSettings
from lss_pipeline.sensors import label_files_sensor, latest_observation
from lss_pipeline_tests.conftest import write_label_files


@pytest.fixture
def raw_dir(watched_raw_dir: Path) -> Path:
    return watched_raw_dir


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as inst:
        yield inst


def settings_for(raw: Path) -> LssSettings:
    return LssSettings(data_dir=str(raw.parent / "data"), raw_dir=str(raw))


def tick(instance: DagsterInstance, raw: Path) -> RunRequest | SkipReason:
    context = build_sensor_context(instance=instance, resources={"settings": settings_for(raw)})
    result = label_files_sensor(context)
    assert isinstance(result, RunRequest | SkipReason)
    return result


def observe(instance: DagsterInstance, raw: Path) -> None:
    """What the requested run does: the real observation of `label_files`."""
    result = materialize(
        [label_files],
        selection=[LABEL_FILES_KEY],
        instance=instance,
        resources={"settings": settings_for(raw)},
    )
    assert result.success


def current_hash(raw: Path) -> str:
    snapshot = label_watch.read_label_snapshot((raw / TRAIN_CSV, raw / COORDINATES_CSV, raw / SERIES_CSV))
    assert snapshot.labels_hash is not None
    return snapshot.labels_hash


def test_sensor_runs_by_default_every_minute_and_observes_only_label_files(raw_dir):
    assert label_files_sensor.name == "label_files_sensor"
    assert label_files_sensor.default_status == DefaultSensorStatus.RUNNING
    assert label_files_sensor.minimum_interval_seconds == 60
    defs = build_definitions(Settings(data_dir=raw_dir.parent / "data", raw_dir=raw_dir))
    job = defs.resolve_job_def(label_files_sensor.job_name)
    assert job.asset_layer.executable_asset_keys == {LABEL_FILES_KEY}


def test_never_observed_then_observed_then_unchanged_then_edited(raw_dir, instance):
    write_label_files(raw_dir)
    first = tick(instance, raw_dir)
    assert isinstance(first, RunRequest) and first.asset_selection == [LABEL_FILES_KEY]
    # Asked again before the observation ran: the same run key, so Dagster launches it once.
    again = tick(instance, raw_dir)
    assert isinstance(again, RunRequest) and again.run_key == first.run_key

    observe(instance, raw_dir)
    assert latest_observation(instance)[1] == current_hash(raw_dir)
    unchanged = tick(instance, raw_dir)
    assert isinstance(unchanged, SkipReason) and "unchanged" in (unchanged.skip_message or "")

    with (raw_dir / COORDINATES_CSV).open("a") as handle:
        handle.write("1,2,4,Spinal Canal Stenosis,L2/L3,6.0,7.0\n")
    edited = tick(instance, raw_dir)
    assert isinstance(edited, RunRequest) and edited.run_key != first.run_key
    assert current_hash(raw_dir) in (edited.run_key or "")


def test_going_back_to_earlier_files_is_a_new_request(raw_dir, instance):
    write_label_files(raw_dir)
    observe(instance, raw_dir)
    first_version = tick(instance, raw_dir)
    assert isinstance(first_version, SkipReason)
    write_label_files(raw_dir, severity="Severe")
    to_second = tick(instance, raw_dir)
    observe(instance, raw_dir)
    write_label_files(raw_dir)  # the first version again
    back = tick(instance, raw_dir)
    assert isinstance(to_second, RunRequest) and isinstance(back, RunRequest)
    assert back.run_key != to_second.run_key


def test_the_settings_resource_names_the_folder_not_the_environment(raw_dir, instance, tmp_path, monkeypatch):
    # LSS_RAW_DIR points at an empty folder; the resource at the one with labels.
    monkeypatch.setenv("LSS_RAW_DIR", str(tmp_path / "elsewhere"))
    write_label_files(raw_dir)
    assert isinstance(tick(instance, raw_dir), RunRequest)


def test_missing_files_skip_with_reason(raw_dir, instance):
    skip = tick(instance, raw_dir)
    assert isinstance(skip, SkipReason) and "missing" in (skip.skip_message or "")
    assert TRAIN_CSV in (skip.skip_message or "")

    write_label_files(raw_dir)
    (raw_dir / SERIES_CSV).unlink()
    skip = tick(instance, raw_dir)
    assert isinstance(skip, SkipReason)
    assert SERIES_CSV in (skip.skip_message or "") and TRAIN_CSV not in (skip.skip_message or "")


def test_half_written_file_is_not_acted_on(raw_dir, instance, monkeypatch):
    write_label_files(raw_dir)
    observe(instance, raw_dir)

    # A copy in progress: train.csv grows between the sensor's two reads.
    def writer_still_appending(seconds: float) -> None:
        with (raw_dir / TRAIN_CSV).open("a") as handle:
            handle.write("2,Moderate\n")

    monkeypatch.setattr(label_watch, "_pause", writer_still_appending)
    skip = tick(instance, raw_dir)
    assert isinstance(skip, SkipReason) and "still being written" in (skip.skip_message or "")
    assert TRAIN_CSV in (skip.skip_message or "")

    # Once the writer is done, the next tick sees the new content and acts.
    monkeypatch.setattr(label_watch, "_pause", lambda seconds: None)
    assert isinstance(tick(instance, raw_dir), RunRequest)


def test_observation_of_missing_files_fails_naming_them_and_records_nothing(raw_dir, instance):
    write_label_files(raw_dir)
    (raw_dir / COORDINATES_CSV).unlink()
    result = materialize(
        [label_files],
        selection=[LABEL_FILES_KEY],
        instance=instance,
        resources={"settings": settings_for(raw_dir)},
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None and COORDINATES_CSV in failure.to_string()
    assert latest_observation(instance) == (0, None)
