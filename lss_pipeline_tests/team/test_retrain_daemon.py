"""Retraining on new labels on the PostgreSQL instance survives a crash of the daemon in the middle:
afterwards every partition below the label files was rebuilt exactly once (none twice, none lost).

The daemon is a real `dagster-daemon` on the real sensors and automation conditions, with the
assets replaced by stand-ins that record the same events in milliseconds
(lss_pipeline_tests/automation_location.py); its cursors, the backfill and the runs live in
PostgreSQL, which is what a restart has to find again.
"""

import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter, materialize

from lss_pipeline.assets.sources import LABEL_FILES_KEY, label_files
from lss_pipeline.core.settings import Settings
from lss_pipeline.definitions import build_definitions
from lss_pipeline.resources import LssSettings
from lss_pipeline_tests.automation_harness import (
    AUTOMATION_TICK,
    downstream_of_labels,
    every_partition,
    materializations,
    stand_ins,
)
from lss_pipeline_tests.conftest import write_label_files

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(900),
    # The stand-ins copy the real checks' partitioning, a preview feature the real checks use.
    pytest.mark.filterwarnings(
        "ignore:Specifying a partitions_def on an AssetCheckSpec:dagster.PreviewWarning"
    ),
]


def start_daemon(site, name: str):
    daemon = site.start(
        name,
        [
            str(Path(sys.executable).with_name("dagster-daemon")),
            "run",
            "-m",
            "lss_pipeline_tests.automation_location",
        ],
    )
    return daemon


def wait_for_log(process, what: str, count: int = 1, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while process.log_tail(10**7).count(what) < count:
        assert process.popen.poll() is None, f"{process.name} exited:\n{process.log_tail()}"
        assert time.monotonic() < deadline, (
            f"no {what!r} x{count} in {timeout_s:.0f} s:\n{process.log_tail()}"
        )
        time.sleep(1)


def test_retraining_on_new_labels_survives_a_daemon_crash(team_site):
    site = team_site
    settings = site.settings
    write_label_files(settings.raw_dir)
    site.init_schemas()
    defs = build_definitions(Settings.from_env())
    keys = downstream_of_labels(defs)
    assets = stand_ins(defs)

    with DagsterInstance.get() as instance:
        # Built once (what `lss-pipeline demo` leaves): label files observed, every partition materialized.
        resources = {"settings": LssSettings(data_dir=str(site.data_dir), raw_dir=str(settings.raw_dir))}
        assert materialize(
            [label_files], selection=[LABEL_FILES_KEY], instance=instance, resources=resources
        ).success
        partitions = every_partition(defs, keys, instance)
        for name, partition in partitions:
            materialize(assets, selection=[name], partition_key=partition, instance=instance)
        once = Counter(partitions)
        assert materializations(instance, keys) == once

        # New labels, then the daemon (its label sensor looks at once; its next look is a minute away).
        write_label_files(settings.raw_dir, severity="Moderate")
        first = start_daemon(site, "daemon-1")
        deadline = time.monotonic() + 400
        # Wait until the retraining's backfill has built its first wave (crops of a category).
        while not any(materializations(instance, keys)[p] == 2 for p in partitions if p[0] == "level_crops"):
            assert time.monotonic() < deadline, f"retraining did not start:\n{first.log_tail()}"
            assert first.popen.poll() is None, first.log_tail()
            time.sleep(0.2)
        # A crash in the middle: the daemon alone (its runs, like pods, carry on).
        os.kill(first.popen.pid, signal.SIGKILL)
        first.popen.wait(timeout=30)
        at_crash = materializations(instance, keys)
        assert at_crash != Counter({p: 2 for p in partitions}), "retraining finished before the crash"

        second = start_daemon(site, "daemon-2")
        twice = Counter({p: 2 for p in partitions})
        deadline = time.monotonic() + 600
        while materializations(instance, keys) != twice:
            counts = materializations(instance, keys)
            assert not [p for p in partitions if counts[p] > 2], f"built more than once: {counts}"
            assert time.monotonic() < deadline, (
                f"after the restart, built so far: {counts}\n{second.log_tail()}"
            )
            assert second.popen.poll() is None, second.log_tail()
            time.sleep(2)

        # An automation tick later, nothing more was requested.
        ticks = second.log_tail(10**7).count(AUTOMATION_TICK)
        wait_for_log(second, AUTOMATION_TICK, count=ticks + 1)
        assert materializations(instance, keys) == twice
        assert len(instance.fetch_observations(LABEL_FILES_KEY, limit=10).records) == 2  # one per hash
        failed = instance.get_run_records(filters=RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
        assert not failed, [r.dagster_run.run_id for r in failed]
