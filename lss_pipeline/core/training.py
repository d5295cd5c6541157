"""Training loop for one architecture x category: crops in, checkpoints + OOF probabilities out.

AdamW, linear warm-up then cosine decay (per step), early stopping and best checkpoint on
validation macro recall. A resume checkpoint (``last.pt``) is written atomically after every
epoch; a rerun with the same config and data continues from it and ends with the same
weights as an uninterrupted run (on CPU, where the loop is deterministic).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import polars as pl
import torch
from sklearn.metrics import recall_score
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler

from lss_pipeline.core.atomic import atomic_path, write_parquet
from lss_pipeline.core.augment import FLIP_AXIS_BY_CATEGORY, CropAugmenter, flip_batch_to_left
from lss_pipeline.core.constants import CATEGORIES, CLASS_NAMES
from lss_pipeline.core.losses import LOSS_NAMES, build_loss
from lss_pipeline.core.models import count_macs, count_parameters, create_model
from lss_pipeline.core.settings import PROFILES

log = logging.getLogger(__name__)

WEIGHT_SCHEMES: tuple[str, ...] = ("inverse_frequency", "effective_number", "competition", "none")
INDEX_COLUMNS: tuple[str, ...] = ("crop_index", "study_id", "row_id", "condition", "side", "level", "label", "fold")
OOF_ID_COLUMNS: tuple[str, ...] = ("study_id", "row_id", "condition", "side", "level", "label", "fold")
PROB_COLUMNS: tuple[str, ...] = tuple(f"prob_{name}" for name in CLASS_NAMES)
CHECKPOINT_VERSION = 1
# Config fields that change how fast, not what, is computed: a resume may differ in them.
_RESUME_FREE_FIELDS = frozenset({"num_workers", "device", "in_memory_max_bytes"})


class Tracker(Protocol):
    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...


class TrainingInterrupted(RuntimeError):
    """``should_stop`` asked to stop; ``last.pt`` holds the finished epochs."""


@dataclass
class TrainConfig:
    arch: str = "convnext"
    timm_name: str = "convnext_atto"
    category: str = "scs"
    in_chans: int = 5  # = crop slices
    crop_px: int = 64
    loss: str = "weighted_ce"
    weight_scheme: str = "inverse_frequency"
    gamma: float = 2.0
    epochs: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.05
    batch_size: int = 32
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01  # cosine ends at lr * min_lr_ratio
    patience: int = 4  # epochs without a better val macro recall before stopping; <= 0: never
    seed: int = 42
    val_fold: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on CUDA, else fp32) | fp32 | bf16
    channels_last: bool | None = None  # None: on CUDA only
    num_workers: int = 0
    pretrained_path: str | None = None
    flip_merge: bool = False  # mirror right-side crops to look left (nfs, sbs)
    augment: bool = True
    max_train_batches: int | None = None  # cap per epoch, for tests
    in_memory_max_bytes: int = 4 << 30  # crops up to this size are read into RAM once

    @classmethod
    def from_profile(cls, profile: str, arch: str, category: str, **overrides: Any) -> "TrainConfig":
        prof = PROFILES[profile]
        base = dict(
            arch=arch, timm_name=prof.models[arch], category=category, in_chans=prof.slices,
            crop_px=prof.crop_px, epochs=prof.epochs, batch_size=prof.batch_size, lr=prof.lr,
        )
        return cls(**{**base, **overrides})

    def validate(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"category {self.category!r} not in {CATEGORIES}")
        if self.loss not in LOSS_NAMES:
            raise ValueError(f"loss {self.loss!r} not in {LOSS_NAMES}")
        if self.weight_scheme not in WEIGHT_SCHEMES:
            raise ValueError(f"weight_scheme {self.weight_scheme!r} not in {WEIGHT_SCHEMES}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision {self.precision!r} not in ('auto', 'fp32', 'bf16')")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device {self.device!r}: expected auto, cpu, cuda or cuda:N")
        if self.flip_merge and self.category not in FLIP_AXIS_BY_CATEGORY:
            raise ValueError(f"flip_merge needs a sided category {sorted(FLIP_AXIS_BY_CATEGORY)}, got {self.category!r}")
        for name in ("epochs", "batch_size", "in_chans", "crop_px"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.warmup_epochs < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("lr must be > 0, warmup_epochs >= 0, min_lr_ratio in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    best_epoch: int  # 0-based
    best_metrics: dict[str, float]  # validation metrics of the best epoch
    history: list[dict[str, float]]  # per epoch, including epochs before a resume
    epochs_run: int  # epochs completed in total
    stopped_early: bool
    resumed_from_epoch: int | None  # epochs already done when this call started
    params: int
    macs: int
    train_images_per_s: float  # training-phase throughput of this call's epochs
    device: str
    precision: str
    best_path: Path
    last_path: Path
    oof_path: Path
    model: nn.Module = field(repr=False)  # best weights, CPU, eval mode

    @property
    def best_val_macro_recall(self) -> float:
        return self.best_metrics["val_macro_recall"]

    def summary(self) -> dict[str, Any]:
        """JSON-ready facts for summary.json and asset metadata."""
        return {
            "best_epoch": self.best_epoch, "best_metrics": self.best_metrics, "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early, "resumed_from_epoch": self.resumed_from_epoch,
            "params": self.params, "macs": self.macs, "gmacs": self.macs / 1e9,
            "train_images_per_s": self.train_images_per_s, "device": self.device, "precision": self.precision,
        }


def class_weights_for(class_weights_path: str | os.PathLike, val_fold: int, scheme: str) -> list[float] | None:
    """Pick the weights of ``scheme`` for ``val_fold`` from class_weights.json (``none`` -> None)."""
    if scheme == "none":
        return None
    path = Path(class_weights_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    try:
        weights = data["by_val_fold"][str(val_fold)]["weights"][scheme]
    except KeyError as exc:
        raise KeyError(f"{path}: no weights for val fold {val_fold}, scheme {scheme!r} (missing {exc})") from None
    return [float(w) for w in weights]


# ----------------------------------------------------------------------------- data


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
        self.flip_right = None if flip_right is None or not np.any(flip_right) else np.asarray(flip_right, dtype=bool)
        self.category = category
        self._memory: np.ndarray | None = None
        self._mmap: np.ndarray | None = None
        if in_memory:
            mm = np.load(self.crops_path, mmap_mode="r")
            order = np.argsort(self.crop_indices, kind="stable")  # sequential reads
            data = np.empty((len(self.crop_indices), *mm.shape[1:]), dtype=mm.dtype)
            data[order] = mm[self.crop_indices[order]]
            self._memory = data

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
        rows = self.crop_indices[positions]
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), *self._mmap.shape[1:]), dtype=self._mmap.dtype)
        out[order] = self._mmap[rows[order]]
        return out

    def __getitems__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        pos = np.asarray(positions, dtype=np.int64)
        crops = self._read(pos).astype(np.float32)
        if self.flip_right is not None:
            crops = flip_batch_to_left(crops, self.flip_right[pos], self.category)
        if self.augmenter.train:
            seed = int(np.random.SeedSequence([self.seed, self.epoch, int(pos[0]), len(pos)]).generate_state(1)[0])
            crops = self.augmenter.batch(crops, seed)
        return torch.from_numpy(np.ascontiguousarray(crops)), torch.from_numpy(self.labels[pos])

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([position])
        return x[0], y[0]


def _batch_as_is(batch: Any) -> Any:
    # __getitems__ already returns stacked tensors.
    return batch


def _read_index(index_path: Path, n_crops: int) -> pl.DataFrame:
    if not index_path.is_file():
        raise FileNotFoundError(f"crop index not found: {index_path}")
    index = pl.read_parquet(index_path)
    missing = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing:
        raise ValueError(f"{index_path}: missing columns {missing}")
    out_of_range = index.filter((pl.col("crop_index") < 0) | (pl.col("crop_index") >= n_crops))
    if out_of_range.height:
        raise ValueError(
            f"{index_path}: crop_index {out_of_range['crop_index'][0]} (row_id {out_of_range['row_id'][0]}) "
            f"outside crops.npy's {n_crops} rows"
        )
    bad_label = index.filter(pl.col("label").is_not_null() & ~pl.col("label").is_in([0, 1, 2]))
    if bad_label.height:
        raise ValueError(f"{index_path}: label {bad_label['label'][0]} for row_id {bad_label['row_id'][0]} not in 0/1/2")
    return index


def _data_fingerprint(crops_path: Path, index_path: Path, class_weights: list[float] | None) -> str:
    # Size + mtime for the (possibly many-GB) crops, content for the small index.
    stat = crops_path.stat()
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}:{class_weights}".encode())
    digest.update(index_path.read_bytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- loop pieces


def resolve_device(device: str, precision: str, channels_last: bool | None) -> tuple[torch.device, torch.dtype | None, bool]:
    """-> (device, autocast dtype or None for fp32, channels_last)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for, but CUDA is not available")
    if precision == "auto":
        use_bf16 = dev.type == "cuda" and torch.cuda.is_bf16_supported()
    else:
        use_bf16 = precision == "bf16"
    return dev, (torch.bfloat16 if use_bf16 else None), (dev.type == "cuda" if channels_last is None else channels_last)


