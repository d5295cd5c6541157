import mlflow
import numpy as np
import pytest
import torch
from torch import nn

from lss_pipeline.core.tracking import configure_mlflow, log_and_register_model, start_run


@pytest.fixture()
def mlflow_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    previous = mlflow.get_tracking_uri()
    config = configure_mlflow(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}", tmp_path / "mlflow" / "artifacts")
    yield config
    mlflow.set_tracking_uri(previous)


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(5, 4, 3)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.conv(x).mean(dim=(2, 3)))


def test_run_logs_params_metrics_and_registers_model(mlflow_store):
    torch.manual_seed(0)
    model = TinyNet().eval()
    example = np.random.default_rng(0).random((1, 5, 16, 16), dtype=np.float32)
    with start_run("lss-scs", run_name="convnext-scs", tags={"dagster/partition": "convnext|scs"}) as tracker:
        tracker.log_params({"arch": "convnext", "lr": 0.001})
        tracker.log_metrics({"val_macro_recall": 0.5}, step=0)
        tracker.log_metrics({"val_macro_recall": 0.75}, step=1)
        version = log_and_register_model(model, example, "lss-scs")
    assert version == 1

    runs = mlflow.search_runs(experiment_names=["lss-scs"])
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["run_id"] == tracker.run_id and run["status"] == "FINISHED"
    assert run["params.arch"] == "convnext" and run["metrics.val_macro_recall"] == 0.75
    assert run["tags.dagster/partition"] == "convnext|scs"
    experiment = mlflow.get_experiment_by_name("lss-scs")
    assert experiment.artifact_location.startswith(mlflow_store.artifacts_dir.as_uri())

    history = mlflow.MlflowClient().get_metric_history(tracker.run_id, "val_macro_recall")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.75)]

    loaded = mlflow.pytorch.load_model("models:/lss-scs/1")
    with torch.no_grad():
        torch.testing.assert_close(loaded(torch.from_numpy(example)), model(torch.from_numpy(example)))


def test_failed_run_is_marked_failed(mlflow_store):
    with pytest.raises(RuntimeError, match="boom"):
        with start_run("lss-nfs", run_name="resnet-nfs") as tracker:
            tracker.log_params({"arch": "resnet"})
            raise RuntimeError("boom")
    runs = mlflow.search_runs(experiment_names=["lss-nfs"])
    assert runs.iloc[0]["status"] == "FAILED"
    assert mlflow.active_run() is None


def test_register_needs_an_active_run(mlflow_store):
    with pytest.raises(RuntimeError, match="active MLflow run"):
        log_and_register_model(TinyNet(), np.zeros((1, 5, 8, 8), np.float32), "lss-sbs")
