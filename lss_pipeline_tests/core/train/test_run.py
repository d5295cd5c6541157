"""A partition end to end: every fold, honest OOF, test predictions of the ensemble, MLflow, resume."""

import json
import logging
import os
import subprocess
import sys
import textwrap

import mlflow
import numpy as np
import polars as pl
import pytest
import torch
from mlflow.tracking import MlflowClient

from lss_pipeline.core.constants import PROB_COLUMNS
from lss_pipeline.core.paths import Paths
from lss_pipeline.core.settings import Settings
from lss_pipeline.core.train import tracking
from lss_pipeline.core.train.compare import comparison_markdown, train_other_loss
from lss_pipeline.core.train.config import TrainConfig
from lss_pipeline.core.train.ensemble import load_fold_ensemble
from lss_pipeline.core.train.run import train_partition
from lss_pipeline_tests.core.train.synthetic_crops import PX, write_partition_inputs

CONFIG = dict(
    arch="convnext",
    timm_name="test_convnext",
    category="scs",
    crop_px=PX,
    epochs=2,
    batch_size=32,
    lr=2e-3,
    patience=0,
    device="cpu",
    weight_scheme="inverse_frequency",
)
FOLDS = [0, 1, 2, 3]


def make_settings(root) -> Settings:
    settings = Settings(data_dir=root / "data", raw_dir=root / "raw", profile_name="demo")
    write_partition_inputs(settings, "scs", n=200)
    return settings


def configure(root) -> None:
    tracking.configure_mlflow(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts")


def runs_of(experiment: str) -> list:
    return mlflow.search_runs(experiment_names=[experiment], output_format="list")


@pytest.fixture(scope="module")
def partition(tmp_path_factory):
    root = tmp_path_factory.mktemp("partition")
    settings = make_settings(root)
    previous = mlflow.get_tracking_uri()
    configure(root)
    result = train_partition(settings, TrainConfig(**CONFIG), tags={"dagster_partition_key": "convnext|scs"})
    yield root, settings, result
    mlflow.set_tracking_uri(previous)


def test_every_fold_is_trained_and_the_oof_table_covers_every_cv_row_once(partition):
    _, settings, result = partition
    paths = settings.paths
    index = pl.read_parquet(paths.crops_index("scs"))
    cv = index.filter(pl.col("split") == "cv")
    oof = pl.read_parquet(paths.model_oof("convnext", "scs"))
    assert [f.fold for f in result.folds] == FOLDS and result.summary["folds_trained"] == FOLDS
    assert sorted(oof["row_id"].to_list()) == sorted(cv["row_id"].to_list())
    assert result.summary["coverage"]["oof_study_share"] == 1.0
    # Each row scored by the model of its own fold, i.e. the one that did not train on it.
    fold_of = dict(zip(cv["row_id"], cv["fold"], strict=True))
    assert all(fold_of[r] == f for r, f in zip(oof["row_id"], oof["fold"], strict=True))
    for fold in result.folds:
        fold_dir = paths.model_fold_dir("convnext", "scs", fold.fold)
        for path in (
            Paths.checkpoint_last(fold_dir),
            Paths.checkpoint_best(fold_dir),
            Paths.fold_oof(fold_dir),
        ):
            assert path.is_file(), path
        summary = json.loads(Paths.fold_summary(fold_dir).read_text())
        assert summary["fold"] == fold.fold and summary["mlflow_run_id"]
        # The epoch was chosen on the fold's own rows: its recall is the best of the fold's history.
        assert fold.best_val_macro_recall == max(h["val_macro_recall"] for h in fold.history)
    assert not paths.model_training_state("convnext", "scs").exists()


def test_test_split_is_predicted_by_the_mean_of_the_fold_models(partition):
    _, settings, result = partition
    paths = settings.paths
    index = pl.read_parquet(paths.crops_index("scs"))
    test_rows = index.filter(pl.col("split") == "test")
    table = pl.read_parquet(paths.model_test_predictions("convnext", "scs"))
    assert table["row_id"].to_list() == test_rows["row_id"].to_list()
    assert set(table["n_models"].to_list()) == {len(FOLDS)}
    crops = torch.from_numpy(
        np.load(paths.crops_array("scs"))[test_rows["crop_index"].to_numpy()].astype(np.float32)
    )
    ensemble = load_fold_ensemble(paths, "convnext", "scs", FOLDS)
    with torch.no_grad():
        expected = torch.softmax(ensemble(crops), 1).numpy()
    np.testing.assert_allclose(table.select(PROB_COLUMNS).to_numpy(), expected, rtol=1e-4, atol=1e-6)
    assert result.summary["n_test_rows"] == test_rows.height


def test_mlflow_has_a_partition_run_with_a_nested_run_per_fold_and_a_registered_ensemble(partition):
    root, settings, result = partition
    configure(root)
    runs = runs_of("lss-scs")
    parent = [r for r in runs if r.info.run_id == result.mlflow_run_id][0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and len(runs) == 1 + len(FOLDS)
    assert sorted(int(c.data.tags["fold"]) for c in children) == FOLDS
    assert all(
        c.info.status == "FINISHED" and c.data.tags["dagster_partition_key"] == "convnext|scs"
        for c in children
    )
    client = MlflowClient()
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_macro_recall")]
        assert steps == [0, 1]  # every epoch logged exactly once
        assert child.data.params["val_fold"] == child.data.tags["fold"]
    assert parent.data.metrics["oof_macro_recall"] == pytest.approx(result.summary["oof_macro_recall"])
    assert parent.data.params["folds"] == str(FOLDS)

    version = client.get_model_version("lss-scs", str(result.model_version))
    assert version.run_id == parent.info.run_id and version.tags["folds"] == "0,1,2,3"
    client.set_registered_model_alias("lss-scs", "champion", version.version)
    model = mlflow.pytorch.load_model("models:/lss-scs@champion").eval()
    index = pl.read_parquet(settings.paths.crops_index("scs")).filter(pl.col("split") == "test").head(4)
    crops = np.load(settings.paths.crops_array("scs"))[index["crop_index"].to_numpy()].astype(np.float32)
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(crops)), 1).numpy()
    assert probs.shape == (4, 3)
    table = pl.read_parquet(settings.paths.model_test_predictions("convnext", "scs")).head(4)
    np.testing.assert_allclose(probs, table.select(PROB_COLUMNS).to_numpy(), rtol=1e-4, atol=1e-6)


