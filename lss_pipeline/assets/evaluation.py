"""`evaluation_report`: the thesis table, the Kaggle metric, plots; sets the `champion` aliases."""


import json

import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from lss_pipeline.core.atomic import write_json
from lss_pipeline.core.constants import ARCHITECTURES, CATEGORIES
from lss_pipeline.core.label_watch import read_label_snapshot
from lss_pipeline.core.settings import Settings
from lss_pipeline.resources import LssSettings, MLflowTracking

CHAMPION_ALIAS = "champion"


def dataset_info(settings: Settings) -> dict:
    """What the report was computed on: synthetic or RSNA, with a fingerprint of the label files."""
    snapshot = read_label_snapshot(settings.raw_dir, settle_seconds=0.0)
    labels_path = settings.processed_dir / "labels.parquet"
    n_studies = pl.read_parquet(labels_path, columns=["study_id"])["study_id"].n_unique() if labels_path.exists() else None
    return {
        "kind": "synthetic" if (settings.raw_dir / "synth_manifest.json").exists() else "rsna",
        "fingerprint": (snapshot.labels_hash or "")[:16] or None,
        "n_studies": n_studies,
        "raw_dir": str(settings.raw_dir),
    }


def training_runs_table() -> pl.DataFrame:
    """Every finished training run of the lss-<category> experiments (for the loss comparison)."""
    import mlflow

    experiments = [e for e in (mlflow.get_experiment_by_name(f"lss-{c}") for c in CATEGORIES) if e is not None]
    if not experiments:
        return pl.DataFrame()
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
            "val_macro_recall": run.data.metrics.get("best_val_macro_recall"),
        }
        for run in runs
        if run.data.params.get("arch") and run.data.metrics.get("best_val_macro_recall") is not None
    ]
    return pl.DataFrame(rows) if rows else pl.DataFrame()


def set_champions(settings: Settings) -> dict[str, dict]:
    """Point `lss-<category>@champion` at the best available model: macro recall, then fewer MACs."""
    from mlflow.tracking import MlflowClient

    from lss_pipeline.core import report as report_core

    rows = []
    for arch in ARCHITECTURES:
        for category in CATEGORIES:
            loaded = report_core.load_partition(settings.models_dir, arch, category)
            if loaded is not None:
                rows.append(report_core.partition_metrics(*loaded, arch, category))
    if not rows:
        return {}
    champions = report_core.choose_champions(pl.DataFrame(rows))
    client = MlflowClient()
    confirmed = {}
    for category, row in champions.items():
        name, version = row.get("registered_model"), row.get("model_version")
        if not name or not version:
            continue
        client.set_registered_model_alias(name, CHAMPION_ALIAS, str(version))
        confirmed[category] = {
            "arch": row["arch"],
            "version": str(version),
            "registered_model": name,
            "macro_recall": row["macro_recall"],
            "macs": row["macs"],
        }
    return confirmed


@asset(
    group_name="evaluation",
    deps=["trained_model"],
    kinds={"html", "mlflow"},
    description="Macro recall per architecture × category, Kaggle metric, plots, thesis comparison; sets `champion` aliases.",
)
def evaluation_report(
    context: AssetExecutionContext, settings: LssSettings, mlflow_tracking: MLflowTracking
) -> MaterializeResult:
    # MLflow and matplotlib load here, not when the code location loads.
    import mlflow

    from lss_pipeline.core import report as report_core
    from lss_pipeline.core import tracking

    cfg = settings.get()
    mlflow_tracking.configure(cfg)
    champions = set_champions(cfg)
    for category, champ in champions.items():
        context.log.info(f"{champ['registered_model']}@{CHAMPION_ALIAS} -> v{champ['version']} ({champ['arch']})")
    write_json(champions, cfg.reports_dir / "champions.json")
    labels_path = cfg.processed_dir / "labels.parquet"
    result = report_core.build_report(
        cfg.models_dir,
        cfg.reports_dir,
        dataset_info=dataset_info(cfg),
        mlflow_runs=training_runs_table(),
        champions=champions,
        labels=pl.read_parquet(labels_path) if labels_path.exists() else None,
        progress=context.log.info,
    )
    with tracking.start_run(
        "lss-evaluation", run_name="evaluation-report", tags={"dagster_run_id": context.run.run_id}
    ) as run:
        tracking.log_params({"partitions": result.metrics.height, "missing": len(result.missing)})
        tracking.log_metrics(
            {
                f"{row['arch']}_{row['category']}_macro_recall": row["macro_recall"]
                for row in result.metrics.iter_rows(named=True)
            }
        )
        tracking.log_metrics(
            {f"{arch}_competition_score": s["score"] for arch, s in result.competition.items() if "score" in s}
        )
        mlflow.log_artifacts(str(cfg.reports_dir), artifact_path="report")
    return MaterializeResult(
        metadata={
            "report_html": MetadataValue.path(str(result.html_path)),
            "report_md": MetadataValue.path(str(result.markdown_path)),
            "metrics_csv": MetadataValue.path(str(result.csv_path)),
            "table": MetadataValue.md(result.markdown_table),
            "partitions": result.metrics.height,
            "missing_partitions": MetadataValue.json([f"{a}|{c}" for a, c in result.missing]),
            "competition_score": MetadataValue.json(
                {arch: s.get("score") for arch, s in result.competition.items()}
            ),
            "champions": MetadataValue.json(json.loads(json.dumps(champions, default=str))),
            "mlflow_run_id": run.run_id,
        }
    )
