"""Plain MLflow helpers: experiment set-up, a run that ends FAILED on error, model registry.

The Dagster resource wraps these; a notebook can call them directly.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import mlflow
import mlflow.pytorch
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

# MLflow truncates nothing for us: it rejects param values over this length.
_MAX_PARAM_CHARS = 6000


@dataclass(frozen=True)
class MlflowConfig:
    tracking_uri: str
    artifacts_dir: Path


_config: MlflowConfig | None = None


def configure_mlflow(tracking_uri: str, artifacts_dir: str | os.PathLike) -> MlflowConfig:
    """Point MLflow at ``tracking_uri``; new experiments keep artifacts under ``artifacts_dir``."""
    global _config
    artifacts = Path(artifacts_dir).expanduser().resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    _config = MlflowConfig(tracking_uri=tracking_uri, artifacts_dir=artifacts)
    return _config


def ensure_experiment(name: str, artifacts_dir: str | os.PathLike | None = None) -> str:
    """Experiment id of ``name``, created with artifact location ``artifacts_dir/name`` if new."""
    client = MlflowClient()
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        if existing.lifecycle_stage == "deleted":
            client.restore_experiment(existing.experiment_id)
        return existing.experiment_id
    base = Path(artifacts_dir) if artifacts_dir is not None else (_config.artifacts_dir if _config else None)
    location = (base / name).resolve().as_uri() if base is not None else None
    return client.create_experiment(name, artifact_location=location)


class MlflowTracker:
    """The ``tracker`` the training loop takes: log_params / log_metrics into one run."""

    def __init__(self, run_id: str):
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        log_params(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        log_metrics(metrics, step)


def log_params(params: Mapping[str, Any]) -> None:
    mlflow.log_params({k: _param_value(v) for k, v in params.items()})


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _MAX_PARAM_CHARS else text[: _MAX_PARAM_CHARS - 3] + "..."


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    # MLflow stores NaN but not None; skip what is not a finite-able number.
    clean = {k: float(v) for k, v in metrics.items() if v is not None and not (isinstance(v, float) and math.isinf(v))}
    if clean:
        mlflow.log_metrics(clean, step=step)


@contextlib.contextmanager
def start_run(
    experiment: str, run_name: str | None = None, tags: Mapping[str, str] | None = None
) -> Iterator[MlflowTracker]:
    """A run in ``experiment`` (created if needed); FINISHED on success, FAILED on any error."""
    experiment_id = ensure_experiment(experiment)
    run = mlflow.start_run(
        experiment_id=experiment_id, run_name=run_name, tags={k: str(v) for k, v in (tags or {}).items()}
    )
    try:
        yield MlflowTracker(run.info.run_id)
    except BaseException:
        mlflow.end_run(status=RunStatus.to_string(RunStatus.FAILED))
        raise
    else:
        mlflow.end_run(status=RunStatus.to_string(RunStatus.FINISHED))


def log_and_register_model(
    model: Any,
    input_example: Any,
    registered_name: str,
    *,
    artifact_name: str = "model",
    pip_requirements: list[str] | None = None,
) -> int:
    """Log a torch model into the active run, register it; returns the new model version.

    Requirements are given, not inferred: MLflow's inference re-imports the model in a
    subprocess, seconds per call for a list we know.
    """
    if mlflow.active_run() is None:
        raise RuntimeError("log_and_register_model needs an active MLflow run (use start_run)")
    if pip_requirements is None:
        import timm
        import torch

        pip_requirements = [f"torch=={torch.__version__.split('+')[0]}", f"timm=={timm.__version__}"]
    info = mlflow.pytorch.log_model(
        model,
        name=artifact_name,
        input_example=input_example,
        registered_model_name=registered_name,
        pip_requirements=pip_requirements,
    )
    version = getattr(info, "registered_model_version", None)
    if version is None:
        raise RuntimeError(f"MLflow did not register {registered_name!r}")
    return int(version)


def run_url(run_id: str, experiment_id: str, ui_base_url: str = "http://localhost:5000") -> str:
    """Link to a run in the MLflow UI (the UI serves the same tracking store)."""
    return f"{ui_base_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
