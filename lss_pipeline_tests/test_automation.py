"""Retraining by declarative automation, on the real asset graph: new label files rebuild every
partition downstream exactly once; the same files, observed again, rebuild nothing.

The daemon's loop is played here with Dagster's test API (`evaluate_automation_conditions`): each
tick's requests are carried out at once, observations by the real observe function, asset
partitions by stand-ins (automation_harness.py; the assets' own work is tested elsewhere).
"""

import datetime
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    Definitions,
    EvaluateAutomationConditionsResult,
    RunsFilter,
    evaluate_automation_conditions,
    map_asset_specs,
    materialize,
)

from lss_pipeline.assets.sources import LABEL_FILES_KEY, label_files
from lss_pipeline.automation import automation_sensor, label_observation_condition
from lss_pipeline.core.constants import TRAIN_CSV
from lss_pipeline.core.paths import DAGSTER_YAML, DEPLOY_DAGSTER_YAML
from lss_pipeline.core.settings import Settings
from lss_pipeline.definitions import build_definitions
from lss_pipeline.resources import LssSettings
from lss_pipeline.sensors import label_files_sensor
from lss_pipeline_tests.automation_harness import (
    AUTOMATION_TICK,
    Partition,
    add_dynamic_partitions,
    downstream_of_labels,
    every_partition,
    materializations,
    stand_ins,
    toposorted,
)
from lss_pipeline_tests.conftest import write_label_files

pytestmark = [
    # Dagster's own test helper selects source assets through a parameter marked beta.
    pytest.mark.filterwarnings("ignore:Parameter `include_sources`:dagster.BetaWarning"),
    # The stand-ins copy the real checks' partitioning, a preview feature the real checks use.
    pytest.mark.filterwarnings(
        "ignore:Specifying a partitions_def on an AssetCheckSpec:dagster.PreviewWarning"
    ),
]

WEEKLY = "0 3 * * 1"
REPO = Path(__file__).resolve().parent.parent


def next_monday_3am() -> datetime.datetime:
    """The first tick of WEEKLY at least two days from now (time only moves forward in a test)."""
    day = datetime.datetime.now(datetime.UTC).replace(hour=3, minute=0, second=0, microsecond=0)
    day += datetime.timedelta(days=2)
    return day + datetime.timedelta(days=(7 - day.weekday()) % 7)


@dataclass
class Daemon:
    """The automation sensor's loop: evaluate, then carry out what was requested, in order."""

    defs: Definitions
    settings: Settings
    instance: DagsterInstance
    last: EvaluateAutomationConditionsResult | None = None  # its cursor carries from tick to tick
    requested: list[list[Partition]] = field(default_factory=list)

    def observe_label_files(self) -> None:
        resources = {
            "settings": LssSettings(data_dir=str(self.settings.data_dir), raw_dir=str(self.settings.raw_dir))
        }
        result = materialize(
            [label_files], selection=[LABEL_FILES_KEY], instance=self.instance, resources=resources
        )
        assert result.success

    def record(self, partitions: list[Partition]) -> None:
        """One run per asset partition (the backfill of a tick runs them in dependency order)."""
        assets = stand_ins(self.defs)
        for name, partition in partitions:
            if name == LABEL_FILES_KEY.to_user_string():
                self.observe_label_files()
                continue
            materialize(assets, selection=[name], partition_key=partition, instance=self.instance)

    def tick(self, when: datetime.datetime | None = None) -> list[Partition]:
        result = evaluate_automation_conditions(
            defs=self.defs,
            instance=self.instance,
            cursor=self.last.cursor if self.last else None,
            evaluation_time=when,
        )
        self.last = result
        keys = {
            key
            for key in self.defs.resolve_asset_graph().get_all_asset_keys()
            if result.get_num_requested(key)
        }
        partitions = [
            (key.to_user_string(), None if p is None else str(p))
            for key in toposorted(self.defs, keys)
            for p in sorted(result.get_requested_partitions(key), key=str)
        ]
        self.requested.append(partitions)
        self.record(partitions)
        return partitions

    def settle(self, when: datetime.datetime | None = None, max_ticks: int = 12) -> list[Partition]:
        """Tick until two ticks in a row request nothing; every partition requested on the way."""
        start, quiet = len(self.requested), 0
        for _ in range(max_ticks):
            quiet = quiet + 1 if not self.tick(when) else 0
            if quiet == 2:
                return [p for tick in self.requested[start:] for p in tick]
        raise AssertionError(f"still requesting after {max_ticks} ticks: {self.requested[start:]}")


