"""`level_localizer` through Dagster: one call into core, metadata, an MLflow run, a registered version
that loads with mlflow.pytorch.load_model and takes any batch size."""

import mlflow
import mlflow.pytorch
import pytest
import torch
from dagster import materialize

from lss_pipeline.assets.localise import level_localizer
from lss_pipeline.resources import ComputeDevice, LssSettings, MLflowTracking
from lss_pipeline_tests.core.localise.tiny import build_tiny_set

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("localise_asset")
    tiny = build_tiny_set(root)
    previous = mlflow.get_tracking_uri()
    resources = {
        "settings": LssSettings(data_dir=str(root), raw_dir=str(tiny.settings.raw_dir), profile="demo"),
        "mlflow_tracking": MLflowTracking(
            tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifacts_dir=str(root / "artifacts")
        ),
        "compute": ComputeDevice(device="cpu"),
    }
    yield tiny, resources
    mlflow.set_tracking_uri(previous)


def materialize_localiser(resources, category, instance):
    return materialize(
        [level_localizer],
        partition_key=category,
        resources=resources,
        run_config={"ops": {"level_localizer": {"config": {"epochs": 1}}}},
        instance=instance,
    )


def test_localiser_asset_measures_registers_and_loads_through_the_registry(prepared, ephemeral_instance):
    tiny, resources = prepared
    instance = ephemeral_instance
    for category in ("scs", "nfs", "sbs"):
        result = materialize_localiser(resources, category, instance)
        assert result.success
        metadata = result.asset_materializations_for_node("level_localizer")[0].metadata
        assert metadata["registered_model"].value == f"lss-localizer-{category} v1"
        assert metadata["test_points"].value > 0
        assert 0.0 <= metadata["test_level_accuracy"].value <= 1.0
    paths = tiny.settings.paths
    assert paths.localisation_table.exists() and paths.localiser_model("sbs").exists()
    assert metadata["levels_from"].value == "scs/nfs localisers"

    mlflow.set_tracking_uri(resources["mlflow_tracking"].tracking_uri)
    runs = mlflow.search_runs(experiment_names=["lss-localizer-scs"], output_format="list")
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert runs[0].data.tags["dagster_partition_key"] == "scs"
    assert "test_in_plane_median_mm" in runs[0].data.metrics
    model = mlflow.pytorch.load_model("models:/lss-localizer-scs/1", map_location="cpu")
    model.eval()
    for batch in (1, 3):
        out = model(torch.rand(batch, model.in_channels, 128, 128))
        assert out.shape == (batch, 5, 4)
