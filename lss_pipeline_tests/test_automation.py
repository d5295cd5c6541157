"""Retraining by declarative automation, on the real asset graph: new label files rebuild every
partition downstream exactly once; the same files, observed again, rebuild nothing.

The daemon's loop is played here with Dagster's test API (`evaluate_automation_conditions`): each
tick's requests are carried out at once, observations by the real observe function, asset
partitions as recorded materializations (the assets' own work is tested elsewhere).
"""

import datetime
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    AutomationConditionSensorDefinition,
    DagsterInstance,
    DefaultSensorStatus,
    Definitions,
    MaterializeResult,
    evaluate_automation_conditions,
    map_asset_specs,
    materialize,
    multi_asset,
)

from lss_pipeline.assets.sources import LABEL_FILES_KEY, label_files
from lss_pipeline.automation import automation_sensor, label_observation_condition
from lss_pipeline.core.constants import TRAIN_CSV
from lss_pipeline.core.settings import Settings
from lss_pipeline.definitions import build_definitions
from lss_pipeline.resources import LssSettings
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


def next_monday_3am() -> datetime.datetime:
    """The first tick of WEEKLY at least two days from now (time only moves forward in a test)."""
    day = datetime.datetime.now(datetime.UTC).replace(hour=3, minute=0, second=0, microsecond=0)
    day += datetime.timedelta(days=2)
    return day + datetime.timedelta(days=(7 - day.weekday()) % 7)


Partition = tuple[str, str | None]
CheckRun = tuple[str, Partition]  # (check name, the asset partition it checks)


def toposorted(defs: Definitions, keys: set[AssetKey]) -> list[AssetKey]:
    graph = defs.resolve_asset_graph()
    done: list[AssetKey] = []

    def visit(key: AssetKey) -> None:
        if key in done:
            return
        for parent in graph.get(key).parent_keys:
            if parent in keys:
                visit(parent)
        done.append(key)

    for key in sorted(keys):
        visit(key)
    return done


def every_partition(defs: Definitions, keys: set[AssetKey]) -> list[Partition]:
    graph = defs.resolve_asset_graph()
    out: list[Partition] = []
    for key in toposorted(defs, keys):
        partitions_def = graph.get(key).partitions_def
        names = partitions_def.get_partition_keys() if partitions_def else [None]
        out += [(key.to_user_string(), name) for name in names]
    return out


def stand_ins(defs: Definitions, failing_checks: set[CheckRun]) -> list[AssetsDefinition]:
    """One trivial asset per real one: same key, deps, partitions, code version and checks.

    Runs of these put the same events in the instance as runs of the real assets (a
    materialization, then the asset's checks in the same run) in milliseconds.
    """
    graph = defs.resolve_asset_graph()
    stand_ins = []
    for assets_def in defs.assets or []:
        if not isinstance(assets_def, AssetsDefinition) or not assets_def.is_materializable:
            continue
        for spec in assets_def.specs:
            checks = [
                AssetCheckSpec(
                    key.name,
                    asset=key.asset_key,
                    blocking=graph.get(key).blocking,
                    partitions_def=graph.get(key).partitions_def,
                )
                for key in graph.get_check_keys_for_assets({spec.key})
            ]
            stand_ins.append(stand_in(spec, checks, failing_checks))
    return stand_ins


def stand_in(
    spec: AssetSpec, checks: list[AssetCheckSpec], failing: set[tuple[str, Partition]]
) -> AssetsDefinition:
    @multi_asset(name=f"stand_in_{spec.key.to_python_identifier()}", specs=[spec], check_specs=checks)
    def _run(context: AssetExecutionContext):
        partition = context.partition_key if context.has_partition_key else None
        yield MaterializeResult(asset_key=spec.key)
        for check in checks:
            failed = (check.name, (spec.key.to_user_string(), partition)) in failing
            yield AssetCheckResult(asset_key=spec.key, check_name=check.name, passed=not failed)

    return _run


@dataclass
class Daemon:
    """The automation sensor's loop: evaluate, then carry out what was requested, in order."""

    defs: Definitions
    settings: Settings
    instance: DagsterInstance
    cursor: object = None  # the evaluator's cursor, carried from tick to tick
    requested: list[list[Partition]] = field(default_factory=list)
    failing_checks: set[CheckRun] = field(default_factory=set)

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
        assets = stand_ins(self.defs, self.failing_checks)
        for name, partition in partitions:
            if name == LABEL_FILES_KEY.to_user_string():
                self.observe_label_files()
                continue
            materialize(assets, selection=[name], partition_key=partition, instance=self.instance)

    def tick(self, when: datetime.datetime | None = None) -> list[Partition]:
        result = evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, cursor=self.cursor, evaluation_time=when
        )
        self.cursor = result.cursor
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


def downstream_of_labels(defs: Definitions) -> set[AssetKey]:
    graph = defs.resolve_asset_graph()
    return AssetSelection.assets(LABEL_FILES_KEY).downstream(include_self=False).resolve(graph)


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
    daemon.observe_label_files()
    daemon.record(every_partition(defs, downstream_of_labels(defs)))
    assert daemon.settle(when) == []
    return daemon


def test_new_label_files_rebuild_every_downstream_partition_exactly_once(settings, instance):
    daemon = built_daemon(settings, instance)
    write_label_files(settings.raw_dir, severity="Severe")  # a label changed
    daemon.observe_label_files()

    requested = daemon.settle()

    expected = every_partition(daemon.defs, downstream_of_labels(daemon.defs))
    counts = Counter(requested)
    assert sorted(counts) == sorted(expected)
    assert set(counts.values()) == {1}, {p: n for p, n in counts.items() if n != 1}
    assert ("trained_model", "swin|sbs") in counts and ("level_crops", "nfs") in counts
    # The labels are rebuilt in the first tick, the report in the last one that requests anything.
    ticks = [tick for tick in daemon.requested if tick]
    assert ("labels", None) in ticks[-3] and ticks[-1] == [("evaluation_report", None)]


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
            defs.assets or [],
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
    assert sorted(requested) == sorted(every_partition(daemon.defs, downstream))
    assert Counter(name for name, _ in requested)["trained_model"] == 9
    assert daemon.settle() == []  # once


def test_periodic_retraining_looks_at_new_labels_at_its_cron_tick_only(settings, instance):
    periodic = Settings(data_dir=settings.data_dir, raw_dir=settings.raw_dir, retrain_cron=WEEKLY)
    defs = build_definitions(periodic)
    assert [s.name for s in defs.sensors] == [automation_sensor.name]  # no label-file sensor
    monday = next_monday_3am()
    daemon = built_daemon(periodic, instance, defs, when=monday - datetime.timedelta(days=2))

    # Sunday: new labels wait; an edited training step (a release) is acted on at once.
    write_label_files(settings.raw_dir, severity="Severe")
    assert daemon.settle(when=monday - datetime.timedelta(days=1)) == []
    daemon.defs = with_code_version(daemon.defs, "trained_model", "edited")
    sunday = Counter(name for name, _ in daemon.settle(when=monday - datetime.timedelta(hours=12)))
    assert sunday == Counter({"trained_model": 9, "evaluation_report": 1})
    assert daemon.settle(when=monday - datetime.timedelta(minutes=1)) == []

    # Monday 03:00: the files are looked at; every partition downstream is rebuilt once.
    requested = daemon.settle(when=monday + datetime.timedelta(minutes=1))
    assert requested[0] == ("label_files", None)
    counts = Counter(requested[1:])
    assert sorted(counts) == sorted(every_partition(daemon.defs, downstream_of_labels(daemon.defs)))
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
