"""Classification metrics per category and the Kaggle competition metric.

Macro recall is the headline (the thesis reports "recall" for a 3-class imbalanced task, read as
the mean of per-class recall). The competition metric follows docs/dataset.md exactly: weighted log
loss (weights 1/2/4 by true class) per condition group plus ``any_severe_spinal``, averaged.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import polars as pl
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
)

from lss_pipeline.core.constants import (
    CLASS_NAMES,
    CONDITIONS,
    LEVEL_SLUGS,
    SEVERITY_WEIGHTS,
)

LABELS: tuple[int, ...] = (0, 1, 2)
SEVERE_LABEL = 2
# Competition condition groups, keyed by the word Kaggle's metric matches in the row id.
GROUP_OF_CATEGORY: dict[str, str] = {"scs": "spinal", "nfs": "foraminal", "sbs": "subarticular"}
COMPETITION_GROUPS: tuple[str, ...] = ("spinal", "foraminal", "subarticular")
COMPETITION_TERMS: tuple[str, ...] = (*COMPETITION_GROUPS, "any_severe_spinal")
_GROUP_OF_STEM: dict[str, str] = {stem: GROUP_OF_CATEGORY[cat] for (_, cat, _, stem) in CONDITIONS}


def severity_weights(labels: np.ndarray) -> np.ndarray:
    """Competition sample weight (1, 2, 4) of each true label 0, 1, 2."""
    return np.asarray(SEVERITY_WEIGHTS, dtype=np.float64)[np.asarray(labels, dtype=np.int64)]


def normalise_probabilities(proba: np.ndarray, *, what: str = "predictions") -> np.ndarray:
    """Rows scaled to sum to 1 (as the Kaggle metric does); bad rows raise naming their index."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] != len(LABELS):
        raise ValueError(f"{what}: expected shape (n, 3), got {proba.shape}")
    bad = ~np.isfinite(proba).all(axis=1) | (proba < 0).any(axis=1)
    row_sums = proba.sum(axis=1)
    bad |= ~(row_sums > 0)
    if bad.any():
        first = np.flatnonzero(bad)[:5].tolist()
        raise ValueError(
            f"{what}: {int(bad.sum())} rows have negative, non-finite or all-zero "
            f"probabilities (first row indices {first})"
        )
    return proba / row_sums[:, None]


def _check_labels(y_true: np.ndarray, n_rows: int) -> np.ndarray:
    y_true = np.asarray(y_true)
    if y_true.ndim != 1 or len(y_true) != n_rows:
        raise ValueError(f"y_true: expected {n_rows} labels, got shape {y_true.shape}")
    if len(y_true) == 0:
        raise ValueError("y_true: no rows to score")
    if not np.isin(y_true, LABELS).all():
        bad = sorted(set(np.unique(y_true).tolist()) - set(LABELS))
        raise ValueError(f"y_true: labels must be 0, 1 or 2; found {bad}")
    return y_true.astype(np.int64)


def classification_metrics(y_true: Any, proba: Any) -> dict[str, Any]:
    """Metrics of one model on one category's labels (0, 1, 2) and class probabilities (n, 3).

    Keys: ``macro_recall`` (mean recall over the classes present in ``y_true``; equal to
    ``balanced_accuracy``), ``recall``/``precision``/``f1`` (lists of 3, per class; recall
    is NaN for a class absent from ``y_true``, precision/F1 are 0 where undefined),
    ``recall_<class>`` etc. as flat keys, ``severe_recall``, ``confusion_matrix`` (3×3 list,
    rows true, columns predicted, labels 0..2 always), ``weighted_log_loss`` (weights
    1/2/4 by true class), ``n``, ``class_counts``.
    """
    proba = normalise_probabilities(proba, what="proba")
    y_true = _check_labels(y_true, len(proba))
    y_pred = proba.argmax(axis=1)

    with warnings.catch_warnings():
        # Undefined precision (a class never predicted) is reported as 0 on purpose, and
        # balanced accuracy skips classes absent from y_true: both warnings are expected.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        precision, _, f1, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=list(LABELS), zero_division=0.0
        )
        balanced_accuracy = float(balanced_accuracy_score(y_true, y_pred))

    cm = confusion_matrix(y_true, y_pred, labels=list(LABELS))
    support = cm.sum(axis=1)
    # Recall of a class with no true rows is undefined: NaN, and left out of the macro mean
    # (the same convention as balanced accuracy).
    recall = np.full(len(LABELS), np.nan)
    present = support > 0
    recall[present] = np.diag(cm)[present] / support[present]
    macro_recall = float(np.mean(recall[present]))

    weighted_ll = float(log_loss(y_true, proba, sample_weight=severity_weights(y_true), labels=list(LABELS)))

    out: dict[str, Any] = {
        "n": int(len(y_true)),
        "class_counts": support.astype(int).tolist(),
        "macro_recall": macro_recall,
        "balanced_accuracy": balanced_accuracy,
        "severe_recall": float(recall[SEVERE_LABEL]),
        "weighted_log_loss": weighted_ll,
        "recall": [float(r) for r in recall],
        "precision": [float(p) for p in precision],
        "f1": [float(f) for f in f1],
        "confusion_matrix": cm.astype(int).tolist(),
    }
    for i, name in enumerate(CLASS_NAMES):
        out[f"recall_{name}"] = float(recall[i])
        out[f"precision_{name}"] = float(precision[i])
        out[f"f1_{name}"] = float(f1[i])
    return out