def test_fewer_folds_give_an_oof_table_that_says_its_coverage(tmp_path, mlflow_store):
    settings = make_settings(tmp_path)
    result = train_partition(settings, TrainConfig(**{**CONFIG, "epochs": 1}), max_folds=2, register=False)
    assert result.summary["folds_trained"] == [0, 1] and result.n_folds == 4
    assert set(result.oof["fold"].to_list()) == {0, 1}
    assert 0.3 < result.summary["coverage"]["oof_study_share"] < 0.7
    assert result.test_predictions["n_models"].to_list() == [2] * result.test_predictions.height
    with pytest.raises(ValueError, match="max_folds"):
        train_partition(settings, TrainConfig(**CONFIG), max_folds=0)


def test_the_other_loss_trains_beside_the_partition_as_an_unregistered_variant(tmp_path, mlflow_store):
    settings = make_settings(tmp_path)
    paths = settings.paths
    config = TrainConfig(**{**CONFIG, "epochs": 1})
    main = train_partition(settings, config, max_folds=2)
    comparison = train_other_loss(settings, config, main, max_folds=2)

    focal_arch = Paths.variant_arch("convnext", "focal")
    variant = json.loads(paths.model_summary(focal_arch, "scs").read_text())
    assert variant["loss"] == "focal" and variant["variant"] == "focal" and variant["model_version"] is None
    assert paths.model_test_predictions(focal_arch, "scs").is_file()
    # The partition's own outputs are untouched by the variant and name the comparison.
    summary = json.loads(paths.model_summary("convnext", "scs").read_text())
    assert summary["loss"] == "weighted_ce" and summary["loss_comparison"] == comparison
    assert [r["loss"] for r in comparison["runs"]] == ["weighted_ce", "focal"]
    assert all(0.0 <= r["test_macro_recall"] <= 1.0 for r in comparison["runs"])
    # Same test rows for both, so the report compares them row for row.
    tables = [pl.read_parquet(paths.model_test_predictions(a, "scs")) for a in ("convnext", focal_arch)]
    assert tables[0]["row_id"].to_list() == tables[1]["row_id"].to_list()
    # One registered version (the partition's), two partition runs with loss as a param.
    versions = MlflowClient().search_model_versions("name = 'lss-scs'")
    assert [int(v.version) for v in versions] == [1]
    parents = [r for r in runs_of("lss-scs") if "mlflow.parentRunId" not in r.data.tags]
    assert sorted(r.data.params["loss"] for r in parents) == ["focal", "weighted_ce"]
    assert {r.data.tags.get("variant") for r in parents} == {None, "focal"}
    assert "| focal |" in comparison_markdown(comparison)


