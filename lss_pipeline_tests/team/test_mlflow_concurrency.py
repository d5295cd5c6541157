"""Two trainings logging to the MLflow server (PostgreSQL store) at the same moment: afterwards every
registry version belongs to exactly one of them and the `champion` alias points where the report says."""

import json

import mlflow
import pytest
from dagster import AssetSelection, DagsterInstance, materialize
from mlflow.tracking import MlflowClient

from lss_pipeline_tests.team.site import QUICK_TRAINING, step_intervals

pytestmark = pytest.mark.postgres

ARCHS = ("resnet", "convnext")


@pytest.mark.slow
def test_two_trainings_at_once_leave_a_consistent_registry(site_with_crops, mlflow_server):
    site = site_with_crops
    site.dagster_cli("instance", "concurrency", "set", "gpu", "2")  # both may hold the accelerator
    runs = [
        site.launch(f"train-{arch}", ["trained_model"], f"{arch}|scs", {"trained_model": QUICK_TRAINING})
        for arch in ARCHS
    ]
    for run in runs:
        assert run.wait(600) == 0, run.log_tail()
    run_ids = [run.result()["run_id"] for run in runs]
    with DagsterInstance.get() as instance:
        (start_a, end_a, _), (start_b, end_b, _) = step_intervals(instance, run_ids, "trained_model")
    assert start_b < end_a, "the two trainings did not run at the same time"

    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_registry_uri(mlflow_server)
    client = MlflowClient()
    partition_runs = {
        r.data.tags["arch"]: r
        for r in mlflow.search_runs(experiment_names=["lss-scs"], output_format="list")
        if "mlflow.parentRunId" not in r.data.tags
    }
    assert sorted(partition_runs) == sorted(ARCHS)
    assert all(r.info.status == "FINISHED" for r in partition_runs.values())
    versions = client.search_model_versions("name='lss-scs'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    for version in versions:
        arch = version.tags["arch"]
        assert version.run_id == partition_runs[arch].info.run_id, (arch, version.version)
        assert version.status == "READY"

    # The report, a third process' view, moves the alias; the registry and champions.json agree.
    from lss_pipeline.definitions import ASSET_CHECKS, ASSETS
    from lss_pipeline.resources import resources_for

    with DagsterInstance.get() as instance:
        report = materialize(
            [*ASSETS, *ASSET_CHECKS],
            selection=AssetSelection.assets("evaluation_report"),
            instance=instance,
            resources=resources_for("team"),
        )
    assert report.success
    champion = json.loads(site.paths.champions_json.read_text())["scs"]
    alias = client.get_model_version_by_alias("lss-scs", "champion")
    assert str(alias.version) == champion["version"] and alias.tags["arch"] == champion["arch"]
    assert len(client.search_model_versions("name='lss-scs'")) == 2  # the report registers nothing


def test_an_experiment_created_by_another_training_in_between_is_used(team_site, monkeypatch):
    """The race the two trainings above can lose: both look the experiment up, both create it."""
    from lss_pipeline.core.train import tracking

    url = team_site.config.mlflow_url
    tracking.configure_mlflow(url, team_site.paths.mlflow_artifacts_dir)
    client = MlflowClient(url, url)
    theirs = client.create_experiment("lss-scs")
    monkeypatch.setattr(
        MlflowClient, "get_experiment_by_name", _missing_once(MlflowClient.get_experiment_by_name)
    )
    assert tracking.ensure_experiment("lss-scs") == theirs


def _missing_once(lookup):
    calls = []

    def first_lookup_misses(self, name):
        calls.append(name)
        return None if len(calls) == 1 else lookup(self, name)

    return first_lookup_misses
