"""The MLflow model registry side of champion vs challenger: aliases, version tags, stored test predictions,
and scoring a registered version on today's test crops. MLflow must be configured.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lss_pipeline.core.evaluate.champions import CHAMPION_ALIAS
from lss_pipeline.core.paths import Paths

# Version tag naming where a version's test predictions were stored (an MLflow artifact URI).
TEST_PREDICTIONS_TAG = "test_predictions_uri"


def _client() -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def champion_version(registered_model: str) -> Any | None:
    """The ModelVersion behind ``{registered_model}@champion``; None when there is no such alias or model."""
    from mlflow.exceptions import MlflowException

    try:
        return _client().get_model_version_by_alias(registered_model, CHAMPION_ALIAS)
    except MlflowException:
        return None


def model_version(registered_model: str, version: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return _client().get_model_version(registered_model, version)
    except MlflowException:
        return None


def set_champion(registered_model: str, version: str) -> None:
    _client().set_registered_model_alias(registered_model, CHAMPION_ALIAS, version)


def tag_version(registered_model: str, version: str, tags: dict[str, Any]) -> None:
    client = _client()
    for key, value in tags.items():
        client.set_model_version_tag(registered_model, version, key, str(value))


def store_test_predictions(registered_model: str, version: str, table: pl.DataFrame) -> str:
    """Log ``table`` as an artifact of the active run and tag the version with its URI; returns the URI."""
    import mlflow

    artifact = Paths.version_test_predictions_artifact(registered_model, version)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / artifact.name
        table.write_parquet(local)
        mlflow.log_artifact(str(local), artifact_path=str(artifact.parent))
    uri = f"{mlflow.get_artifact_uri()}/{artifact.as_posix()}"
    tag_version(registered_model, version, {TEST_PREDICTIONS_TAG: uri})
    return uri


def stored_test_predictions(version: Any) -> pl.DataFrame | None:
    """The test predictions an earlier evaluation stored for this ModelVersion, if any and readable."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = (version.tags or {}).get(TEST_PREDICTIONS_TAG)
    if not uri:
        return None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return pl.read_parquet(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
    except (MlflowException, OSError):
        return None


def score_on_test_crops(registered_model: str, version: Any, paths: Paths, category: str) -> pl.DataFrame:
    """Load ``models:/{registered_model}/{version}`` and predict today's test crops of ``category``.

    The crops are fed as in training's validation (float32, right-side crops mirrored when the version
    was trained with ``flip_merge``); the model returns logits, softmax gives the probabilities.
    Raises ValueError when the crops do not fit the version (other crop size or channel count).
    """
    import mlflow.pytorch
    import torch
    from torch.utils.data import DataLoader

    from lss_pipeline.core.train.data import PREDICTION_ID_COLUMNS, batch_as_is, make_dataset, read_index
    from lss_pipeline.core.train.predict import predict_logits, softmax, with_probabilities

    crops_path = paths.crops_array(category)
    if not crops_path.is_file():
        raise ValueError(f"no crops at {crops_path}")
    shape = np.load(crops_path, mmap_mode="r").shape
    tags = version.tags or {}
    for key, axis in (("in_chans", 1), ("crop_px", 2)):
        if key in tags and int(tags[key]) != shape[axis]:
            raise ValueError(
                f"v{version.version} expects {key}={tags[key]}, today's crops have {shape[axis]}"
            )
    test_rows = read_index(paths.crops_index(category), shape[0]).filter(pl.col("split") == "test")
    if test_rows.is_empty():
        raise ValueError(f"{paths.crops_index(category)}: no test-split crop")
    model = mlflow.pytorch.load_model(f"models:/{registered_model}/{version.version}", map_location="cpu")
    flip_merge = str(tags.get("flip_merge", "False")).lower() == "true"
    dataset = make_dataset(
        crops_path, test_rows, train=False, augment=False, seed=0, flip_merge=flip_merge, category=category,
        in_memory=False,
    )  # fmt: skip
    loader = DataLoader(dataset, batch_size=64, shuffle=False, collate_fn=batch_as_is)
    logits, _ = predict_logits(model, loader, torch.device("cpu"), None, False)
    return with_probabilities(test_rows, PREDICTION_ID_COLUMNS, softmax(logits))
