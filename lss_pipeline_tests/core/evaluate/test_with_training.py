"""Evaluation on what the real training writes (tiny timm models, every fold, a registered fold ensemble).

Checks the contract between ``core/train`` and ``core/evaluate`` end to end: the report reads the
partitions as training leaves them, the first evaluation crowns a champion, and a champion whose
partition was retrained and whose stored predictions are gone is loaded from the registry and scored
on the test crops with the same numbers the training wrote.
"""

from __future__ import annotations

import mlflow
import numpy as np
import polars as pl
import pytest
import torch
from mlflow.tracking import MlflowClient

from lss_pipeline.core.constants import PROB_COLUMNS
from lss_pipeline.core.evaluate import registry
from lss_pipeline.core.evaluate.options import EvaluationOptions
from lss_pipeline.core.evaluate.promote import FROM_REGISTRY
from lss_pipeline.core.evaluate.run import evaluate
from lss_pipeline.core.settings import Settings
from lss_pipeline.core.train import tracking
from lss_pipeline.core.train.config import TrainConfig
from lss_pipeline.core.train.run import train_partition
from lss_pipeline_tests.core.train.synthetic_crops import PX, write_partition_inputs

pytestmark = pytest.mark.slow

OPTIONS = EvaluationOptions(n_boot=200)
BASE = dict(category="scs", crop_px=PX, epochs=1, batch_size=32, lr=2e-3, patience=0, device="cpu")


def train(settings: Settings, arch: str, timm_name: str, seed: int = 0):
    return train_partition(settings, TrainConfig(arch=arch, timm_name=timm_name, seed=seed, **BASE))


@pytest.fixture()
def trained(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    previous = mlflow.get_tracking_uri()
    tracking.configure_mlflow(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts")
    settings = Settings(data_dir=tmp_path / "data", raw_dir=tmp_path / "raw", profile_name="demo")
    write_partition_inputs(settings, "scs", n=200)
    yield settings
    mlflow.set_tracking_uri(previous)
    torch.set_num_threads(before)


def test_report_and_champion_on_real_training_outputs(trained):
    settings = trained
    convnext = train(settings, "convnext", "test_convnext")
    train(settings, "resnet", "test_resnet")
    first = evaluate(settings, OPTIONS)
    metrics = first.report.metrics
    assert metrics.height == 2 and set(metrics["n_folds"].to_list()) == {4}
    assert (metrics["test_n_studies"] == convnext.summary["n_test_studies"]).all()
    assert first.outcomes["scs"].decision.outcome == "crowned"
    champion = first.champions["scs"]
    assert MlflowClient().get_model_version_by_alias("lss-scs", "champion").version == int(
        champion["version"]
    )
    assert "4 of 4 (folds 0,1,2,3)" in first.report.markdown_path.read_text()

    # Retrain the champion's architecture (its partition now holds a new version) and drop the stored
    # test predictions, so the old champion can only be scored by loading it from the registry.
    old = MlflowClient().get_model_version("lss-scs", champion["version"])
    old_test = pl.read_parquet(settings.paths.model_test_predictions(champion["arch"], "scs"))
    MlflowClient().delete_model_version_tag("lss-scs", champion["version"], registry.TEST_PREDICTIONS_TAG)
    train(settings, champion["arch"], f"test_{champion['arch']}", seed=1)
    second = evaluate(settings, OPTIONS)
    decision = second.outcomes["scs"].decision
    assert decision.champion_before == champion["version"] and decision.champion_source == FROM_REGISTRY
    rescored = registry.stored_test_predictions(MlflowClient().get_model_version("lss-scs", old.version))
    assert rescored is not None
    joined = old_test.join(rescored, on="row_id", suffix="_registry")
    assert joined.height == old_test.height
    np.testing.assert_allclose(
        joined.select(PROB_COLUMNS).to_numpy(),
        joined.select([f"{c}_registry" for c in PROB_COLUMNS]).to_numpy(),
        atol=1e-5,
    )
