"""`trained_model` through Dagster: one call into core, metadata, the above-chance check, resume logged."""

import mlflow
import pytest
import torch
from dagster import materialize

from lss_pipeline.assets.train import trained_model, trained_model_above_chance
from lss_pipeline.core.paths import Paths
from lss_pipeline.core.settings import PROFILES, Settings
from lss_pipeline.core.train import loop
from lss_pipeline.resources import ComputeDevice, LssSettings, MLflowTracking
from lss_pipeline_tests.core.train.synthetic_crops import write_partition_inputs

PARTITION = "convnext|scs"
TRAINING = {"timm_name": "test_convnext", "epochs": 2, "lr": 0.002}
RUN_CONFIG = {"ops": {"trained_model": {"config": TRAINING}}}


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    previous = mlflow.get_tracking_uri()
    settings = Settings(data_dir=tmp_path / "data", raw_dir=tmp_path / "raw", profile_name="demo")
    demo = PROFILES["demo"]
    write_partition_inputs(settings, "scs", n=200, px=demo.crop_px)
    resources = {
        "settings": LssSettings(
            data_dir=str(settings.data_dir), raw_dir=str(settings.raw_dir), profile="demo"
        ),
        "mlflow_tracking": MLflowTracking(
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifacts_dir=str(tmp_path / "artifacts")
        ),
        "compute": ComputeDevice(device="cpu"),
    }
    yield settings, resources
    mlflow.set_tracking_uri(previous)


def run(resources, instance, run_config=RUN_CONFIG, **kwargs):
    return materialize(
        [trained_model, trained_model_above_chance],
        partition_key=PARTITION,
        resources=resources,
        run_config=run_config,
        instance=instance,
        **kwargs,
    )


def test_asset_trains_every_fold_and_its_check_finds_it_above_chance(data, ephemeral_instance):
    settings, resources = data
    result = run(resources, ephemeral_instance)
    assert result.success
    metadata = result.asset_materializations_for_node("trained_model")[0].metadata
    assert metadata["folds_trained"].value == "4 of 4"
    assert metadata["oof_study_share"].value == 1.0
    assert metadata["registered_model"].value == "lss-scs v1"
    assert "| fold | epoch |" in metadata["history"].value
    assert settings.paths.model_test_predictions("convnext", "scs").is_file()
    # The demo profile lists convnext|scs for the loss comparison: focal trained beside it, unregistered.
    assert "| focal |" in metadata["loss_comparison"].value
    assert settings.paths.model_summary(Paths.variant_arch("convnext", "focal"), "scs").is_file()
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "trained_model_above_chance"
    assert check.passed, check.metadata
    assert check.metadata["p_value"].value < 0.05


def test_a_crashed_materialization_resumes_and_says_so_in_the_dagster_log(
    data, monkeypatch, ephemeral_instance
):
    _, resources = data
    instance = ephemeral_instance
    real_epoch_line = loop.epoch_line

    def crash_after_first_checkpoint(*args):
        raise RuntimeError("simulated crash after epoch 1's checkpoint")

    monkeypatch.setattr(loop, "epoch_line", crash_after_first_checkpoint)
    one_loss = {"ops": {"trained_model": {"config": {**TRAINING, "compare_loss": False}}}}
    failed = run(resources, instance, one_loss, raise_on_error=False)
    assert not failed.success
    monkeypatch.setattr(loop, "epoch_line", real_epoch_line)

    resumed = run(resources, instance, one_loss)
    assert resumed.success
    messages = [entry.user_message for entry in instance.all_logs(resumed.run_id)]
    assert any("fold 0: resumed from epoch 1 of 2" in m for m in messages), messages
    assert resumed.asset_materializations_for_node("trained_model")[0].metadata["resumed"].value is True
    runs = mlflow.search_runs(experiment_names=["lss-scs"], output_format="list")
    # Resumed in place: one partition run and one run per fold, all finished.
    assert len(runs) == 5 and {r.info.status for r in runs} == {"FINISHED"}
