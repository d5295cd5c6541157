"""Dagster resources: settings, MLflow tracking, compute device. Thin wrappers over core."""


from pathlib import Path

from dagster import ConfigurableResource

from lss_pipeline.core.settings import Settings


class LssSettings(ConfigurableResource):
    """Paths and profile. Empty fields fall back to LSS_DATA_DIR / LSS_RAW_DIR / LSS_PROFILE."""

    data_dir: str = ""
    raw_dir: str = ""
    profile: str = ""

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
        from lss_pipeline.core import tracking

        uri = self.tracking_uri or settings.mlflow_tracking_uri
        artifacts = Path(self.artifacts_dir) if self.artifacts_dir else settings.mlflow_artifacts_dir
        tracking.configure_mlflow(uri, artifacts)
        return uri

    def run_url(self, experiment_id: str, run_id: str) -> str:
        from lss_pipeline.core import tracking

        return tracking.run_url(run_id, experiment_id, self.ui_url)


class ComputeDevice(ConfigurableResource):
    """Where training runs: `auto` | `cpu` | `cuda` | `cuda:N`, and its precision."""

    device: str = "auto"
    precision: str = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    channels_last: bool = True
