"""Is a trained model better than chance on its validation rows? A label-permutation test of macro recall.

Under chance (grades unrelated to the crops) the expected macro recall is 1/3 whatever the
model predicts; shuffling the labels against the predictions draws from exactly that null, so
the p-value needs no assumption about class balance or prediction bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from lss_pipeline.core.constants import CLASS_NAMES, PROB_COLUMNS


@dataclass(frozen=True)
class ChanceTest:
    macro_recall: float
    chance_macro_recall: float  # mean macro recall over the permutations (about 1/3)
    p_value: float  # share of permutations at least as good as the model (+1 smoothing)
    n_rows: int
    per_class_n: dict[str, int]

    def passed(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha


def _macro_recall(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro recall of each row of ``labels`` (P, N) against ``preds`` (N,); classes absent are skipped."""
    hits = labels == preds[None, :]
    recalls = []
    for c in range(n_classes):
        is_c = labels == c
        count = is_c.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            recalls.append(np.where(count > 0, (hits & is_c).sum(axis=1) / count, np.nan))
    return np.nanmean(np.stack(recalls, axis=1), axis=1)


def chance_test(predictions: pl.DataFrame, n_permutations: int = 2000, seed: int = 0) -> ChanceTest:
    """Permutation test on a prediction table (``label`` + probability columns); unlabelled rows skipped."""
    missing = [c for c in ("label", *PROB_COLUMNS) if c not in predictions.columns]
    if missing:
        raise ValueError(f"prediction table lacks columns {missing}; has {predictions.columns}")
    labelled = predictions.filter(pl.col("label").is_not_null())
    if labelled.is_empty():
        raise ValueError("no labelled row to test against chance")
    labels = labelled["label"].cast(pl.Int64).to_numpy()
    preds = labelled.select(PROB_COLUMNS).to_numpy().argmax(axis=1)
    n_classes = len(CLASS_NAMES)
    observed = float(_macro_recall(labels[None, :], preds, n_classes)[0])
    rng = np.random.default_rng(seed)
    shuffled = np.stack([rng.permutation(labels) for _ in range(n_permutations)])
    null = _macro_recall(shuffled, preds, n_classes)
    p_value = float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_permutations))
    counts = np.bincount(labels, minlength=n_classes)
    return ChanceTest(
        macro_recall=observed,
        chance_macro_recall=float(null.mean()),
        p_value=p_value,
        n_rows=len(labels),
        per_class_n={name: int(counts[i]) for i, name in enumerate(CLASS_NAMES)},
    )
