"""Crops and their index for training: which rows train, validate and are held out, and a batched dataset.

The crop index (``level_crops``' ``index.parquet``) carries ``split`` (``cv`` | ``test``) and
``fold`` (0..K-1 for cv rows, null for test rows). A fold model trains on the cv rows of the
other folds and validates on its own fold's rows; test rows are only ever predicted.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch.utils.data import Dataset

from lss_pipeline.core.labels.class_weights import load_class_weights
from lss_pipeline.core.train.augment import CropAugmenter, flip_batch_to_left

INDEX_COLUMNS: tuple[str, ...] = (
    "crop_index",
    "study_id",
    "row_id",
    "condition",
    "side",
    "level",
    "label",
    "split",
    "fold",
)
# Identity columns of every prediction table; OOF tables add the fold.
PREDICTION_ID_COLUMNS: tuple[str, ...] = ("study_id", "row_id", "condition", "side", "level", "label")
OOF_ID_COLUMNS: tuple[str, ...] = (*PREDICTION_ID_COLUMNS, "fold")
SPLITS: tuple[str, ...] = ("cv", "test")


def class_weights_for(weights_path: str | os.PathLike, val_fold: int, scheme: str) -> list[float] | None:
    """The loss weights of ``scheme`` for the model validated on ``val_fold`` (``none`` -> None)."""
    if scheme == "none":
        return None
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(f"class weights not found: {path} (materialize class_weights first)")
    try:
        return load_class_weights(path, val_fold, scheme)
    except KeyError as exc:
        raise KeyError(
            f"{path}: no weights for val fold {val_fold}, scheme {scheme!r} (missing {exc})"
        ) from None


def read_index(index_path: str | os.PathLike, n_crops: int) -> pl.DataFrame:
    """The crop index, checked: columns present, crop rows in range, labels 0/1/2, split/fold coherent."""
    index_path = Path(index_path)
    if not index_path.is_file():
        raise FileNotFoundError(f"crop index not found: {index_path}")
    index = pl.read_parquet(index_path)
    missing = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing:
        raise ValueError(f"{index_path}: missing columns {missing}")

    def first_bad(condition: pl.Expr, column: str, problem: str) -> None:
        bad = index.filter(condition)
        if bad.height:
            raise ValueError(
                f"{index_path}: {bad.height} row(s) with {problem}; first: row_id {bad['row_id'][0]!r}, "
                f"{column}={bad[column][0]!r}"
            )

    first_bad(
        (pl.col("crop_index") < 0) | (pl.col("crop_index") >= n_crops),
        "crop_index",
        f"crop_index outside crops.npy's {n_crops} rows",
    )
    first_bad(
        pl.col("label").is_not_null() & ~pl.col("label").is_in([0, 1, 2]), "label", "label not in 0/1/2"
    )
    first_bad(
        pl.col("split").is_null() | ~pl.col("split").is_in(list(SPLITS)), "split", f"split not in {SPLITS}"
    )
    first_bad((pl.col("split") == "cv") & pl.col("fold").is_null(), "fold", "split 'cv' but no fold")
    first_bad((pl.col("split") == "test") & pl.col("fold").is_not_null(), "fold", "split 'test' but a fold")
    return index


def cv_folds(index: pl.DataFrame) -> list[int]:
    """The folds present among the cv rows, sorted."""
    return sorted(int(f) for f in index.filter(pl.col("split") == "cv")["fold"].unique().to_list())


@dataclass(frozen=True)
class FoldRows:
    """The index rows one fold model sees: trains on ``train``, validates on ``val``, predicts ``test``."""

    train: pl.DataFrame  # labelled cv rows of the other folds
    val: pl.DataFrame  # every cv row of this fold (unlabelled ones get probabilities too)
    test: pl.DataFrame  # every test-split row: predicted, never trained on nor used to choose anything


def fold_rows(index: pl.DataFrame, fold: int, index_path: str | os.PathLike = "index") -> FoldRows:
    cv = index.filter(pl.col("split") == "cv")
    train = cv.filter((pl.col("fold") != fold) & pl.col("label").is_not_null())
    val = cv.filter(pl.col("fold") == fold)
    n_val_labelled = val.filter(pl.col("label").is_not_null()).height
    if train.height == 0 or n_val_labelled == 0:
        raise ValueError(
            f"{index_path}: val fold {fold} leaves {train.height} labelled training crops and "
            f"{n_val_labelled} labelled validation crops; both must be > 0"
        )
    return FoldRows(train=train, val=val, test=index.filter(pl.col("split") == "test"))


def data_fingerprint(crops_path: Path, index_path: Path, class_weights: list[float] | None) -> str:
    """What a checkpoint was trained on: size + mtime of the (possibly many-GB) crops, the index's bytes."""
    stat = crops_path.stat()
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}:{class_weights}".encode())
    digest.update(index_path.read_bytes())
    return digest.hexdigest()