@pytest.fixture
def settings(watched_raw_dir: Path, tmp_path: Path) -> Settings:
    write_label_files(watched_raw_dir)
    return Settings(data_dir=tmp_path / "data", raw_dir=watched_raw_dir)


@pytest.fixture
def instance():
    # In memory: a run takes milliseconds here, against a fifth of a second on disk.
    with DagsterInstance.ephemeral() as inst:
        yield inst


def built_daemon(
    settings: Settings, instance, defs: Definitions | None = None, when: datetime.datetime | None = None
) -> Daemon:
    """State after `lss-pipeline demo`: label files observed, every partition built, first tick done."""
    defs = defs or build_definitions(settings)
    daemon = Daemon(defs=defs, settings=settings, instance=instance)
    add_dynamic_partitions(defs, instance, ["test_study_1", "test_study_2"])
    daemon.observe_label_files()
    daemon.record(every_partition(defs, downstream_of_labels(defs), instance))
    assert daemon.settle(when) == []
    return daemon


def test_new_label_files_rebuild_every_downstream_partition_exactly_once(settings, instance):
    daemon = built_daemon(settings, instance)
    write_label_files(settings.raw_dir, severity="Severe")  # a label changed
    daemon.observe_label_files()

    requested = daemon.settle()

    expected = every_partition(daemon.defs, downstream_of_labels(daemon.defs), daemon.instance)
    counts = Counter(requested)
    assert sorted(counts) == sorted(expected)
    assert set(counts.values()) == {1}, {p: n for p, n in counts.items() if n != 1}
    assert ("trained_model", "swin|sbs") in counts and ("level_crops", "nfs") in counts
    # The labels first; the report only once every model is trained.
    ticks = [tick for tick in daemon.requested if tick]
    tick_of = {partition: number for number, tick in enumerate(ticks) for partition in tick}
    assert tick_of[("labels", None)] == 0
    assert tick_of[("evaluation_report", None)] > max(
        n for (name, _), n in tick_of.items() if name == "trained_model"
    )


def test_the_same_label_files_observed_again_rebuild_nothing(settings, instance):
    daemon = built_daemon(settings, instance)
    # Rewritten with the same content (new mtime), then observed twice.
    write_label_files(settings.raw_dir)
    daemon.observe_label_files()
    daemon.observe_label_files()
    assert daemon.settle() == []


def test_each_new_hash_retrains_once_and_going_back_is_a_new_hash(settings, instance):
    daemon = built_daemon(settings, instance)
    trainings = []
    for severity in ("Severe", "Normal/Mild"):  # the second is the first version again
        write_label_files(settings.raw_dir, severity=severity)
        daemon.observe_label_files()
        daemon.observe_label_files()  # a second observation of the same hash changes nothing
        trainings.append(sum(1 for name, _ in daemon.settle() if name == "trained_model"))
    assert trainings == [9, 9]


def test_nothing_is_built_before_the_label_files_were_observed(settings, instance):
    daemon = Daemon(defs=build_definitions(settings), settings=settings, instance=instance)
    assert daemon.settle() == []
    (settings.raw_dir / TRAIN_CSV).unlink()
    assert daemon.settle() == []


def with_code_version(defs: Definitions, name: str, version: str) -> Definitions:
    """The same definitions after an edit that bumped one asset's code version."""
    return Definitions(
        assets=map_asset_specs(
            lambda spec: (
                spec.replace_attributes(code_version=version) if spec.key == AssetKey(name) else spec
            ),
            [assets_def for assets_def in defs.assets or [] if isinstance(assets_def, AssetsDefinition)],
        ),
        asset_checks=defs.asset_checks,
        resources=defs.resources,
    )


def test_a_new_code_version_rebuilds_that_asset_and_what_depends_on_it(settings, instance):
    daemon = built_daemon(settings, instance)
    graph = daemon.defs.resolve_asset_graph()
    assert graph.get(AssetKey("trained_model")).code_version, "trained_model declares a code version"
    daemon.defs = with_code_version(daemon.defs, "trained_model", "edited")

    requested = daemon.settle()

    downstream = AssetSelection.assets("trained_model").downstream().resolve(graph)
    assert sorted(requested) == sorted(every_partition(daemon.defs, downstream, daemon.instance))
    assert Counter(name for name, _ in requested)["trained_model"] == 9
    assert daemon.settle() == []  # once


