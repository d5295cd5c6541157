"""Every connection to the team's databases dropped in the middle of a training (what a PostgreSQL
restart does to its clients): the run finishes or fails saying why, and nothing recorded is lost."""

import time

import pytest
from dagster import DagsterInstance, DagsterRunStatus

from lss_pipeline.core.team.postgres import terminate_connections
from lss_pipeline_tests.team.site import QUICK_TRAINING

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DROPS = 3
CONNECTION_WORDS = ("connection", "terminat", "server closed", "OperationalError")


def wait_for(predicate, timeout_s: float, what: str, process) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert process.popen.poll() is None, f"the run ended before {what}:\n{process.log_tail()}"
        assert time.monotonic() < deadline, f"no {what} after {timeout_s:.0f} s:\n{process.log_tail()}"
        time.sleep(0.3)


def test_run_survives_or_names_dropped_connections_and_keeps_what_was_recorded(
    site_with_crops, mlflow_server
):
    site = site_with_crops
    dagster_db, mlflow_db = site.config.dagster_db, site.config.mlflow_db
    run = site.launch(
        "train", ["trained_model"], "resnet|scs", {"trained_model": {**QUICK_TRAINING, "epochs": 4}}
    )

    def first_epoch_logged() -> bool:
        return site.query(mlflow_db, "SELECT count(*) FROM metrics WHERE key = 'val_loss'")[0][0] > 0

    wait_for(first_epoch_logged, 300, "epoch logged to MLflow", run)
    events_before = {row[0] for row in site.query(dagster_db, "SELECT id FROM event_logs")}
    metrics_before = set(site.query(mlflow_db, "SELECT run_uuid, key, step, value FROM metrics"))
    runs_before = set(site.query(mlflow_db, "SELECT run_uuid FROM runs"))

    dropped = []
    for _ in range(DROPS):
        (status,) = site.query(dagster_db, "SELECT status FROM runs")[0]
        if status != "STARTED":
            break
        dropped.append(terminate_connections(site.config, [dagster_db, mlflow_db]))
        time.sleep(1.5)
    assert dropped and sum(dropped) > 0, f"nothing was connected to drop ({dropped}); the run ended first"

    run.wait(600)
    with DagsterInstance.get() as instance:
        (record,) = instance.get_run_records()
        status = record.dagster_run.status
        assert status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE), status
        if status == DagsterRunStatus.FAILURE:
            messages = " ".join(
                e.dagster_event.message or ""
                for e in instance.all_logs(record.dagster_run.run_id)
                if e.dagster_event
            )
            assert any(word in messages for word in CONNECTION_WORDS), messages[-2000:]
        if status == DagsterRunStatus.SUCCESS:
            # A request retried after the drop did not record its work twice.
            assert site.query(mlflow_db, "SELECT name, version FROM model_versions") == [("lss-scs", 1)]
            assert site.query(mlflow_db, "SELECT count(*) FROM logged_models") == [(1,)]
            statuses = site.query(mlflow_db, "SELECT DISTINCT status FROM runs")
            assert statuses == [("FINISHED",)], statuses
    events_after = {row[0] for row in site.query(dagster_db, "SELECT id FROM event_logs")}
    assert events_before <= events_after
    assert metrics_before <= set(site.query(mlflow_db, "SELECT run_uuid, key, step, value FROM metrics"))
    assert runs_before <= set(site.query(mlflow_db, "SELECT run_uuid FROM runs"))
    print(f"dropped {dropped} connections; run {status.value}")
