"""An MLflow store per test, and one torch thread (the test machine is shared)."""

import mlflow
import pytest
import torch

from lss_pipeline.core.train.tracking import configure_mlflow


@pytest.fixture()
def mlflow_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    previous = mlflow.get_tracking_uri()
    config = configure_mlflow(
        f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}", tmp_path / "mlflow" / "artifacts"
    )
    yield config
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # Oversubscribed OpenMP threads make each step 10x slower; one thread is also what the
    # resume tests compare bit for bit.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
