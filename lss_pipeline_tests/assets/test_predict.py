"""`predictions` through Dagster: a test study graded from its DICOMs with registered localisers and
champion graders, the submission rebuilt in sample_submission.csv's format; the sensor adds new studies."""

import shutil

import mlflow
import numpy as np
import polars as pl
import pytest
import torch
from dagster import SensorResult, SkipReason, build_sensor_context, materialize
from mlflow.tracking import MlflowClient

from lss_pipeline.assets.localise import level_localizer
from lss_pipeline.assets.predict import TEST_STUDIES, predictions, study_folders_sensor
from lss_pipeline.core.constants import SEVERITY_TO_LABEL
from lss_pipeline.core.evaluate.metrics import competition_score
from lss_pipeline.core.predict.submission import check_submission, read_sample_row_ids
from lss_pipeline.core.synth import read_solution
from lss_pipeline.core.train import tracking
from lss_pipeline.resources import ComputeDevice, LssSettings, MLflowTracking
from lss_pipeline_tests.core.localise.tiny import build_tiny_set


class MeanGrader(torch.nn.Module):
    """A stand-in grader: logits from crop statistics (any batch size)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 3)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        stats = torch.stack([crops.mean((1, 2, 3)), crops.std((1, 2, 3)), crops.amax((1, 2, 3))], dim=1)
        return self.linear(stats)


def register_champion_graders() -> None:
    for category in ("scs", "nfs", "sbs"):
        with tracking.start_run(f"lss-{category}", "stand-in"):
            version = tracking.log_and_register_model(
                MeanGrader(), torch.zeros(2, 5, 64, 64).numpy(), f"lss-{category}",
                version_tags={"in_chans": 5, "crop_px": 64, "flip_merge": category != "scs"},
            )  # fmt: skip
        MlflowClient().set_registered_model_alias(f"lss-{category}", "champion", str(version))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_asset")
    tiny = build_tiny_set(root)
    previous = mlflow.get_tracking_uri()
    mlflow_resource = MLflowTracking(
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifacts_dir=str(root / "artifacts")
    )
    resources = {
        "settings": LssSettings(data_dir=str(root), raw_dir=str(tiny.settings.raw_dir), profile="demo"),
        "mlflow_tracking": mlflow_resource,
        "compute": ComputeDevice(device="cpu"),
    }
    yield tiny, resources
    mlflow.set_tracking_uri(previous)


@pytest.mark.slow
def test_a_test_study_is_graded_and_the_submission_follows_the_sample(prepared, ephemeral_instance):
    tiny, resources = prepared
    instance = ephemeral_instance
    for category in ("scs", "nfs", "sbs"):
        config = {"ops": {"level_localizer": {"config": {"epochs": 1}}}}
        assert materialize([level_localizer], partition_key=category, resources=resources, run_config=config,
                           instance=instance).success  # fmt: skip
    resources["mlflow_tracking"].configure(tiny.settings)
    register_champion_graders()

    paths = tiny.settings.paths
    study = sorted(p.name for p in paths.test_images.iterdir())[0]
    instance.add_dynamic_partitions(TEST_STUDIES, [study])
    result = materialize([predictions], partition_key=study, resources=resources, instance=instance)
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert [c.check_name for c in checks] == ["submission_follows_sample"] and checks[0].passed
    metadata = result.asset_materializations_for_node("predictions")[0].metadata
    assert metadata["rows"].value == 25 and metadata["studies_in_submission"].value == 1

    table = pl.read_parquet(paths.predictions_table)
    assert table.height == 25 and table["study_id"].unique().to_list() == [int(study)]
    assert {"row_id", "normal_mild", "moderate", "severe", "x", "y", "instance_number"} <= set(table.columns)
    sample = read_sample_row_ids(paths.sample_submission_csv)
    submission = pl.read_csv(paths.submission_csv)
    assert submission.columns == ["row_id", "normal_mild", "moderate", "severe"]
    assert check_submission(submission, sample) == []
    # The synthetic solution file scores it (the truth the pipeline never read).
    solution = pl.DataFrame(read_solution(paths.raw_dir)).select(
        "row_id", pl.col("severity").replace_strict(SEVERITY_TO_LABEL, return_dtype=pl.Int64).alias("label")
    )
    score = competition_score(solution, submission)
    assert score["n_studies"] == 2 and np.isfinite(score["score"])
    # The sample's line ending is kept.
    assert paths.submission_csv.read_bytes().split(b"\n")[0].endswith(b"\r") == (
        paths.sample_submission_csv.read_bytes().split(b"\n")[0].endswith(b"\r")
    )


def test_sensor_adds_new_study_folders_and_drops_removed_ones(tmp_path, ephemeral_instance):
    raw = tmp_path / "raw"
    for study in ("11", "22"):
        (raw / "test_images" / study / "1").mkdir(parents=True)
    (raw / "test_images" / "notes").mkdir()  # not a study id: ignored
    settings = LssSettings(data_dir=str(tmp_path), raw_dir=str(raw))
    instance = ephemeral_instance

    result = study_folders_sensor(build_sensor_context(instance=instance, resources={"settings": settings}))
    assert isinstance(result, SensorResult)
    assert sorted(r.partition_key for r in result.run_requests) == ["11", "22"]
    assert result.dynamic_partitions_requests[0].partition_keys == ["11", "22"]

    instance.add_dynamic_partitions(TEST_STUDIES, ["11", "22"])
    again = study_folders_sensor(build_sensor_context(instance=instance, resources={"settings": settings}))
    assert isinstance(again, SkipReason)

    shutil.rmtree(raw / "test_images" / "22")
    (raw / "test_images" / "33" / "1").mkdir(parents=True)
    changed = study_folders_sensor(build_sensor_context(instance=instance, resources={"settings": settings}))
    assert [r.partition_key for r in changed.run_requests] == ["33"]
    kinds = {type(r).__name__: r.partition_keys for r in changed.dynamic_partitions_requests}
    assert kinds == {"AddDynamicPartitionsRequest": ["33"], "DeleteDynamicPartitionsRequest": ["22"]}
