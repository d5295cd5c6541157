"""One fold's training: learns, validates on its own fold only, predicts the test split, resumes exactly."""

import json
import logging

import numpy as np
import polars as pl
import pytest
import torch
from sklearn.metrics import recall_score

from lss_pipeline.core.constants import PROB_COLUMNS
from lss_pipeline.core.train.augment import CropAugmenter
from lss_pipeline.core.train.config import TrainConfig
from lss_pipeline.core.train.data import CropDataset, class_weights_for
from lss_pipeline.core.train.fold import plan_fold
from lss_pipeline.core.train.loop import TrainingInterrupted, train_fold, warmup_cosine
from lss_pipeline_tests.core.train.synthetic_crops import PX, write_synthetic_crops


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # The test machine is shared: oversubscribed OpenMP threads make each step 10x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class RecordingTracker:
    def __init__(self):
        self.params, self.metrics = {}, []

    def log_params(self, params):
        self.params.update(params)

    def log_metrics(self, metrics, step=None):
        self.metrics.append((step, dict(metrics)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_crops(tmp_path_factory.mktemp("crops"))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    crops, index = data
    # ConvNeXt (LayerNorm, no BatchNorm): learns from scratch only with the model's input
    # normalisation (models.CropClassifier); without it it stays at chance here.
    config = TrainConfig(
        arch="convnext",
        timm_name="convnext_atto",
        crop_px=PX,
        epochs=6,
        batch_size=32,
        lr=1e-3,
        patience=6,
        device="cpu",
        val_fold=0,
    )
    tracker = RecordingTracker()
    seen = []
    plan = plan_fold(config, crops, index, [1.0, 2.0, 4.0], tmp_path_factory.mktemp("fold0"))
    result = train_fold(plan, tracker=tracker, progress=lambda e, n, m: seen.append(e))
    return config, plan, result, tracker, seen


def test_training_learns_synthetic_crops_well_above_chance(trained):
    _, _, result, _, seen = trained
    assert result.best_val_macro_recall >= 0.8  # chance is 1/3
    assert seen == list(range(result.epochs_run))
    assert result.best_path.is_file() and result.last_path.is_file()
    assert result.macs > 0 and result.params > 0
    assert result.summary()["gmacs"] == pytest.approx(result.macs / 1e9)


def test_rows_train_on_other_folds_validate_on_own_and_never_touch_the_test_split(trained, data):
    config, plan, result, _, _ = trained
    index = pl.read_parquet(data[1])
    test_studies = set(index.filter(pl.col("split") == "test")["study_id"])
    assert test_studies  # the fixture holds a test split
    assert not test_studies & set(plan.rows.train["study_id"]) and not test_studies & set(
        plan.rows.val["study_id"]
    )
    assert set(plan.rows.train["fold"].to_list()) == {1, 2, 3} and set(plan.rows.val["fold"].to_list()) == {0}
    assert result.test_probs.shape == (len(plan.rows.test), 3)
    np.testing.assert_allclose(result.test_probs.sum(1), 1.0, atol=1e-6)


def test_oof_holds_every_validation_crop_with_the_best_epochs_probabilities(trained):
    config, plan, result, _, _ = trained
    oof = pl.read_parquet(plan.oof_path)
    assert oof.columns == ["study_id", "row_id", "condition", "side", "level", "label", "fold", *PROB_COLUMNS]
    assert oof["row_id"].to_list() == plan.rows.val["row_id"].to_list()
    probs = oof.select(PROB_COLUMNS).to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    recall = recall_score(oof["label"].to_numpy(), probs.argmax(1), labels=[0, 1, 2], average="macro")
    assert recall == pytest.approx(result.best_val_macro_recall)
    assert result.best_val_macro_recall == max(h["val_macro_recall"] for h in result.history)


def test_tracker_gets_params_and_per_epoch_metrics(trained):
    config, _, result, tracker, _ = trained
    assert tracker.params["timm_name"] == "convnext_atto" and tracker.params["macs"] == result.macs
    per_epoch = [m for step, m in tracker.metrics if step is not None]
    assert [step for step, _ in tracker.metrics if step is not None] == list(range(result.epochs_run))
    expected = {
        "train_loss",
        "val_loss",
        "val_macro_recall",
        "lr",
        "val_recall_normal_mild",
        "val_recall_moderate",
        "val_recall_severe",
    }
    assert all(expected <= set(m) for m in per_epoch)
    lrs = [m["lr"] for m in per_epoch]
    assert max(lrs) <= config.lr and lrs[-1] < lrs[1]  # cosine decays after the warm-up


def test_killed_run_resumes_and_matches_uninterrupted_run(data, tmp_path, caplog):
    crops, index = data
    config = TrainConfig(
        timm_name="convnext_atto",
        crop_px=PX,
        epochs=2,
        batch_size=16,
        max_train_batches=3,
        device="cpu",
        patience=0,
        warmup_epochs=0.5,
    )
    straight = train_fold(plan_fold(config, crops, index, None, tmp_path / "straight"))

    with pytest.raises(TrainingInterrupted):
        train_fold(plan_fold(config, crops, index, None, tmp_path / "killed"), should_stop=lambda: True)
    assert torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["epoch"] == 0

    epochs_seen = []
    plan = plan_fold(config, crops, index, None, tmp_path / "killed")
    assert plan.resumed_from_epoch == 1
    log = logging.getLogger("resume-test")
    with caplog.at_level(logging.INFO, logger="resume-test"):
        resumed = train_fold(plan, progress=lambda e, n, m: epochs_seen.append(e), log=log)
    assert "resumed from epoch 1" in caplog.text
    assert resumed.resumed_from_epoch == 1 and epochs_seen == [1]
    assert resumed.history == straight.history
    final_straight = torch.load(straight.last_path, weights_only=True)["model"]
    final_resumed = torch.load(resumed.last_path, weights_only=True)["model"]
    for key, value in final_straight.items():
        torch.testing.assert_close(final_resumed[key], value, rtol=0, atol=0, msg=key)

    # Another config must not resume from that checkpoint.
    other = plan_fold(
        TrainConfig(**{**config.to_dict(), "lr": 5e-4}), crops, index, None, tmp_path / "killed"
    )
    assert other.resume is None


def test_bad_inputs_raise_clear_errors(data, tmp_path):
    crops, index = data
    with pytest.raises(ValueError, match="crops.npy: shape"):
        plan_fold(TrainConfig(crop_px=64, device="cpu"), crops, index, None, tmp_path)
    broken = tmp_path / "index.parquet"
    pl.read_parquet(index).drop("split").write_parquet(broken)
    with pytest.raises(ValueError, match="missing columns \\['split'\\]"):
        plan_fold(TrainConfig(crop_px=PX, device="cpu"), crops, broken, None, tmp_path)
    frame = pl.read_parquet(index)
    frame.with_columns(
        pl.when(pl.col("crop_index") == 7).then(None).otherwise(pl.col("fold")).alias("fold")
    ).filter(pl.col("split") == "cv").write_parquet(broken)
    with pytest.raises(ValueError, match="split 'cv' but no fold; first: row_id '1001_"):
        plan_fold(TrainConfig(crop_px=PX, device="cpu"), crops, broken, None, tmp_path)
    with pytest.raises(ValueError, match="val fold 9"):
        plan_fold(TrainConfig(crop_px=PX, device="cpu", val_fold=9), crops, index, None, tmp_path)
    with pytest.raises(ValueError, match="flip_merge"):
        TrainConfig(category="scs", flip_merge=True).validate()
    assert not (tmp_path / "oof.parquet").exists()


def test_dataset_flip_merge_mirrors_right_side_nfs_crops(data):
    crops, _ = data
    raw = np.load(crops, mmap_mode="r")
    dataset = CropDataset(
        crops,
        np.array([3, 4]),
        np.array([0, 1]),
        augmenter=CropAugmenter(train=False),
        flip_right=np.array([False, True]),
        category="nfs",
        in_memory=False,
    )
    x, y = dataset.__getitems__([0, 1])
    np.testing.assert_array_equal(x[0].numpy(), raw[3].astype(np.float32))
    np.testing.assert_array_equal(x[1].numpy(), raw[4, ::-1].astype(np.float32))
    assert y.tolist() == [0, 1]


def test_class_weights_for_reads_the_scheme_of_the_fold(tmp_path):
    path = tmp_path / "class_weights.json"
    path.write_text(
        json.dumps(
            {
                "by_val_fold": {
                    "0": {
                        "train_counts": [8, 2, 1],
                        "weights": {"inverse_frequency": [0.4, 1.8, 3.6], "competition": [1, 2, 4]},
                    }
                }
            }
        )
    )
    assert class_weights_for(path, 0, "competition") == [1.0, 2.0, 4.0]
    assert class_weights_for(path, 0, "none") is None
    with pytest.raises(KeyError, match="val fold 1"):
        class_weights_for(path, 1, "competition")
    with pytest.raises(FileNotFoundError, match="materialize class_weights"):
        class_weights_for(tmp_path / "absent.json", 0, "competition")


def test_warmup_then_cosine_schedule():
    factor = warmup_cosine(total_steps=100, warmup_steps=10, min_lr_ratio=0.01)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0) and factor(100) == pytest.approx(0.01)
    assert all(factor(s) >= factor(s + 1) for s in range(10, 100))
