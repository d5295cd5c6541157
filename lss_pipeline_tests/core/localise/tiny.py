"""A tiny synthetic study set with ingest done and small localisers fitted on it, shared by the
localisation, prediction and asset tests (seconds, not minutes: the models are not accurate)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from lss_pipeline.core.settings import Settings

TRAIN_STUDIES = 6
TEST_STUDIES = 2
ROWS = 128
TINY_WIDTHS = (8, 8, 16, 16, 16)


@dataclass
class TinySet:
    settings: Settings
    metadata: pl.DataFrame
    labels: pl.DataFrame
    splits: pl.DataFrame


def build_tiny_set(root: Path, seed: int = 11) -> TinySet:
    from lss_pipeline.core.dicom.store import ingest_dicom_folder
    from lss_pipeline.core.labels.splits import assign_studies, write_splits
    from lss_pipeline.core.labels.store import ingest_labels
    from lss_pipeline.core.synth import generate_dataset

    raw = root / "raw"
    generate_dataset(
        raw, n_studies=TRAIN_STUDIES, n_test_studies=TEST_STUDIES, seed=seed, rows=ROWS, workers=1
    )
    settings = Settings(data_dir=root, raw_dir=raw, profile_name="demo")
    metadata = ingest_dicom_folder(settings.paths, workers=1).metadata
    labels, _, _ = ingest_labels(settings.paths)
    ids = sorted(labels["study_id"].unique().to_list())
    # Two cv folds and two held-out test studies, whatever the hash says (tests need both parts).
    splits = assign_studies(ids, n_folds=2, test_share=0.0).with_columns(
        pl.when(pl.col("study_id").is_in(ids[-2:]))
        .then(pl.lit("test"))
        .otherwise(pl.lit("cv"))
        .alias("split"),
        pl.when(pl.col("study_id").is_in(ids[-2:])).then(None).otherwise(pl.col("fold")).alias("fold"),
    )
    write_splits(splits, settings.paths)
    return TinySet(settings, metadata, labels, splits)


def fit_tiny_localisers(tiny: TinySet, epochs: int = 2) -> dict:
    """Localisers of every category, fitted in seconds and saved where `load_localiser` finds them."""
    from lss_pipeline.core.localise.fit import FitConfig
    from lss_pipeline.core.localise.run import train_localiser

    config = FitConfig(epochs=epochs, batch_size=4, widths=TINY_WIDTHS)
    return {c: train_localiser(tiny.settings, c, config, register=False) for c in ("scs", "nfs", "sbs")}


@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory) -> TinySet:
    return build_tiny_set(tmp_path_factory.mktemp("tiny_lss"))


@pytest.fixture(scope="session")
def tiny_localisers(tiny_set) -> dict:
    return fit_tiny_localisers(tiny_set)


def stand_in_graders() -> dict:
    """Graders that need no training: logits from crop statistics (any batch size)."""
    import torch

    from lss_pipeline.core.predict.grade import Grader

    class MeanGrader(torch.nn.Module):
        def forward(self, crops: torch.Tensor) -> torch.Tensor:
            return torch.stack([crops.mean((1, 2, 3)), crops.std((1, 2, 3)), crops.amax((1, 2, 3))], dim=1)

    return {c: Grader(c, MeanGrader(), "0", 40.0, 64, 5, c != "scs") for c in ("scs", "nfs", "sbs")}


def tiny_models(tiny: TinySet):
    from lss_pipeline.core.localise.run import load_localiser
    from lss_pipeline.core.predict.run import Models

    localisers = {c: load_localiser(tiny.settings.paths, c) for c in ("scs", "nfs", "sbs")}
    return Models(localisers, stand_in_graders())
