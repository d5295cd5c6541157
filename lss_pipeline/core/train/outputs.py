"""What a trained partition leaves behind: OOF and test-prediction tables, summary, history table.

- OOF (``paths.model_oof``): every trained fold's validation rows, each scored by the model that
  did not train on it (concat of the folds' ``oof.parquet``).
- Test predictions (``paths.model_test_predictions``): every test-split row, the mean of the fold
  models' softmax (the fold ensemble's probabilities).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from lss_pipeline.core.constants import CLASS_NAMES, PROB_COLUMNS
from lss_pipeline.core.markdown import markdown_rows
from lss_pipeline.core.train.data import PREDICTION_ID_COLUMNS
from lss_pipeline.core.train.fold import FoldResult
from lss_pipeline.core.train.predict import recalls, with_probabilities


def oof_table(folds: list[FoldResult]) -> pl.DataFrame:
    return pl.concat([f.oof for f in folds], how="vertical")


def test_table(test_rows: pl.DataFrame, folds: list[FoldResult]) -> pl.DataFrame:
    """Test rows with the mean of the fold models' probabilities, and how many models averaged."""
    probs = np.mean(np.stack([f.test_probs for f in folds]), axis=0)
    table = with_probabilities(test_rows, PREDICTION_ID_COLUMNS, probs)
    return table.with_columns(pl.lit(len(folds), dtype=pl.Int16).alias("n_models"))


def table_recalls(table: pl.DataFrame, prefix: str) -> dict[str, float]:
    """``{prefix}macro_recall`` and per-class recalls over the labelled rows of a prediction table."""
    labelled = table.filter(pl.col("label").is_not_null())
    if labelled.is_empty():
        return {}
    preds = labelled.select(PROB_COLUMNS).to_numpy().argmax(axis=1)
    macro, per_class = recalls(labelled["label"].cast(pl.Int64).to_numpy(), preds)
    out = {f"{prefix}macro_recall": macro}
    out.update({f"{prefix}recall_{name}": r for name, r in zip(CLASS_NAMES, per_class, strict=True)})
    return out


def coverage(index: pl.DataFrame, oof: pl.DataFrame) -> dict[str, Any]:
    """How much of the cv split the OOF table scores (all of it when every fold was trained)."""
    cv = index.filter(pl.col("split") == "cv")
    cv_studies = cv["study_id"].n_unique()
    covered = oof["study_id"].n_unique()
    return {
        "cv_studies": cv_studies,
        "oof_studies": covered,
        "oof_rows": oof.height,
        "cv_rows": cv.height,
        "oof_study_share": covered / cv_studies if cv_studies else 0.0,
    }


def history_markdown(folds: list[FoldResult]) -> str:
    """One row per fold and epoch; the chosen (best) epoch of each fold is starred."""
    rows = []
    for fold in folds:
        for epoch, h in enumerate(fold.history):
            rows.append(
                [
                    fold.fold,
                    f"{epoch + 1}{' *' if epoch == fold.best_epoch else ''}",
                    h.get("train_loss"),
                    h.get("val_loss"),
                    h.get("val_macro_recall"),
                ]
            )
    return markdown_rows(["fold", "epoch", "train loss", "val loss", "val macro recall"], rows)