def make_row_id(study_id: int, stem: str, level_slug: str) -> str:
    """Submission row id ``{study_id}_{train.csv stem}_{level slug}``."""
    return f"{int(study_id)}_{stem}_{level_slug}"


def parse_row_id(row_id: str) -> tuple[int, str, str]:
    """(study_id, train.csv stem, level slug) of a submission row id; unknown parts raise."""
    head, sep, rest = row_id.partition("_")
    slug = rest[-5:]
    stem = rest[:-6]
    if not sep or not head.isdigit() or slug not in LEVEL_SLUGS or rest[-6:-5] != "_":
        raise ValueError(f"row_id {row_id!r} is not '{{study_id}}_{{condition}}_{{level}}'")
    if stem not in _GROUP_OF_STEM:
        raise ValueError(f"row_id {row_id!r}: unknown condition {stem!r}")
    return int(head), stem, slug


def _require_columns(df: pl.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; has {df.columns}")


def competition_score(solution: pl.DataFrame, submission: pl.DataFrame) -> dict[str, Any]:
    """The RSNA 2024 Kaggle metric (docs/dataset.md), lower is better.

    ``solution``: ``row_id`` and ``label`` (0/1/2, null for a blank label). ``submission``:
    ``row_id, normal_mild, moderate, severe``. Blank-label rows are dropped first (from both
    the group losses and ``any_severe_spinal``); every remaining row needs a prediction.
    Predictions are scaled to sum to 1 per row; sklearn's ``log_loss`` clips them.

    Returns ``spinal``, ``foraminal``, ``subarticular``, ``any_severe_spinal``, ``score``
    (mean of the four), plus ``n_rows`` and ``n_studies`` scored.
    """
    _require_columns(solution, ("row_id", "label"), "solution")
    _require_columns(submission, ("row_id", *CLASS_NAMES), "submission")
    for name, df in (("solution", solution), ("submission", submission)):
        dup = df.filter(pl.col("row_id").is_duplicated())["row_id"].unique().sort()
        if len(dup):
            raise ValueError(f"{name}: duplicated row_id(s) {dup.head(5).to_list()}")

    scored = solution.select("row_id", pl.col("label").cast(pl.Int64)).filter(pl.col("label").is_not_null())
    if scored.is_empty():
        raise ValueError("solution: every label is blank; nothing to score")
    bad_labels = scored.filter(~pl.col("label").is_in(list(LABELS)))
    if len(bad_labels):
        raise ValueError(f"solution: labels must be 0/1/2 or null; row {bad_labels.row(0)}")

    joined = scored.join(
        submission.select("row_id", *[pl.col(c).cast(pl.Float64) for c in CLASS_NAMES]),
        on="row_id",
        how="left",
    )
    unpredicted = joined.filter(pl.any_horizontal(pl.col(c).is_null() for c in CLASS_NAMES))
    if len(unpredicted):
        raise ValueError(
            f"submission: {len(unpredicted)} labelled row(s) have no prediction, e.g. "
            f"{unpredicted['row_id'].head(5).to_list()}"
        )

    parsed = [parse_row_id(r) for r in joined["row_id"].to_list()]
    study_ids = np.array([p[0] for p in parsed], dtype=np.int64)
    groups = np.array([_GROUP_OF_STEM[p[1]] for p in parsed])
    y_true = joined["label"].to_numpy().astype(np.int64)
    proba = normalise_probabilities(joined.select(CLASS_NAMES).to_numpy(), what="submission")
    weights = severity_weights(y_true)

    result: dict[str, Any] = {}
    for group in COMPETITION_GROUPS:
        mask = groups == group
        if not mask.any():
            raise ValueError(f"solution: no labelled {group} rows; the metric needs all three groups")
        result[group] = float(
            log_loss(y_true[mask], proba[mask], sample_weight=weights[mask], labels=list(LABELS))
        )

    spinal = groups == "spinal"
    spinal_df = pl.DataFrame(
        {
            "study_id": study_ids[spinal],
            "is_severe": (y_true[spinal] == SEVERE_LABEL).astype(np.int64),
            "p_severe": proba[spinal, SEVERE_LABEL],
            "weight": weights[spinal],
        }
    )
    per_study = spinal_df.group_by("study_id").agg(
        pl.col("is_severe").max(), pl.col("p_severe").max(), pl.col("weight").max()
    )
    p_severe = per_study["p_severe"].to_numpy()
    result["any_severe_spinal"] = float(
        log_loss(
            per_study["is_severe"].to_numpy(),
            np.column_stack([1.0 - p_severe, p_severe]),
            sample_weight=per_study["weight"].to_numpy(),
            labels=[0, 1],
        )
    )
    result["score"] = float(np.mean([result[t] for t in COMPETITION_TERMS]))
    result["n_rows"] = int(len(joined))
    result["n_studies"] = int(len(np.unique(study_ids)))
    return result
