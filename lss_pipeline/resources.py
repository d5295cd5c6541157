"""Dagster resources: settings, MLflow tracking, compute device; one set per deployment.

``resources_for(settings.deployment)`` (LSS_DEPLOYMENT) picks the set the code location uses:

- ``local``: everything embedded under $LSS_DATA_DIR (sqlite MLflow store, in-process steps).
- ``team``: Dagster and MLflow on servers; training logs to the MLflow server named by
  MLFLOW_TRACKING_URI.
- ``k8s``: every step in its own pod; paths and the MLflow server must come from the pod's
  environment (an unset variable fails the step by name instead of writing into the container).

Values read from the environment are ``EnvVar`` references: the UI shows the variable's name,
never its value, and a run reads it where it executes.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from dagster import ConfigurableResource, EnvVar

from lss_pipeline.core.settings import Deployment, Settings

# Empty: from LSS_PROFILE.
ProfileName = Literal["", "demo", "full"]


class LssSettings(ConfigurableResource):
    """Paths and profile. Empty fields fall back to LSS_DATA_DIR / LSS_RAW_DIR / LSS_PROFILE."""

    data_dir: str = ""
    raw_dir: str = ""
    profile: ProfileName = ""

    def get(self) -> Settings:
        env_settings = Settings.from_env()
        data_dir = Path(self.data_dir).resolve() if self.data_dir else env_settings.data_dir
        if self.raw_dir:
            raw_dir = Path(self.raw_dir).resolve()
        elif self.data_dir:
            raw_dir = data_dir / "raw"
        else:
            raw_dir = env_settings.raw_dir
        return Settings(
            data_dir=data_dir,
            raw_dir=raw_dir,
            profile_name=self.profile or env_settings.profile_name,
            deployment=env_settings.deployment,
            retrain_cron=env_settings.retrain_cron,
            retrain_timezone=env_settings.retrain_timezone,
        )


class MLflowTracking(ConfigurableResource):
    """MLflow on a sqlite store under $LSS_DATA_DIR/mlflow unless a tracking URI is given.

    `tracking_uri` empty: MLFLOW_TRACKING_URI when set (a server), else
    sqlite:///$LSS_DATA_DIR/mlflow/mlflow.db with artifacts in $LSS_DATA_DIR/mlflow/artifacts.
    """

    tracking_uri: str = ""
    artifacts_dir: str = ""
    ui_url: str = "http://127.0.0.1:5000"

    def configure(self, settings: Settings) -> str:
        """Point MLflow at this store; returns the tracking URI."""
        from lss_pipeline.core.train import tracking

        uri = self.tracking_uri or settings.mlflow_tracking_uri
        artifacts = Path(self.artifacts_dir) if self.artifacts_dir else settings.mlflow_artifacts_dir
        tracking.configure_mlflow(uri, artifacts)
        return uri

    def run_url(self, experiment_id: str, run_id: str) -> str:
        from lss_pipeline.core.train import tracking

        return tracking.run_url(run_id, experiment_id, self.ui_url)


# A few named GPUs cover one machine; the Launchpad shows these as a list.
DeviceName = Literal[
    "auto", "cpu", "cuda", "cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:4", "cuda:5", "cuda:6", "cuda:7"
]
Precision = Literal["auto", "fp32", "bf16"]


class ComputeDevice(ConfigurableResource):
    """Where training runs, and its precision (auto: bf16 on CUDA when supported, fp32 on CPU)."""

    device: DeviceName = "auto"
    precision: Precision = "auto"
    channels_last: bool = True


def _local() -> dict[str, ConfigurableResource]:
    return {"settings": LssSettings(), "mlflow_tracking": MLflowTracking(), "compute": ComputeDevice()}


def _team() -> dict[str, ConfigurableResource]:
    return {
        "settings": LssSettings(),
        "mlflow_tracking": MLflowTracking(tracking_uri=EnvVar("MLFLOW_TRACKING_URI")),
        "compute": ComputeDevice(),
    }


def _k8s() -> dict[str, ConfigurableResource]:
    return {
        "settings": LssSettings(data_dir=EnvVar("LSS_DATA_DIR"), raw_dir=EnvVar("LSS_RAW_DIR")),
        "mlflow_tracking": MLflowTracking(tracking_uri=EnvVar("MLFLOW_TRACKING_URI")),
        # Each training pod asks for one GPU (assets/train.py): fail loudly if it has none.
        "compute": ComputeDevice(device="cuda"),
    }


RESOURCES_BY_DEPLOYMENT: dict[Deployment, Callable[[], dict[str, ConfigurableResource]]] = {
    "local": _local,
    "team": _team,
    "k8s": _k8s,
}


def resources_for(deployment: Deployment) -> dict[str, ConfigurableResource]:
    """The resources of one deployment (settings.deployment, from LSS_DEPLOYMENT)."""
    return RESOURCES_BY_DEPLOYMENT[deployment]()