def test_periodic_retraining_looks_at_new_labels_at_its_cron_tick_only(settings, instance):
    periodic = Settings(data_dir=settings.data_dir, raw_dir=settings.raw_dir, retrain_cron=WEEKLY)
    defs = build_definitions(periodic)
    assert label_files_sensor.name not in {s.name for s in defs.sensors or []}
    monday = next_monday_3am()
    daemon = built_daemon(periodic, instance, defs, when=monday - datetime.timedelta(days=2))

    # Sunday: new labels wait; an edited training step (a release) is acted on at once.
    write_label_files(settings.raw_dir, severity="Severe")
    assert daemon.settle(when=monday - datetime.timedelta(days=1)) == []
    daemon.defs = with_code_version(daemon.defs, "trained_model", "edited")
    sunday = daemon.settle(when=monday - datetime.timedelta(hours=12))
    graph = daemon.defs.resolve_asset_graph()
    after_training = AssetSelection.assets("trained_model").downstream().resolve(graph)
    assert sorted(sunday) == sorted(every_partition(daemon.defs, set(after_training), daemon.instance))
    assert daemon.settle(when=monday - datetime.timedelta(minutes=1)) == []

    # Monday 03:00: the files are looked at; every partition downstream is rebuilt once.
    requested = daemon.settle(when=monday + datetime.timedelta(minutes=1))
    assert requested[0] == ("label_files", None)
    counts = Counter(requested[1:])
    assert sorted(counts) == sorted(
        every_partition(daemon.defs, downstream_of_labels(daemon.defs), daemon.instance)
    )
    assert set(counts.values()) == {1}
    assert daemon.settle(when=monday + datetime.timedelta(hours=1)) == []


def test_the_automation_sensor_runs_by_default_and_orders_work_across_partitionings(settings):
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def(automation_sensor.name)
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    # Requests over several partitionings go out as one backfill, which runs them in dependency
    # order: the crops of a category before the models of that category.
    assert isinstance(sensor, AutomationConditionSensorDefinition) and sensor.emit_backfills
    graph = defs.resolve_asset_graph()
    covered = sensor.asset_selection.resolve(graph)
    assert LABEL_FILES_KEY in covered and downstream_of_labels(defs) <= covered
    assert label_observation_condition(None) is None
    assert WEEKLY in label_observation_condition(WEEKLY).get_label()


# --- a real daemon ---------------------------------------------------------------------------


class DaemonProcess:
    """`dagster-daemon run` on automation_location.py (the real sensors and conditions, stand-in
    assets) against the instance config `make ui` uses; its log is kept for the assertions."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("dagster-daemon")),
                "run",
                "-m",
                "lss_pipeline_tests.automation_location",
            ],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, what: str, count: int = 1, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while self.log().count(what) < count:
            assert self.process.poll() is None, f"the daemon exited:\n{self.log()[-4000:]}"
            assert time.monotonic() < deadline, (
                f"no {what!r} ×{count} after {timeout_s} s:\n{self.log()[-4000:]}"
            )
            time.sleep(2)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self._log.close()


DAGSTER_DAEMON = str(Path(sys.executable).with_name("dagster-daemon"))


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_real_daemon_builds_every_partition_once_per_new_label_files_and_not_again(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_DAGSTER_YAML, home / DAGSTER_YAML)  # the instance config `make ui` uses
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LSS_DATA_DIR": str(tmp_path / "data"),
        "LSS_RAW_DIR": str(raw),
    }
    for name in ("DAGSTER_HOME", "LSS_DATA_DIR", "LSS_RAW_DIR"):
        monkeypatch.setenv(name, env[name])
    defs = build_definitions(Settings.from_env())
    keys = downstream_of_labels(defs)

    daemon = DaemonProcess(env, tmp_path / "daemon.log")
    try:
        # Running, with nothing to do yet: no label files, and the automation has ticked once.
        daemon.wait_for(AUTOMATION_TICK)
        daemon.wait_for("label file(s) missing")

        write_label_files(raw)
        deadline = time.monotonic() + 900
        with DagsterInstance.get() as instance:
            expected = Counter(every_partition(defs, keys, instance))  # no test studies here
            while materializations(instance, keys) != expected:
                assert time.monotonic() < deadline, f"built so far: {materializations(instance, keys)}"
                assert not instance.get_run_records(filters=RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
                time.sleep(5)

            # Saved again unchanged; two more automation ticks and a sensor tick later, nothing more ran.
            write_label_files(raw)
            ticks = daemon.log().count(AUTOMATION_TICK)
            daemon.wait_for(AUTOMATION_TICK, count=ticks + 2)
            daemon.wait_for("label files unchanged")
            assert materializations(instance, keys) == expected
            assert len(instance.fetch_observations(LABEL_FILES_KEY, limit=10).records) == 1
            assert not instance.get_run_records(filters=RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
    finally:
        daemon.stop()