def warmup_cosine(total_steps: int, warmup_steps: int, min_lr_ratio: float) -> Callable[[int], float]:
    """LR multiplier: linear from 1/warmup to 1, then cosine down to ``min_lr_ratio``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


@contextlib.contextmanager
def _deterministic_cpu(enabled: bool) -> Iterator[None]:
    """Deterministic kernels for the duration of a CPU run, then the caller's setting back."""
    if not enabled:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    before_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    python_state = state["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))


def _save_atomic(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _recalls(labels: np.ndarray, preds: np.ndarray) -> tuple[float, list[float]]:
    per_class = recall_score(labels, preds, labels=[0, 1, 2], average=None, zero_division=np.nan)
    # A class absent from the fold has no recall; the macro mean skips it.
    macro = float(np.nanmean(per_class)) if not np.all(np.isnan(per_class)) else float("nan")
    return macro, [float(r) for r in per_class]


def _predict(model: nn.Module, loader: DataLoader, device: torch.device, amp_dtype, channels_last: bool) -> tuple[np.ndarray, np.ndarray]:
    """Logits (float32) and labels of a whole loader."""
    model.eval()
    logits_list, labels_list = [], []
    with torch.inference_mode():
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(x)
            logits_list.append(logits.float().cpu())
            labels_list.append(y)
    return torch.cat(logits_list).numpy(), torch.cat(labels_list).numpy()


def _val_metrics(logits: np.ndarray, labels: np.ndarray, criterion: nn.Module) -> dict[str, float]:
    known = labels >= 0
    logits_t = torch.from_numpy(logits[known])
    labels_t = torch.from_numpy(labels[known])
    with torch.no_grad():
        val_loss = float(criterion.cpu()(logits_t, labels_t))
    macro, per_class = _recalls(labels[known], logits[known].argmax(1))
    metrics = {"val_loss": val_loss, "val_macro_recall": macro}
    metrics.update({f"val_recall_{name}": r for name, r in zip(CLASS_NAMES, per_class)})
    return metrics


# ----------------------------------------------------------------------------- main entry


def train_model(
    config: TrainConfig,
    crops_path: str | os.PathLike,
    index_path: str | os.PathLike,
    class_weights: list[float] | None,
    out_dir: str | os.PathLike,
    *,
    tracker: Tracker | None = None,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train ``config`` on every fold but ``config.val_fold``; validate on that fold.

    Writes ``last.pt`` (each epoch), ``best.pt``, ``oof.parquet`` into ``out_dir``.
    ``progress(epoch, epochs, metrics)`` runs after each epoch's checkpoint; ``should_stop()``
    returning True then raises :class:`TrainingInterrupted` (rerun to resume).
    """
    config.validate()
    crops_path, index_path, out_dir = Path(crops_path), Path(index_path), Path(out_dir)
    if not crops_path.is_file():
        raise FileNotFoundError(f"crops not found: {crops_path}")
    crops = np.load(crops_path, mmap_mode="r")
    if crops.ndim != 4 or crops.shape[1] != config.in_chans or crops.shape[2:] != (config.crop_px, config.crop_px):
        raise ValueError(
            f"{crops_path}: shape {crops.shape}, config expects (N, {config.in_chans}, {config.crop_px}, {config.crop_px})"
        )
    index = _read_index(index_path, crops.shape[0])
    train_rows = index.filter((pl.col("fold") != config.val_fold) & pl.col("label").is_not_null())
    val_rows = index.filter(pl.col("fold") == config.val_fold)
    if train_rows.height == 0 or val_rows.filter(pl.col("label").is_not_null()).height == 0:
        raise ValueError(
            f"{index_path}: val fold {config.val_fold} leaves {train_rows.height} labelled training crops and "
            f"{val_rows.filter(pl.col('label').is_not_null()).height} labelled validation crops; both must be > 0"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path, oof_path = out_dir / "last.pt", out_dir / "best.pt", out_dir / "oof.parquet"
    device, amp_dtype, channels_last = resolve_device(config.device, config.precision, config.channels_last)
    precision = "bf16" if amp_dtype is not None else "fp32"
    fingerprint = _data_fingerprint(crops_path, index_path, class_weights)
    resume_key = {k: v for k, v in config.to_dict().items() if k not in _RESUME_FREE_FIELDS}

    # Datasets: read into RAM once when small; flip merge is a fixed mapping, used in val too.
    needed_bytes = (train_rows.height + val_rows.height) * int(np.prod(crops.shape[1:])) * crops.dtype.itemsize
    in_memory = needed_bytes <= config.in_memory_max_bytes

    def make_dataset(rows: pl.DataFrame, train: bool) -> CropDataset:
        flip = (rows["side"] == "right").fill_null(False).to_numpy() if config.flip_merge else None
        return CropDataset(
            crops_path, rows["crop_index"].to_numpy(), rows["label"].fill_null(-1).to_numpy(),
            augmenter=CropAugmenter(train=train and config.augment), seed=config.seed,
            flip_right=flip, category=config.category, in_memory=in_memory,
        )

    train_set, val_set = make_dataset(train_rows, True), make_dataset(val_rows, False)
    loader_kwargs = dict(
        collate_fn=_batch_as_is, num_workers=config.num_workers, pin_memory=device.type == "cuda",
    )
    val_loader = DataLoader(val_set, batch_size=config.batch_size * 2, sampler=SequentialSampler(val_set), **loader_kwargs)

    with _deterministic_cpu(device.type == "cpu"):
        torch.manual_seed(config.seed)
        model = create_model(
            config.timm_name, config.in_chans, len(CLASS_NAMES), img_size=config.crop_px,
            pretrained_path=config.pretrained_path,
        )
        params = count_parameters(model)
        macs = count_macs(model, (1, config.in_chans, config.crop_px, config.crop_px))
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        criterion = build_loss(config.loss, class_weights, config.gamma, len(CLASS_NAMES)).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        # Drop the ragged last batch: a batch of one breaks BatchNorm, and shuffling
        # means a different remainder sits out each epoch.
        drop_last = len(train_set) > config.batch_size
        steps_per_epoch = len(train_set) // config.batch_size if drop_last else 1
        if config.max_train_batches is not None:
            steps_per_epoch = min(steps_per_epoch, config.max_train_batches)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            warmup_cosine(steps_per_epoch * config.epochs, round(steps_per_epoch * config.warmup_epochs), config.min_lr_ratio),
        )

        start_epoch, best_metric, best_epoch, since_best, stopped_early = 0, -math.inf, -1, 0, False
        history: list[dict[str, float]] = []
        resumed_from: int | None = None
        if last_path.is_file():
            ckpt = torch.load(last_path, map_location="cpu", weights_only=True)
            if ckpt.get("version") == CHECKPOINT_VERSION and ckpt.get("resume_key") == resume_key and ckpt.get("data") == fingerprint:
                model.load_state_dict(ckpt["model"])
                optimizer.load_state_dict(ckpt["optimizer"])
                scheduler.load_state_dict(ckpt["scheduler"])
                _set_rng_state(ckpt["rng"])
                start_epoch, best_metric, best_epoch = ckpt["epoch"] + 1, ckpt["best_metric"], ckpt["best_epoch"]
                since_best, stopped_early, history = ckpt["since_best"], ckpt["stopped_early"], list(ckpt["history"])
                resumed_from = start_epoch
                log.info("resuming %s from %s after epoch %d", config.timm_name, last_path, ckpt["epoch"])
            else:
                log.info("ignoring %s: written for another config or other data", last_path)

        if tracker is not None:
            tracker.log_params({**config.to_dict(), "params": params, "macs": macs, "gmacs": round(macs / 1e9, 4),
                                "precision": precision, "n_train": len(train_set), "n_val": len(val_set)})
            for step, past in enumerate(history):  # a resumed run still shows the whole curve
                tracker.log_metrics(past, step=step)

        train_images, train_seconds = 0, 0.0
        for epoch in range(start_epoch, config.epochs):
            if stopped_early:
                break
            model.train()
            train_set.epoch = epoch
            shuffle = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
            train_loader = DataLoader(
                train_set, batch_size=config.batch_size, sampler=RandomSampler(train_set, generator=shuffle),
                drop_last=drop_last, **loader_kwargs,
            )
            loss_sum = torch.zeros((), device=device)
            seen = 0
            started = time.perf_counter()
            for batch_number, (x, y) in enumerate(train_loader):
                if batch_number >= steps_per_epoch:
                    break
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    logits = model(x)
                loss = criterion(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.detach() * len(y)  # no per-batch host sync
                seen += len(y)
            train_loss = float(loss_sum) / max(seen, 1)  # syncs the device once
            train_seconds += time.perf_counter() - started
            train_images += seen

            logits, labels = _predict(model, val_loader, device, amp_dtype, channels_last)
            metrics = {"train_loss": train_loss, **_val_metrics(logits, labels, criterion),
                       "lr": optimizer.param_groups[0]["lr"]}
            criterion.to(device)
            history.append(metrics)
            if metrics["val_macro_recall"] > best_metric:
                best_metric, best_epoch, since_best = metrics["val_macro_recall"], epoch, 0
                _save_atomic({"model": model.state_dict(), "epoch": epoch, "metrics": metrics,
                              "config": config.to_dict()}, best_path)
            else:
                since_best += 1
            stopped_early = config.patience > 0 and since_best >= config.patience and epoch + 1 < config.epochs
            _save_atomic({
                "version": CHECKPOINT_VERSION, "resume_key": resume_key, "data": fingerprint, "config": config.to_dict(),
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "epoch": epoch, "best_metric": best_metric, "best_epoch": best_epoch, "since_best": since_best,
                "stopped_early": stopped_early, "history": history, "rng": _rng_state(),
            }, last_path)
            if tracker is not None:
                tracker.log_metrics(metrics, step=epoch)
            if progress is not None:
                progress(epoch, config.epochs, metrics)
            if should_stop is not None and should_stop():
                raise TrainingInterrupted(f"stopped after epoch {epoch}; {last_path} resumes it")

        if not best_path.is_file() or best_epoch < 0:
            raise RuntimeError(f"{out_dir}: no best checkpoint after training (last.pt from an older run?)")
        best = torch.load(best_path, map_location="cpu", weights_only=True)
        model.load_state_dict(best["model"])
        logits, labels = _predict(model, val_loader, device, amp_dtype, channels_last)

    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy().astype(np.float64)
    oof = val_rows.select(OOF_ID_COLUMNS).with_columns(
        [pl.Series(name, probs[:, i]) for i, name in enumerate(PROB_COLUMNS)]
    )
    write_parquet(oof, oof_path)
    best_metrics = history[best_epoch]
    if tracker is not None:
        tracker.log_metrics({f"best_{k}": v for k, v in best_metrics.items() if k.startswith("val_")}
                            | {"best_epoch": best_epoch, "epochs_run": len(history)})
    model = model.to("cpu", memory_format=torch.contiguous_format).eval()
    return TrainResult(
        best_epoch=best_epoch, best_metrics=best_metrics, history=history, epochs_run=len(history),
        stopped_early=stopped_early, resumed_from_epoch=resumed_from, params=params, macs=macs,
        train_images_per_s=train_images / train_seconds if train_seconds > 0 else float("nan"),
        device=str(device), precision=precision, best_path=best_path, last_path=last_path, oof_path=oof_path,
        model=model,
    )