def open_crops(crops_path: Path, in_chans: int, crop_px: int) -> np.ndarray:
    """crops.npy memory-mapped, its shape checked against the config."""
    if not crops_path.is_file():
        raise FileNotFoundError(f"crops not found: {crops_path}")
    crops = np.load(crops_path, mmap_mode="r")
    if crops.ndim != 4 or crops.shape[1] != in_chans or crops.shape[2:] != (crop_px, crop_px):
        raise ValueError(
            f"{crops_path}: shape {crops.shape}, config expects (N, {in_chans}, {crop_px}, {crop_px})"
        )
    return crops


class CropDataset(Dataset):
    """Crops of ``crops.npy`` (memory-mapped, or read into RAM when small) with labels.

    ``__getitems__`` serves whole batches: one fancy-index read and a batched augmentation
    instead of per-sample Python calls and a collate. Augmentation is seeded from
    (seed, epoch, batch), so it does not depend on worker count or on resuming.
    """

    def __init__(
        self,
        crops_path: str | os.PathLike,
        crop_indices: np.ndarray,
        labels: np.ndarray,
        *,
        augmenter: CropAugmenter,
        seed: int = 0,
        flip_right: np.ndarray | None = None,
        category: str | None = None,
        in_memory: bool = True,
    ):
        self.crops_path = Path(crops_path)
        self.crop_indices = np.asarray(crop_indices, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.augmenter = augmenter
        self.seed = seed
        self.epoch = 0
        has_right = flip_right is not None and np.any(flip_right)
        self.flip_right = np.asarray(flip_right, dtype=bool) if has_right else None
        self.category = category
        self._memory: np.ndarray | None = None
        self._mmap: np.ndarray | None = None
        if in_memory:
            self._memory = self._read_rows(np.load(self.crops_path, mmap_mode="r"), self.crop_indices)

    @staticmethod
    def _read_rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
        order = np.argsort(rows, kind="stable")  # sequential reads
        out = np.empty((len(rows), *array.shape[1:]), dtype=array.dtype)
        out[order] = array[rows[order]]
        return out

    def __len__(self) -> int:
        return len(self.crop_indices)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_mmap"] = None  # workers reopen the map
        return state

    def _read(self, positions: np.ndarray) -> np.ndarray:
        if self._memory is not None:
            return self._memory[positions]
        if self._mmap is None:
            self._mmap = np.load(self.crops_path, mmap_mode="r")
        return self._read_rows(self._mmap, self.crop_indices[positions])

    def __getitems__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        pos = np.asarray(positions, dtype=np.int64)
        crops = self._read(pos).astype(np.float32)
        if self.flip_right is not None and self.category is not None:
            crops = flip_batch_to_left(crops, self.flip_right[pos], self.category)
        if self.augmenter.train:
            seed = int(
                np.random.SeedSequence([self.seed, self.epoch, int(pos[0]), len(pos)]).generate_state(1)[0]
            )
            crops = self.augmenter.batch(crops, seed)
        return torch.from_numpy(np.ascontiguousarray(crops)), torch.from_numpy(self.labels[pos])

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([position])
        return x[0], y[0]


def batch_as_is(batch: Any) -> Any:
    """The DataLoader's collate: ``__getitems__`` already returns stacked tensors."""
    return batch


def make_dataset(
    crops_path: Path,
    rows: pl.DataFrame,
    *,
    train: bool,
    augment: bool,
    seed: int,
    flip_merge: bool,
    category: str,
    in_memory: bool,
) -> CropDataset:
    """A dataset over ``rows`` of the index; flip merge is a fixed mapping, applied in validation too."""
    flip = (rows["side"] == "right").fill_null(False).to_numpy() if flip_merge else None
    return CropDataset(
        crops_path,
        rows["crop_index"].to_numpy(),
        rows["label"].fill_null(-1).to_numpy(),
        augmenter=CropAugmenter(train=train and augment),
        seed=seed,
        flip_right=flip,
        category=category,
        in_memory=in_memory,
    )
