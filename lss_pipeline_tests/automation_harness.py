"""The real code location with stand-ins for its assets, for automation tests.

A stand-in has the key, deps, partitions, code version, automation condition and checks of the
real asset, and does nothing: a run of it puts the same events in the instance as a run of the
real asset (a materialization, then the asset's checks) in milliseconds. `label_files` keeps its
real observe function, so its data version is the real content hash.
"""

from collections import Counter

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    DagsterInstance,
    Definitions,
    DynamicPartitionsDefinition,
    MaterializeResult,
    multi_asset,
    partition_loading_context,
)

from lss_pipeline.assets.sources import LABEL_FILES_KEY
from lss_pipeline.automation import automation_sensor, automation_sensor_every
from lss_pipeline.sensors import label_files_sensor, label_files_sensor_every

Partition = tuple[str, str | None]
# What a real dagster-daemon logs after each evaluation of the automation sensor.
AUTOMATION_TICK = "Finished auto-materialization tick for automation"


def materializations(instance: DagsterInstance, keys: set[AssetKey]) -> Counter:
    """How many times each (asset, partition) of ``keys`` was materialized in ``instance``."""
    counts: Counter = Counter()
    for key in keys:
        for record in instance.fetch_materializations(key, limit=1000).records:
            counts[(key.to_user_string(), record.partition_key)] += 1
    return counts


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


def every_partition(defs: Definitions, keys: set[AssetKey], instance: DagsterInstance) -> list[Partition]:
    """(asset, partition) of every partition of ``keys``, parents first; dynamic ones from ``instance``."""
    graph = defs.resolve_asset_graph()
    out: list[Partition] = []
    with partition_loading_context(dynamic_partitions_store=instance):
        for key in toposorted(defs, keys):
            partitions_def = graph.get(key).partitions_def
            names = partitions_def.get_partition_keys() if partitions_def else [None]
            out += [(key.to_user_string(), name) for name in names]
    return out


def add_dynamic_partitions(defs: Definitions, instance: DagsterInstance, names: list[str]) -> None:
    """Give every dynamic partitioning of ``defs`` these partitions (say, two test studies)."""
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        partitions_def = graph.get(key).partitions_def
        if isinstance(partitions_def, DynamicPartitionsDefinition) and partitions_def.name:
            instance.add_dynamic_partitions(partitions_def.name, names)


def downstream_of_labels(defs: Definitions) -> set[AssetKey]:
    graph = defs.resolve_asset_graph()
    return set(AssetSelection.assets(LABEL_FILES_KEY).downstream(include_self=False).resolve(graph))


def stand_in(spec: AssetSpec, checks: list[AssetCheckSpec]) -> AssetsDefinition:
    @multi_asset(name=f"stand_in_{spec.key.to_python_identifier()}", specs=[spec], check_specs=checks)
    def _run(context: AssetExecutionContext):
        yield MaterializeResult(asset_key=spec.key)
        for check in checks:
            yield AssetCheckResult(asset_key=spec.key, check_name=check.name, passed=True)

    return _run


def stand_ins(defs: Definitions) -> list[AssetsDefinition]:
    """A stand-in for every materializable asset of ``defs``."""
    graph = defs.resolve_asset_graph()
    out = []
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
            out.append(stand_in(spec, checks))
    return out


# How often a real daemon evaluates the label-file and automation sensors in tests: the product's
# 60 s and 30 s made those tests wait minutes on ticks; what they check does not depend on it.
DAEMON_TEST_INTERVAL_SECONDS = 5


def stand_in_definitions(defs: Definitions) -> Definitions:
    """``defs`` with stand-ins for its assets, the sensors of the automation (evaluated every
    ``DAEMON_TEST_INTERVAL_SECONDS``), the resources."""
    names = {s.name for s in defs.sensors or []}
    fast = {
        automation_sensor.name: automation_sensor_every(DAEMON_TEST_INTERVAL_SECONDS),
        label_files_sensor.name: label_files_sensor_every(DAEMON_TEST_INTERVAL_SECONDS),
    }
    observable = [
        assets_def
        for assets_def in defs.assets or []
        if isinstance(assets_def, AssetsDefinition) and not assets_def.is_materializable
    ]
    return Definitions(
        assets=[*observable, *stand_ins(defs)],
        # Sensors that target a real asset would clash with its stand-in.
        sensors=[sensor for name, sensor in fast.items() if name in names],
        resources=defs.resources,
    )
