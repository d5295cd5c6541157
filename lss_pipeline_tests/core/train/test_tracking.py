"""MLflow helpers: run status on success / error / interrupt, resume in place, registry round trip."""

import os
import subprocess
import sys
import textwrap

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from lss_pipeline.core.train import ensemble as ensemble_module
from lss_pipeline.core.train import models as models_module
from lss_pipeline.core.train.ensemble import FoldEnsemble
from lss_pipeline.core.train.models import create_model
from lss_pipeline.core.train.tracking import (
    child_run_ids,
    last_step,
    log_and_register_model,
    mark_killed,
    run_status,
    start_run,
)


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
    example = np.random.default_rng(0).random((2, 5, 16, 16), dtype=np.float32)
    with start_run("lss-scs", run_name="convnext-scs", tags={"dagster/partition": "convnext|scs"}) as tracker:
        tracker.log_params({"arch": "convnext", "lr": 0.001})
        tracker.log_metrics({"val_macro_recall": 0.5}, step=0)
        tracker.log_metrics({"val_macro_recall": 0.75}, step=1)
        version = log_and_register_model(model, example, "lss-scs", version_tags={"arch": "convnext"})
    assert version == 1

    runs = mlflow.search_runs(experiment_names=["lss-scs"])
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["run_id"] == tracker.run_id and run["status"] == "FINISHED"
    assert run["params.arch"] == "convnext" and run["metrics.val_macro_recall"] == 0.75
    assert run["tags.dagster/partition"] == "convnext|scs"
    experiment = mlflow.get_experiment_by_name("lss-scs")
    assert experiment.artifact_location.startswith(mlflow_store.artifacts_dir.as_uri())
    history = MlflowClient().get_metric_history(tracker.run_id, "val_macro_recall")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.75)]
    assert last_step(tracker.run_id, "val_macro_recall") == 1 and last_step(tracker.run_id, "absent") == -1
    assert MlflowClient().get_model_version("lss-scs", "1").tags["arch"] == "convnext"

    loaded = mlflow.pytorch.load_model("models:/lss-scs/1")
    with torch.no_grad():
        torch.testing.assert_close(loaded(torch.from_numpy(example)), model(torch.from_numpy(example)))


def test_registered_ensemble_loads_by_alias_as_a_module_taking_any_batch(mlflow_store):
    """Issue 12: the registered model takes any batch size and `.eval()` works (no exported graph)."""
    torch.manual_seed(0)
    folds = [create_model("test_convnext", in_chans=5, num_classes=3).eval() for _ in range(2)]
    ensemble = FoldEnsemble(folds).eval()
    example = np.zeros((2, 5, 32, 32), np.float32)
    with start_run("lss-scs", run_name="ensemble"):
        version = log_and_register_model(
            ensemble, example, "lss-scs", by_value_modules=[models_module, ensemble_module]
        )
    MlflowClient().set_registered_model_alias("lss-scs", "champion", str(version))

    loaded = mlflow.pytorch.load_model("models:/lss-scs@champion")
    assert isinstance(loaded, nn.Module)
    loaded.eval()  # an exported program's module raises NotImplementedError here
    crops = torch.rand(4, 5, 32, 32)
    with torch.no_grad():
        out = loaded(crops)
        assert out.shape == (4, 3)
        assert loaded(crops[:1]).shape == (1, 3) and loaded(torch.rand(7, 5, 32, 32)).shape == (7, 3)
        expected = torch.stack([torch.softmax(m(crops), 1) for m in folds]).mean(0)
        torch.testing.assert_close(torch.softmax(out, 1), expected, rtol=1e-5, atol=1e-6)


def test_registered_model_loads_without_the_project_installed(mlflow_store, tmp_path):
    """Our wrapper classes are pickled by value: a later refactoring cannot break old versions."""
    torch.manual_seed(0)
    ensemble = FoldEnsemble([create_model("test_resnet", in_chans=5, num_classes=3)]).eval()
    with start_run("lss-nfs", run_name="ensemble"):
        version = log_and_register_model(
            ensemble,
            np.zeros((2, 5, 32, 32), np.float32),
            "lss-nfs",
            by_value_modules=[models_module, ensemble_module],
        )
    crops = torch.rand(3, 5, 32, 32)
    torch.save(crops, tmp_path / "crops.pt")
    with torch.no_grad():
        torch.save(ensemble(crops), tmp_path / "expected.pt")
    script = textwrap.dedent(f"""
        import sys
        sys.modules["lss_pipeline"] = None  # any import of the project now fails
        import mlflow, torch
        mlflow.set_tracking_uri({mlflow.get_tracking_uri()!r})
        model = mlflow.pytorch.load_model("models:/lss-nfs/{version}").eval()
        with torch.no_grad():
            out = model(torch.load({str(tmp_path / "crops.pt")!r}))
        torch.testing.assert_close(out, torch.load({str(tmp_path / "expected.pt")!r}))
        print("loaded", type(model).__name__)
    """)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "loaded FoldEnsemble" in done.stdout


def test_failed_run_is_marked_failed_and_an_interrupted_one_killed(mlflow_store):
    with pytest.raises(RuntimeError, match="boom"):
        with start_run("lss-nfs", run_name="resnet-nfs") as tracker:
            tracker.log_params({"arch": "resnet"})
            raise RuntimeError("boom")
    assert run_status(tracker.run_id) == "FAILED"
    with pytest.raises(KeyboardInterrupt):
        with start_run("lss-nfs", run_name="resnet-nfs") as interrupted:
            raise KeyboardInterrupt
    assert run_status(interrupted.run_id) == "KILLED"
    assert mlflow.active_run() is None
    assert run_status("0" * 32) is None


def test_resume_in_place_and_mark_killed(mlflow_store):
    client = MlflowClient()
    experiment_id = client.create_experiment("lss-sbs")
    parent_run = mlflow.start_run(experiment_id=experiment_id, run_name="parent")
    child_run = mlflow.start_run(experiment_id=experiment_id, run_name="fold0", nested=True)
    mlflow.log_metric("val_macro_recall", 0.4, step=0)
    # A killed process ends nothing: both runs stay RUNNING.
    mlflow.end_run("RUNNING")
    mlflow.end_run("RUNNING")
    parent, child = parent_run.info.run_id, child_run.info.run_id
    assert run_status(parent) == "RUNNING" and child_run_ids(parent) == [child]

    with start_run("lss-sbs", run_id=parent, tags={"resumed": "1"}) as resumed_parent:
        with start_run("lss-sbs", run_id=child, nested=True) as resumed_child:
            resumed_child.log_metrics({"val_macro_recall": 0.6}, step=1)
    assert resumed_parent.run_id == parent and resumed_child.run_id == child
    assert run_status(parent) == run_status(child) == "FINISHED"
    assert [m.step for m in client.get_metric_history(child, "val_macro_recall")] == [0, 1]
    assert client.get_run(parent).data.tags["resumed"] == "1"

    stale = mlflow.start_run(experiment_id=experiment_id)
    mlflow.end_run("RUNNING")
    assert mark_killed(stale.info.run_id) and run_status(stale.info.run_id) == "KILLED"
    assert not mark_killed(parent)  # a finished run stays finished


def test_register_needs_an_active_run(mlflow_store):
    with pytest.raises(RuntimeError, match="active MLflow run"):
        log_and_register_model(TinyNet(), np.zeros((1, 5, 8, 8), np.float32), "lss-sbs")
