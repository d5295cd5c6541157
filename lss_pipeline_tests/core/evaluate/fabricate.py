"""Small hand-made trained partitions as training writes them (summary, OOF table, test predictions).

Predictions equal the label except for the first ``wrong[c]`` rows of each class c, which are
predicted as class (c + 1) % 3, so recall of class c is 1 − wrong[c] / rows of class c.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from lss_pipeline.core.constants import CONDITIONS, LEVEL_SLUGS, LEVELS
from lss_pipeline.core.evaluate.metrics import make_row_id
from lss_pipeline.core.paths import Paths

CV_STUDIES = list(range(101, 109))  # 8 cross-validation studies, folds study % 4
TEST_STUDIES = list(range(201, 211))  # 10 test studies
N_FOLDS = 4
DATASET = {"kind": "synthetic", "fingerprint": "abc123", "n_studies": 18}
MACS = {"convnext": 2_000_000_000, "resnet": 500_000_000, "swin": 2_100_000_000}
PARAMS = {"convnext": 3_700_000, "resnet": 11_200_000, "swin": 3_900_000}


def rows_of(category: str, studies: list[int]) -> list[tuple]:
    """(study_id, row_id, condition, side, level) of every row of one category."""
    return [
        (s, make_row_id(s, stem, slug), cond, side, lvl)
        for s in studies
        for (cond, cat, side, stem) in CONDITIONS
        if cat == category
        for lvl, slug in zip(LEVELS, LEVEL_SLUGS, strict=True)
    ]


def labels_of(n: int) -> np.ndarray:
    return np.arange(n) % 3  # every class present


def class_counts(category: str, studies: list[int]) -> np.ndarray:
    return np.bincount(labels_of(len(rows_of(category, studies))), minlength=3)


def expected_macro_recall(category: str, studies: list[int], wrong: tuple[int, int, int]) -> float:
    counts = class_counts(category, studies)
    return float(np.mean([1 - wrong[c] / counts[c] for c in range(3)]))


def prediction_table(
    category: str, studies: list[int], wrong: tuple[int, int, int], fold: bool
) -> pl.DataFrame:
    rows = rows_of(category, studies)
    labels = labels_of(len(rows))
    preds = labels.copy()
    for c in range(3):
        idx = np.flatnonzero(labels == c)[: wrong[c]]
        preds[idx] = (c + 1) % 3
    probs = np.full((len(rows), 3), 0.15)
    probs[np.arange(len(rows)), preds] = 0.7
    columns = {
        "study_id": [r[0] for r in rows],
        "row_id": [r[1] for r in rows],
        "condition": [r[2] for r in rows],
        "side": [r[3] for r in rows],
        "level": [r[4] for r in rows],
        "label": labels.tolist(),
    }
    if fold:
        columns["fold"] = [r[0] % N_FOLDS for r in rows]
    columns |= {"prob_normal_mild": probs[:, 0], "prob_moderate": probs[:, 1], "prob_severe": probs[:, 2]}
    overrides = {"study_id": pl.Int64, "side": pl.Utf8, "label": pl.Int8, "fold": pl.Int8}
    return pl.DataFrame(columns, schema_overrides={k: v for k, v in overrides.items() if k in columns})


def write_partition(
    paths: Paths,
    arch: str,
    category: str,
    wrong_test: tuple[int, int, int],
    wrong_oof: tuple[int, int, int] = (0, 0, 0),
    *,
    version: str | None = "3",
    params: int | None = None,
    macs: int | None = None,
) -> None:
    paths.model_dir(arch, category).mkdir(parents=True, exist_ok=True)
    prediction_table(category, CV_STUDIES, wrong_oof, fold=True).write_parquet(
        paths.model_oof(arch, category)
    )
    test = prediction_table(category, TEST_STUDIES, wrong_test, fold=False)
    test.with_columns(pl.lit(N_FOLDS, dtype=pl.Int16).alias("n_models")).write_parquet(
        paths.model_test_predictions(arch, category)
    )
    summary = {
        "arch": arch,
        "timm_name": f"{arch}_tiny",
        "category": category,
        "loss": "weighted_ce",
        "weight_scheme": "effective_number",
        "n_folds": N_FOLDS,
        "folds_trained": list(range(N_FOLDS)),
        "coverage": {"cv_studies": len(CV_STUDIES), "oof_studies": len(CV_STUDIES)},
        "test_predictions": "mean of the fold models' softmax",
        "params": params if params is not None else PARAMS[arch],
        "macs": macs if macs is not None else MACS[arch],
        "mlflow_run_id": f"run-{arch}-{category}",
        "registered_model": f"lss-{category}" if version else None,
        "model_version": int(version) if version else None,
    }
    paths.model_summary(arch, category).write_text(json.dumps(summary))


def write_splits(paths: Paths) -> None:
    """data_splits.parquet of the fabricated studies."""
    paths.processed_dir.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {
            "study_id": CV_STUDIES + TEST_STUDIES,
            "split": ["cv"] * len(CV_STUDIES) + ["test"] * len(TEST_STUDIES),
            "fold": [s % N_FOLDS for s in CV_STUDIES] + [None] * len(TEST_STUDIES),
        },
        schema={"study_id": pl.Int64, "split": pl.Utf8, "fold": pl.Int8},
    ).write_parquet(paths.data_splits)
