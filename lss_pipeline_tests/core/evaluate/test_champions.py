"""Champion vs challenger: a crippled challenger leaves `champion` where it is, a clearly better one moves it.

Runs against a real MLflow store (sqlite in a temporary folder); registered versions are created
directly in the registry, except where a real model has to be loaded and run on crops.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from lss_pipeline.core.evaluate import registry
from lss_pipeline.core.evaluate.champions import Contender, judge
from lss_pipeline.core.evaluate.load import load_grid
from lss_pipeline.core.evaluate.options import EvaluationOptions
from lss_pipeline.core.evaluate.promote import FROM_PARTITION, FROM_REGISTRY, FROM_STORED, decide_champions
from lss_pipeline.core.evaluate.table import metrics_table
from lss_pipeline.core.paths import Paths
from lss_pipeline.core.train.tracking import configure_mlflow, log_and_register_model, start_run
from lss_pipeline_tests.core.evaluate.fabricate import (
    TEST_STUDIES,
    prediction_table,
    rows_of,
    write_partition,
)

OPTIONS = EvaluationOptions(n_boot=400)
NAME = "lss-scs"


@pytest.fixture()
def store(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    previous = mlflow.get_tracking_uri()
    configure_mlflow(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts")
    yield Paths(data_dir=tmp_path / "data", raw_dir=tmp_path / "raw")
    mlflow.set_tracking_uri(previous)


def register(paths: Paths, arch: str) -> str:
    """A new registered version of lss-scs over an empty folder: these tests score stored predictions."""
    client = MlflowClient()
    if not client.search_registered_models(f"name='{NAME}'"):
        client.create_registered_model(NAME)
    source = paths.data_dir.parent / "no_model"
    source.mkdir(exist_ok=True)
    return str(client.create_model_version(NAME, source=source.as_uri(), tags={"arch": arch}).version)


def train(paths: Paths, arch: str, wrong_test, wrong_oof) -> str:
    """What a training leaves: the partition's files and a new registered version."""
    version = register(paths, arch)
    write_partition(paths, arch, "scs", wrong_test, wrong_oof, version=version)
    return version


def evaluate(paths: Paths, options: EvaluationOptions = OPTIONS):
    grid = load_grid(paths, ("convnext", "resnet"), ("scs",))
    metrics = metrics_table(grid, options)
    oof = {(r["arch"], r["category"]): r["oof_macro_recall"] for r in metrics.iter_rows(named=True)}
    with start_run("lss-evaluation", "evaluation-report") as run:
        return decide_champions(grid, oof, paths, options, run.run_id)["scs"]


def champion() -> str:
    return str(MlflowClient().get_model_version_by_alias(NAME, "champion").version)


def tags(version: str) -> dict:
    return MlflowClient().get_model_version(NAME, version).tags


def test_crippled_challenger_keeps_the_champion_and_a_better_one_moves_it(store):
    # First training: ConvNeXt is best on the out-of-fold rows, so it is crowned.
    v1 = train(store, "convnext", (8, 8, 8), (0, 0, 0))
    train(store, "resnet", (8, 8, 8), (2, 2, 2))
    first = evaluate(store)
    assert first.decision.outcome == "crowned" and champion() == v1
    assert tags(v1)["champion_decision"] == "crowned" and registry.TEST_PREDICTIONS_TAG in tags(v1)

    # A retraining that overfits: perfect out-of-fold rows, but far worse on the test split.
    crippled = train(store, "convnext", (14, 14, 14), (0, 0, 0))
    second = evaluate(store)
    d = second.decision
    assert d.challenger == crippled and d.outcome == "kept" and champion() == v1
    assert d.champion_source == FROM_STORED  # v1's partition was overwritten by the retraining
    assert d.comparison is not None and d.comparison.difference.hi < 0
    assert d.comparison.n_studies == len(TEST_STUDIES)
    assert tags(crippled)["champion_decision"] == "kept" and tags(crippled)["champion_decision_vs"] == v1
    assert float(tags(crippled)["champion_delta_macro_recall_pts"]) < 0

    # A clearly better retraining moves the alias.
    better = train(store, "convnext", (0, 0, 0), (0, 0, 0))
    third = evaluate(store)
    assert third.decision.outcome == "promoted" and champion() == better
    assert third.decision.comparison is not None and third.decision.comparison.difference.lo > 0
    assert third.macro_recall is not None and third.macro_recall.point == 1.0
    assert tags(better)["champion_decision"] == "promoted"

    # Nothing retrained: the champion is the challenger again, nothing moves.
    again = evaluate(store)
    assert again.decision.outcome == "unchanged" and again.decision.champion_source == FROM_PARTITION


