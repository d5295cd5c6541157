import json

import numpy as np
import polars as pl
import pytest
import torch

from lss_pipeline.core.augment import CropAugmenter
from lss_pipeline.core.training import (
    PROB_COLUMNS,
    CropDataset,
    TrainConfig,
    TrainingInterrupted,
    class_weights_for,
    train_model,
    warmup_cosine,
)

SLICES, PX = 5, 32


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # The test machine is shared: oversubscribed OpenMP threads make each step 10x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_synthetic_crops(folder, n=300, seed=0, px=PX, slices=SLICES):
    """Crops whose class is the radius of a bright disc (learnable, not by mean intensity alone)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=n, p=[0.6, 0.25, 0.15])
    yy, xx = np.mgrid[:px, :px]
    crops = np.empty((n, slices, px, px), np.float16)
    for i, label in enumerate(labels):
        cy, cx = px / 2 + rng.normal(0, 3, 2)
        radius = (0.12, 0.22, 0.32)[label] * px * rng.uniform(0.9, 1.1)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2).astype(np.float32)
        stack = 0.2 + 0.5 * disc[None] * rng.uniform(0.8, 1.0, (slices, 1, 1))
        crops[i] = np.clip(stack + rng.normal(0, 0.08, stack.shape), 0, 1)
    np.save(folder / "crops.npy", crops)
    study_ids = np.arange(n) // 5 + 1000
    index = pl.DataFrame({
        "crop_index": np.arange(n),
        "study_id": pl.Series(study_ids, dtype=pl.Int64),
        "row_id": [f"{s}_spinal_canal_stenosis_l{i % 5 + 1}_l{i % 5 + 2}" for i, s in enumerate(study_ids)],
        "condition": ["Spinal Canal Stenosis"] * n,
        "side": pl.Series([None] * n, dtype=pl.Utf8),
        "level": ["L1/L2"] * n,
        "label": pl.Series(labels, dtype=pl.Int8),
        "fold": pl.Series(study_ids % 4, dtype=pl.Int8),
    })
    index.write_parquet(folder / "index.parquet")
    return folder / "crops.npy", folder / "index.parquet"


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
    out = tmp_path_factory.mktemp("model")
    # ConvNeXt (LayerNorm, no BatchNorm): learns from scratch only with the model's input
    # normalisation (models.CropClassifier); without it it stays at chance here.
    config = TrainConfig(arch="convnext", timm_name="convnext_atto", crop_px=PX, epochs=6, batch_size=32, lr=1e-3,
                         patience=6, device="cpu", val_fold=0)
    tracker = RecordingTracker()
    seen = []
    result = train_model(config, crops, index, [1.0, 2.0, 4.0], out, tracker=tracker,
                         progress=lambda e, n, m: seen.append(e))
    return config, result, tracker, seen, index


def test_training_learns_synthetic_crops_well_above_chance(trained):
    _, result, _, seen, _ = trained
    assert result.best_val_macro_recall >= 0.8  # chance is 1/3
    assert seen == list(range(result.epochs_run))
    assert result.best_path.is_file() and result.last_path.is_file()
    assert result.macs > 0 and result.params > 0
    assert result.summary()["gmacs"] == pytest.approx(result.macs / 1e9)


def test_oof_holds_every_validation_crop_with_probabilities(trained):
    config, result, _, _, index = trained
    oof = pl.read_parquet(result.oof_path)
    val = pl.read_parquet(index).filter(pl.col("fold") == config.val_fold)
    assert oof.columns == ["study_id", "row_id", "condition", "side", "level", "label", "fold", *PROB_COLUMNS]
    assert oof["row_id"].to_list() == val["row_id"].to_list()
    probs = oof.select(PROB_COLUMNS).to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    # The OOF file comes from the best checkpoint: its recall is the best epoch's.
    from sklearn.metrics import recall_score
    recall = recall_score(oof["label"].to_numpy(), probs.argmax(1), labels=[0, 1, 2], average="macro")
    assert recall == pytest.approx(result.best_val_macro_recall)


def test_tracker_gets_params_and_per_epoch_metrics(trained):
    config, result, tracker, _, _ = trained
    assert tracker.params["timm_name"] == "convnext_atto" and tracker.params["macs"] == result.macs
    per_epoch = [m for step, m in tracker.metrics if step is not None]
    assert len(per_epoch) == result.epochs_run
    expected = {"train_loss", "val_loss", "val_macro_recall", "lr",
                "val_recall_normal_mild", "val_recall_moderate", "val_recall_severe"}
    assert all(expected <= set(m) for m in per_epoch)
    lrs = [m["lr"] for m in per_epoch]
    assert max(lrs) <= config.lr and lrs[-1] < lrs[1]  # cosine decays after the warm-up


def test_killed_run_resumes_and_matches_uninterrupted_run(data, tmp_path):
    crops, index = data
    config = TrainConfig(timm_name="convnext_atto", crop_px=PX, epochs=2, batch_size=16, max_train_batches=3,
                         device="cpu", patience=0, warmup_epochs=0.5)
    straight = train_model(config, crops, index, None, tmp_path / "straight")

    with pytest.raises(TrainingInterrupted):
        train_model(config, crops, index, None, tmp_path / "killed", should_stop=lambda: True)
    assert torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["epoch"] == 0

    epochs_seen = []
    resumed = train_model(config, crops, index, None, tmp_path / "killed",
                          progress=lambda e, n, m: epochs_seen.append(e))
    assert resumed.resumed_from_epoch == 1 and epochs_seen == [1]
    assert resumed.history == straight.history
    final_straight = torch.load(straight.last_path, weights_only=True)["model"]
    final_resumed = torch.load(resumed.last_path, weights_only=True)["model"]
    for key, value in final_straight.items():
        torch.testing.assert_close(final_resumed[key], value, rtol=0, atol=0, msg=key)

    # Another config must not resume from that checkpoint.
    other = train_model(TrainConfig(**{**config.to_dict(), "lr": 5e-4}), crops, index, None, tmp_path / "killed")
    assert other.resumed_from_epoch is None


def test_bad_inputs_raise_clear_errors(data, tmp_path):
    crops, index = data
    with pytest.raises(ValueError, match="crops.npy: shape"):
        train_model(TrainConfig(crop_px=64, device="cpu"), crops, index, None, tmp_path)
    broken = tmp_path / "index.parquet"
    pl.read_parquet(index).drop("fold").write_parquet(broken)
    with pytest.raises(ValueError, match="missing columns \\['fold'\\]"):
        train_model(TrainConfig(crop_px=PX, device="cpu"), crops, broken, None, tmp_path)
    with pytest.raises(ValueError, match="val fold 9"):
        train_model(TrainConfig(crop_px=PX, device="cpu", val_fold=9), crops, index, None, tmp_path)
    with pytest.raises(ValueError, match="flip_merge"):
        TrainConfig(category="scs", flip_merge=True).validate()
    assert not (tmp_path / "oof.parquet").exists()


def test_dataset_flip_merge_mirrors_right_side_nfs_crops(data):
    crops, _ = data
    raw = np.load(crops, mmap_mode="r")
    dataset = CropDataset(crops, np.array([3, 4]), np.array([0, 1]), augmenter=CropAugmenter(train=False),
                          flip_right=np.array([False, True]), category="nfs", in_memory=False)
    x, y = dataset.__getitems__([0, 1])
    np.testing.assert_array_equal(x[0].numpy(), raw[3].astype(np.float32))
    np.testing.assert_array_equal(x[1].numpy(), raw[4, ::-1].astype(np.float32))
    assert y.tolist() == [0, 1]


def test_class_weights_for_reads_the_scheme_of_the_fold(tmp_path):
    path = tmp_path / "class_weights.json"
    path.write_text(json.dumps({"by_val_fold": {"0": {"train_counts": [8, 2, 1],
                                "weights": {"inverse_frequency": [0.4, 1.8, 3.6], "competition": [1, 2, 4]}}}}))
    assert class_weights_for(path, 0, "competition") == [1.0, 2.0, 4.0]
    assert class_weights_for(path, 0, "none") is None
    with pytest.raises(KeyError, match="val fold 1"):
        class_weights_for(path, 1, "competition")


def test_warmup_then_cosine_schedule():
    factor = warmup_cosine(total_steps=100, warmup_steps=10, min_lr_ratio=0.01)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0) and factor(100) == pytest.approx(0.01)
    assert all(factor(s) >= factor(s + 1) for s in range(10, 100))
