"""Training runs in MLflow, for the loss comparison: the best run per architecture x category x loss."""

from __future__ import annotations

import polars as pl

from lss_pipeline.core.constants import ARCHITECTURES, CATEGORIES

MLFLOW_RUNS_REQUIRED: tuple[str, ...] = ("arch", "category", "loss", "run_id", "val_macro_recall")
RUNS_SCHEMA = {
    "arch": pl.Utf8,
    "category": pl.Utf8,
    "loss": pl.Utf8,
    "weight_scheme": pl.Utf8,
    "run_id": pl.Utf8,
    "val_macro_recall": pl.Float64,
}


def training_runs_table() -> pl.DataFrame:
    """Every finished partition run of the ``lss-<category>`` experiments (MLflow configured).

    A partition run (not a fold's nested run) logs its out-of-fold macro recall.
    """
    import mlflow

    experiments = [e for e in (mlflow.get_experiment_by_name(f"lss-{c}") for c in CATEGORIES) if e]
    if not experiments:
        return pl.DataFrame(schema=RUNS_SCHEMA)
    runs = mlflow.search_runs(
        experiment_ids=[e.experiment_id for e in experiments],
        filter_string="attributes.status = 'FINISHED'",
        output_format="list",
    )
    rows = [
        {
            "arch": run.data.params.get("arch"),
            "category": run.data.params.get("category"),
            "loss": run.data.params.get("loss"),
            "weight_scheme": run.data.params.get("weight_scheme"),
            "run_id": run.info.run_id,
            "val_macro_recall": run.data.metrics.get("oof_macro_recall"),
        }
        for run in runs
        if run.data.params.get("arch") and run.data.metrics.get("oof_macro_recall") is not None
    ]
    return pl.DataFrame(rows, schema=RUNS_SCHEMA)


def best_runs_by_loss(runs: pl.DataFrame) -> pl.DataFrame:
    """Best run (highest ``val_macro_recall``) per arch x category x loss, with the run count."""
    missing = [c for c in MLFLOW_RUNS_REQUIRED if c not in runs.columns]
    if missing:
        raise ValueError(f"MLflow runs: missing column(s) {missing}; has {runs.columns}")
    keys = ["arch", "category", "loss"]
    scored = runs.with_columns(pl.col("val_macro_recall").cast(pl.Float64)).filter(
        pl.col("val_macro_recall").is_not_null() & pl.col("val_macro_recall").is_not_nan()
    )
    counts = scored.group_by(keys).agg(pl.len().alias("n_runs"))
    best = (
        scored.sort(["val_macro_recall", "run_id"], descending=[True, False])
        .unique(keys, keep="first", maintain_order=True)
        .select(*keys, "run_id", "val_macro_recall")
        .join(counts, on=keys, how="left", maintain_order="left")
    )
    cat_order = {c: i for i, c in enumerate(CATEGORIES)}
    arch_order = {a: i for i, a in enumerate(ARCHITECTURES)}
    return (
        best.with_columns(
            pl.col("category").replace_strict(cat_order, default=99, return_dtype=pl.Int64).alias("_c"),
            pl.col("arch").replace_strict(arch_order, default=99, return_dtype=pl.Int64).alias("_a"),
        )
        .sort(["_c", "_a", "arch", "loss"])
        .drop("_c", "_a")
    )