def test_margin_and_rule_are_configurable():
    today = prediction_table("scs", TEST_STUDIES, (0, 0, 0), fold=False)
    older = prediction_table("scs", TEST_STUDIES, (8, 8, 8), fold=False)
    challenger = Contender(NAME, "2", "convnext", today)
    incumbent = Contender(NAME, "1", "resnet", older)
    gain = judge("scs", challenger, incumbent, OPTIONS).comparison.difference  # type: ignore[union-attr]
    assert gain.lo > 0
    strict = EvaluationOptions(n_boot=400, champion_margin_pts=100 * gain.lo + 0.1)
    assert judge("scs", challenger, incumbent, strict).outcome == "kept"
    lenient = EvaluationOptions(
        n_boot=400, champion_rule="difference", champion_margin_pts=100 * gain.lo + 0.1
    )
    assert judge("scs", challenger, incumbent, lenient).outcome == "promoted"
    # A champion nobody can score stays.
    unscored = judge("scs", challenger, Contender(NAME, "1", "resnet", None), OPTIONS, unscored_reason="gone")
    assert unscored.outcome == "kept" and unscored.champion_after == "1" and "gone" in unscored.reason


class GradeFromPixels(nn.Module):
    """Logits that grade a crop by its mean pixel (0, 1, 2): a perfect model on the crops below."""

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        mean = crops.mean(dim=(1, 2, 3))[:, None]
        return -10.0 * (mean - torch.arange(3.0)[None, :]) ** 2


def write_crops(paths: Paths) -> None:
    """crops.npy + index.parquet for scs: the test studies' rows, each crop filled with its label."""
    table = prediction_table("scs", TEST_STUDIES, (0, 0, 0), fold=False)
    labels = table["label"].to_numpy().astype(np.float32)
    crops = np.broadcast_to(labels[:, None, None, None], (len(labels), 2, 8, 8)).copy()
    paths.crops_category_dir("scs").mkdir(parents=True)
    np.save(paths.crops_array("scs"), crops)
    index = table.select("study_id", "row_id", "condition", "side", "level", "label").with_columns(
        pl.Series("crop_index", np.arange(len(labels)), dtype=pl.Int64),
        pl.lit("test").alias("split"),
        pl.lit(None, dtype=pl.Int8).alias("fold"),
    )
    index.write_parquet(paths.crops_index("scs"))


def test_champion_without_partition_or_stored_predictions_is_loaded_and_run_on_test_crops(store):
    write_crops(store)
    example = np.zeros((2, 2, 8, 8), np.float32)
    with start_run("lss-scs", "old-champion"):
        version = str(
            log_and_register_model(
                GradeFromPixels(), example, NAME, version_tags={"arch": "resnet", "in_chans": 2, "crop_px": 8}
            )
        )
    registry.set_champion(NAME, version)
    assert len(rows_of("scs", TEST_STUDIES)) == pl.read_parquet(store.crops_index("scs")).height

    challenger = train(store, "convnext", (8, 8, 8), (0, 0, 0))
    outcome = evaluate(store)
    d = outcome.decision
    assert d.champion_source == FROM_REGISTRY and d.champion_before_arch == "resnet"
    assert d.comparison is not None and d.comparison.b == 1.0  # the registered model graded every crop right
    assert d.outcome == "kept" and champion() == version and d.challenger == challenger
    assert registry.TEST_PREDICTIONS_TAG in tags(version)  # stored for the next evaluation