KILLER = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from pathlib import Path
from lss_pipeline.core.settings import Settings
from lss_pipeline.core.train import tracking
from lss_pipeline.core.train.config import TrainConfig
from lss_pipeline.core.train.run import train_partition

root = Path(sys.argv[1])
tracking.configure_mlflow(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts")
settings = Settings(data_dir=root / "data", raw_dir=root / "raw", profile_name="demo")
epochs = []

def stop():
    epochs.append(1)
    if len(epochs) == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)  # as `kill -9`: nothing gets to clean up
    return False

train_partition(settings, TrainConfig(**CONFIG), should_stop=stop)
"""


def test_kill_9_then_rerun_resumes_in_place_and_ends_with_the_uninterrupted_weights(
    partition, tmp_path, caplog
):
    _, _, straight = partition
    settings = make_settings(tmp_path)
    script = textwrap.dedent(KILLER).replace("TrainConfig(**CONFIG)", f"TrainConfig(**{CONFIG!r})")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    # Fold 0 finishes (2 epochs), fold 1 is killed after its first epoch's checkpoint.
    killed = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    configure(tmp_path)
    state = json.loads(settings.paths.model_training_state("convnext", "scs").read_text())
    assert tracking.run_status(state["mlflow_run_id"]) == "RUNNING"  # what kill -9 leaves behind
    fold1_run = torch.load(
        Paths.checkpoint_last(settings.paths.model_fold_dir("convnext", "scs", 1)), weights_only=True
    )["mlflow_run_id"]
    assert tracking.run_status(fold1_run) == "RUNNING"

    log = logging.getLogger("dagster-like")
    with caplog.at_level(logging.INFO, logger="dagster-like"):
        resumed = train_partition(settings, TrainConfig(**CONFIG), log=log)
    assert "fold 1: resumed from epoch 1 of 2" in caplog.text
    assert "fold 0: finished by an earlier attempt" in caplog.text
    assert resumed.resumed and resumed.mlflow_run_id == state["mlflow_run_id"]

    runs = runs_of("lss-scs")
    assert {r.info.status for r in runs} == {"FINISHED"} and len(runs) == 1 + len(FOLDS)
    client = MlflowClient()
    for run in runs:
        if "fold" in run.data.tags:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_macro_recall")]
            assert steps == [0, 1], (run.data.tags["fold"], steps)  # no epoch logged twice, none missing
    for fold_then, fold_now in zip(straight.folds, resumed.folds, strict=True):
        assert fold_now.history == fold_then.history
        for key, value in fold_then.model.state_dict().items():
            torch.testing.assert_close(fold_now.model.state_dict()[key], value, rtol=0, atol=0, msg=key)
    np.testing.assert_array_equal(
        resumed.test_predictions.select(PROB_COLUMNS).to_numpy(),
        straight.test_predictions.select(PROB_COLUMNS).to_numpy(),
    )


def test_a_leftover_of_another_config_is_marked_killed_and_training_starts_over(
    tmp_path, mlflow_store, caplog
):
    settings = make_settings(tmp_path)
    with pytest.raises(RuntimeError, match="stop here"):
        train_partition(
            settings,
            TrainConfig(**{**CONFIG, "epochs": 1}),
            register=False,
            should_stop=lambda: (_ for _ in ()).throw(RuntimeError("stop here")),
        )
    (first,) = [r for r in runs_of("lss-scs") if "fold" not in r.data.tags]
    assert first.info.status == "FAILED"
    # A crash that ended nothing: make the runs look as kill -9 leaves them.
    for run in runs_of("lss-scs"):
        MlflowClient().update_run(run.info.run_id, status="RUNNING")

    with caplog.at_level(logging.INFO, logger="lss_pipeline.core.train.run"):
        again = train_partition(settings, TrainConfig(**{**CONFIG, "epochs": 1, "lr": 1e-3}), register=False)
    assert not again.resumed and again.mlflow_run_id != first.info.run_id
    status = {r.info.run_id: r.info.status for r in runs_of("lss-scs")}
    assert status[first.info.run_id] == "KILLED" and status[again.mlflow_run_id] == "FINISHED"
    assert "RUNNING" not in status.values()
    assert all(f.resumed_from_epoch is None for f in again.folds)
