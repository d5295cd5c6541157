"""Several runs at once on the PostgreSQL instance: the `gpu` pool lets one training step at a time
hold the accelerator, read back from the event log that every run wrote."""

import pytest
from dagster import DagsterInstance, RunsFilter

from lss_pipeline_tests.team.site import QUICK_TRAINING, blocked_by_pool, step_intervals

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PARTITIONS = ("resnet|scs", "convnext|scs", "resnet|nfs")


def test_runs_overlap_but_training_steps_never_do(site_with_crops):
    site = site_with_crops
    # The first training is a little longer, so the others are sure to find the slot taken.
    configs = [
        {"trained_model": {**QUICK_TRAINING, "epochs": 2 if i == 0 else 1}} for i in range(len(PARTITIONS))
    ]
    runs = [
        site.launch(f"train-{p.replace('|', '-')}", ["trained_model"], p, config)
        for p, config in zip(PARTITIONS, configs)
    ]
    for run in runs:
        assert run.wait(600) == 0, run.log_tail()
    run_ids = [run.result()["run_id"] for run in runs]

    with DagsterInstance.get() as instance:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        records = instance.get_run_records(RunsFilter(run_ids=run_ids))
        assert len(records) == len(PARTITIONS) and all(r.dagster_run.is_success for r in records)
        intervals = step_intervals(instance, run_ids, "trained_model")
        for (_, end, first), (start, _, second) in zip(intervals, intervals[1:]):
            assert start >= end, f"training steps of runs {first} and {second} overlapped"
        waited = [run_id for run_id in run_ids if blocked_by_pool(instance, run_id, "gpu")]
        assert waited, "no run waited for the gpu pool: the runs did not contend, so nothing was shown"
        # A limit of 1 (as `team setup` leaves it) held them apart, and no slot outlived its run.
        gpu = instance.event_log_storage.get_concurrency_info("gpu")
        assert gpu.limit == 1 and gpu.active_slot_count == 0 and gpu.pending_step_count == 0
