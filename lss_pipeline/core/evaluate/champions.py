"""Champion models: the best partition per category and the registry alias that points at it."""

from __future__ import annotations

from typing import Any

import polars as pl

CHAMPION_ALIAS = "champion"
# Chosen on the cross-validation split, never on the test split that reports it.
CHOICE_METRIC = "oof_macro_recall"


def choose_champions(metrics: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """category -> the metrics row with the best out-of-fold macro recall; ties go to fewer MACs.

    Rows without it are skipped; unknown MACs lose a tie; the arch name breaks any remaining tie
    so the choice is deterministic.
    """
    for col in ("category", "arch", CHOICE_METRIC):
        if col not in metrics.columns:
            raise ValueError(f"metrics: missing column {col!r}")
    df = metrics.filter(pl.col(CHOICE_METRIC).is_not_null() & pl.col(CHOICE_METRIC).is_not_nan())
    if "macs" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.Int64).alias("macs"))
    df = df.sort(
        ["category", CHOICE_METRIC, "macs", "arch"], descending=[False, True, False, False], nulls_last=True
    )
    best = df.unique("category", keep="first", maintain_order=True)
    return {row["category"]: row for row in best.iter_rows(named=True)}


def set_champions(metrics: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """Point ``lss-<category>@champion`` at each category's best registered partition (MLflow configured)."""
    from mlflow.tracking import MlflowClient

    if metrics.is_empty():
        return {}
    client = MlflowClient()
    confirmed = {}
    for category, row in choose_champions(metrics).items():
        name, version = row.get("registered_model"), row.get("model_version")
        if not name or not version:
            continue
        client.set_registered_model_alias(name, CHAMPION_ALIAS, str(version))
        confirmed[category] = {
            "arch": row["arch"],
            "version": str(version),
            "registered_model": name,
            "macro_recall": row["test_macro_recall"],
            "macs": row["macs"],
        }
    return confirmed
