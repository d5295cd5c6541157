"""`lss-pipeline team migrate-mlflow`: a lab's sqlite MLflow history carried to the server, ids kept."""

import shutil

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from lss_pipeline.cli import main
from lss_pipeline.core.train import tracking

# Each runs Dagster's and MLflow's migration tools (seconds apiece): after the fast tests.
pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def make_lab_store(site) -> dict:
    """The embedded store after two trainings of lss-scs: runs, metric histories, versions, champion."""
    paths = site.paths
    tracking.configure_mlflow(f"sqlite:///{paths.mlflow_db}", paths.mlflow_artifacts_dir)
    runs = {}
    for arch in ("resnet", "convnext"):
        with tracking.start_run(
            "lss-scs", run_name=arch, tags={"dagster_partition_key": f"{arch}|scs"}
        ) as run:
            tracking.log_params({"arch": arch, "epochs": 3})
            for epoch in range(3):
                tracking.log_metrics(
                    {"val_macro_recall": 0.5 + epoch / 10, "val_loss": 1.0 - epoch / 10}, epoch
                )
            version = tracking.log_and_register_model(
                torch.nn.Linear(4, 3), np.zeros((1, 4), np.float32), "lss-scs", version_tags={"arch": arch}
            )
            runs[arch] = (run.run_id, version)
    MlflowClient().set_registered_model_alias("lss-scs", "champion", str(runs["convnext"][1]))
    with tracking.start_run("lss-evaluation", run_name="report") as report:
        tracking.log_metrics({"kaggle_score": 0.9})
    runs["report"] = (report.run_id, None)
    return runs


def point_mlflow_at(url: str) -> MlflowClient:
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    return MlflowClient(url, url)


def test_history_moves_with_its_ids_and_artifacts_and_a_second_run_adds_nothing(team_site, capsys):
    runs = make_lab_store(team_site)
    old_artifacts = team_site.paths.mlflow_artifacts_dir
    shared = team_site.root / "shared" / "artifacts"

    assert main(["team", "migrate-mlflow", "--artifacts-to", str(shared)]) == 0
    out = capsys.readouterr().out
    assert "3 runs" in out and "2 model versions" in out and "1 aliases" in out, out
    shutil.rmtree(old_artifacts)  # the lab's folder is gone: everything must come from the shared one

    client = point_mlflow_at(team_site.config.mlflow_url)
    for arch in ("resnet", "convnext"):
        run_id, version = runs[arch]
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.params["arch"] == arch
        assert run.data.tags["dagster_partition_key"] == f"{arch}|scs"
        assert [m.step for m in client.get_metric_history(run_id, "val_macro_recall")] == [0, 1, 2]
        assert run.info.artifact_uri.startswith(shared.resolve().as_uri())
        model_version = client.get_model_version("lss-scs", str(version))
        assert model_version.run_id == run_id and model_version.tags["arch"] == arch
    champion = client.get_model_version_by_alias("lss-scs", "champion")
    assert str(champion.version) == str(runs["convnext"][1])
    model = mlflow.pytorch.load_model("models:/lss-scs@champion")
    assert model(torch.zeros(2, 4)).shape == (2, 3)
    assert client.get_run(runs["report"][0]).data.metrics["kaggle_score"] == pytest.approx(0.9)

    # New work on the server continues after the copied ids.
    new_experiment = client.create_experiment("lss-new")
    assert int(new_experiment) > max(
        int(e.experiment_id) for e in client.search_experiments() if e.name != "lss-new"
    )
    with mlflow.start_run(experiment_id=new_experiment):
        mlflow.log_metric("x", 1.0)

    assert main(["team", "migrate-mlflow", "--artifacts-to", str(shared)]) == 0
    assert "copied 0 experiments, 0 runs, 0 metric points" in capsys.readouterr().out
    assert len(client.search_model_versions("name='lss-scs'")) == 2


def test_a_server_with_another_history_under_the_same_name_is_left_untouched(team_site, capsys):
    client = point_mlflow_at(team_site.config.mlflow_url)
    client.create_experiment("someone-else")
    client.create_experiment("lss-scs")  # id 2 on the server; id 1 in the lab's store
    runs_before = team_site.query(team_site.config.mlflow_db, "SELECT count(*) FROM runs")
    make_lab_store(team_site)

    assert main(["team", "migrate-mlflow"]) == 1
    err = capsys.readouterr().err
    assert "new, empty MLflow database" in err, err
    assert team_site.query(team_site.config.mlflow_db, "SELECT count(*) FROM runs") == runs_before


def test_no_lab_store_is_named(team_site, capsys):
    assert main(["team", "migrate-mlflow"]) == 1
    assert "no MLflow store at" in capsys.readouterr().err
