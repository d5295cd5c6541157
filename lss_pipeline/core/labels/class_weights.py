"""Class counts over training folds and loss weights by three schemes (``class_weights.json``).

Only cv crops count: for validation fold f the counts are over every crop whose fold is not
f; crops of the held-out test split (null fold) never count, nor in ``all_folds`` (the counts
for a model refit on every cv fold). Schemes, per class c with training count n_c:

- ``inverse_frequency``: 1 / n_c, normalised so the weights **average to 1 over the classes**
  (they sum to the number of classes, 3).
- ``effective_number`` (Cui et al., CVPR 2019, "Class-Balanced Loss Based on Effective Number
  of Samples"): (1 - beta) / (1 - beta ** n_c), normalised the same way. By default beta is
  derived from the data as Cui et al. do, beta = (N - 1) / N with N the fold's training count:
  the effective number N (1 - e^(-n_c / N)) then stays close to n_c for the minority classes
  instead of saturating. A fixed 0.999 saturates at real sizes (every class above a few
  thousand crops weighs the same: NFS Normal/Mild : Moderate came out 1 : 1.1).
- ``competition``: the Kaggle metric's row weights 1, 2, 4, unnormalised.

A class with no training crop is counted as one for the weight formulas (its count stays
0 in ``train_counts``), so no weight is infinite.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl

from lss_pipeline.core import constants
from lss_pipeline.core.atomic import write_json
from lss_pipeline.core.markdown import markdown_rows

SCHEMES: tuple[str, ...] = ("inverse_frequency", "effective_number", "competition")
NORMALISATION = (
    "weights of inverse_frequency and effective_number average to 1 over classes (sum = n_classes)"
)


def _normalise(raw: np.ndarray) -> np.ndarray:
    return raw * (len(raw) / raw.sum())


def inverse_frequency_weights(counts: list[int] | np.ndarray) -> list[float]:
    n = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    return _normalise(1.0 / n).tolist()


def effective_number_weights(counts: list[int] | np.ndarray, beta: float) -> list[float]:
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    n = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    return _normalise((1.0 - beta) / (1.0 - np.power(beta, n))).tolist()


def derived_beta(counts: list[int] | np.ndarray) -> float:
    """Cui et al.'s (N - 1) / N for N training samples (0 when there are none)."""
    total = float(np.sum(counts))
    return (total - 1.0) / total if total >= 1.0 else 0.0


def weights_for_counts(counts: list[int], beta: float) -> dict[str, list[float]]:
    return {
        "inverse_frequency": inverse_frequency_weights(counts),
        "effective_number": effective_number_weights(counts, beta),
        "competition": list(constants.SEVERITY_WEIGHTS),
    }


def _counts(labels: np.ndarray) -> list[int]:
    n_classes = len(constants.CLASS_NAMES)
    return np.bincount(labels.astype(np.int64), minlength=n_classes)[:n_classes].astype(int).tolist()


def _entry(counts: list[int], beta: float | None) -> dict:
    fold_beta = derived_beta(counts) if beta is None else beta
    return {"train_counts": counts, "beta": fold_beta, "weights": weights_for_counts(counts, fold_beta)}


def compute_class_weights(
    index: pl.DataFrame,
    n_folds: int,
    beta: float | None = None,
    *,
    category: str | None = None,
) -> dict:
    """The ``class_weights.json`` dict for one category's crop ``index`` (needs ``label`` and ``fold``).

    ``beta`` None derives it per fold from the training count (see the module docstring); a
    number fixes it. ``category`` defaults to the index's ``category`` column, else to the
    category of its ``condition`` strings. Rows of the test split (``split`` = "test", or a null
    fold) are left out of every count. Extra keys beside the contract: ``n_folds``,
    ``normalisation`` and ``all_folds`` (every cv crop, for a model refit on all folds).
    """
    for col in ("label", "fold"):
        if col not in index.columns:
            raise ValueError(f"crop index lacks column {col!r}; has {index.columns}")
    if category is None:
        if "category" in index.columns and index.height:
            category = str(index["category"][0])
        elif "condition" in index.columns and index.height:
            category = constants.CONDITION_CATEGORY[str(index["condition"][0])]
        else:
            raise ValueError("category not given and the crop index has no rows to infer it from")
    cv = index.filter(pl.col("label").is_not_null() & pl.col("fold").is_not_null())
    if "split" in cv.columns:
        cv = cv.filter(pl.col("split") != "test")
    labels = cv["label"].cast(pl.Int64).to_numpy()
    folds = cv["fold"].cast(pl.Int64).to_numpy()
    bad = labels[(labels < 0) | (labels >= len(constants.CLASS_NAMES))]
    if bad.size:
        raise ValueError(f"crop index has labels outside 0..2: {sorted(set(bad.tolist()))}")
    by_fold = {str(fold): _entry(_counts(labels[folds != fold]), beta) for fold in range(n_folds)}
    return {
        "category": category,
        "class_names": list(constants.CLASS_NAMES),
        "beta": "derived: (N - 1) / N per fold, N = training count" if beta is None else beta,
        "n_folds": n_folds,
        "normalisation": NORMALISATION,
        "by_val_fold": by_fold,
        "all_folds": _entry(_counts(labels), beta),
    }


def class_weights_markdown(weights: dict) -> str:
    """A Markdown table: one row per validation fold with train counts and the three weight vectors."""
    names = weights["class_names"]

    def fmt(values: list[float]) -> str:
        return " / ".join(f"{v:.3g}" for v in values)

    entries = list(weights["by_val_fold"].items())
    if "all_folds" in weights:
        entries.append(("all", weights["all_folds"]))
    rows = [
        (
            fold,
            " / ".join(str(c) for c in entry["train_counts"]),
            f"{entry['beta']:.6g}",
            fmt(entry["weights"]["inverse_frequency"]),
            fmt(entry["weights"]["effective_number"]),
            fmt(entry["weights"]["competition"]),
        )
        for fold, entry in entries
    ]
    title = (
        f"Class weights, {weights['category']} (beta: {weights['beta']}; counts over the cv training "
        f"folds, never the test split; classes {', '.join(names)})"
    )
    headers = ("val fold", "train counts", "beta", "inverse frequency", "effective number", "competition")
    return f"{title}\n\n{markdown_rows(headers, rows)}\n"


def write_class_weights(weights: dict, target: str | os.PathLike) -> Path:
    """Write ``class_weights.json`` atomically."""
    return write_json(weights, target)


def load_class_weights(path: str | os.PathLike, val_fold: int | None, scheme: str) -> list[float]:
    """The weight vector of ``scheme`` for training with ``val_fold`` held out (None: all folds)."""
    import json

    if scheme not in SCHEMES:
        raise ValueError(f"scheme {scheme!r} is not one of {SCHEMES}")
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    entry = data["all_folds"] if val_fold is None else data["by_val_fold"][str(val_fold)]
    return [float(v) for v in entry["weights"][scheme]]
