"""Plain MLflow helpers: experiment set-up, runs that end with the right status, resume, model registry.

The Dagster resource wraps these; a notebook can call them directly.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import mlflow
import mlflow.pytorch
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
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
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        # Two trainings starting at once on a shared server: the other one created it first.
        created = client.get_experiment_by_name(name)
        if created is None:
            raise
        return created.experiment_id


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
    clean = {
        k: float(v)
        for k, v in metrics.items()
        if v is not None and not (isinstance(v, float) and math.isinf(v))
    }
    if clean:
        mlflow.log_metrics(clean, step=step)


@contextlib.contextmanager
def start_run(
    experiment: str,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    *,
    run_id: str | None = None,
    nested: bool = False,
) -> Iterator[MlflowTracker]:
    """A run in ``experiment`` (created if needed); FINISHED on success, FAILED on an error, KILLED on
    an interrupt (Ctrl-C, a Dagster termination).

    ``run_id`` reopens that run instead (an interrupted training resumed in place); ``nested`` makes the
    run a child of the active one.
    """
    str_tags = {k: str(v) for k, v in (tags or {}).items()}
    if run_id is not None:
        run = mlflow.start_run(run_id=run_id, nested=nested)
        if str_tags:
            mlflow.set_tags(str_tags)
    else:
        experiment_id = ensure_experiment(experiment)
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=str_tags, nested=nested)
    try:
        yield MlflowTracker(run.info.run_id)
    except Exception:
        mlflow.end_run(status=RunStatus.to_string(RunStatus.FAILED))
        raise
    except BaseException:
        mlflow.end_run(status=RunStatus.to_string(RunStatus.KILLED))
        raise
    else:
        mlflow.end_run(status=RunStatus.to_string(RunStatus.FINISHED))


def run_status(run_id: str) -> str | None:
    """``RUNNING`` / ``FINISHED`` / ``FAILED`` / ``KILLED`` / ``SCHEDULED``; None for a run that is gone."""
    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException:
        return None
    return None if run.info.lifecycle_stage == "deleted" else run.info.status


def child_run_ids(parent_run_id: str) -> list[str]:
    """Runs nested under ``parent_run_id`` (MLflow's ``mlflow.parentRunId`` tag)."""
    client = MlflowClient()
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'"
    )
    return [r.info.run_id for r in runs]


def last_step(run_id: str, metric: str) -> int:
    """The highest step ``metric`` was logged at in ``run_id`` (-1 when never)."""
    history = MlflowClient().get_metric_history(run_id, metric)
    return max((m.step for m in history), default=-1)


def mark_killed(run_id: str) -> bool:
    """End a run left ``RUNNING`` by a killed process as ``KILLED``; True when it was still running."""
    if run_status(run_id) != "RUNNING":
        return False
    MlflowClient().set_terminated(run_id, status=RunStatus.to_string(RunStatus.KILLED))
    return True


def log_and_register_model(
    model: Any,
    input_example: Any,
    registered_name: str,
    *,
    artifact_name: str = "model",
    pip_requirements: list[str] | None = None,
    by_value_modules: Sequence[ModuleType] = (),
    version_tags: Mapping[str, Any] | None = None,
) -> int:
    """Log a torch module into the active run and register it; returns the new model version.

    Saved as a pickled ``nn.Module`` (MLflow's ``pickle`` format), not a ``torch.export`` graph: the
    loaded model then takes any batch size and ``.eval()`` works (an exported program's module raises
    on ``.eval()``). Classes of ``by_value_modules`` are stored by value (cloudpickle), so a later
    refactoring of those modules cannot break loading an old version; others (torch, timm) by
    reference, pinned in the requirements. Requirements are given, not inferred: MLflow's
    inference re-imports the model in a subprocess, seconds per call for a list we know.
    """
    if mlflow.active_run() is None:
        raise RuntimeError("log_and_register_model needs an active MLflow run (use start_run)")
    if pip_requirements is None:
        import cloudpickle
        import timm
        import torch

        pip_requirements = [
            f"torch=={torch.__version__.split('+')[0]}",
            f"timm=={timm.__version__}",
            f"cloudpickle=={cloudpickle.__version__}",
        ]
    import cloudpickle

    for module in by_value_modules:
        cloudpickle.register_pickle_by_value(module)
    try:
        info = mlflow.pytorch.log_model(
            model,
            name=artifact_name,
            input_example=input_example,
            registered_model_name=registered_name,
            pip_requirements=pip_requirements,
            serialization_format="pickle",
        )
    finally:
        for module in by_value_modules:
            cloudpickle.unregister_pickle_by_value(module)
    version = getattr(info, "registered_model_version", None)
    if version is None:
        raise RuntimeError(f"MLflow did not register {registered_name!r}")
    client = MlflowClient()
    for key, value in (version_tags or {}).items():
        client.set_model_version_tag(registered_name, str(version), key, str(value))
    return int(version)


def run_url(run_id: str, experiment_id: str, ui_base_url: str = "http://localhost:5000") -> str:
    """Link to a run in the MLflow UI (the UI serves the same tracking store)."""
    return f"{ui_base_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
