"""`evaluation_report`: the thesis table, the Kaggle metric, plots; moves the `champion` aliases.

One call into ``core/evaluate/run.evaluate`` plus metadata for the UI.
"""

import json

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from lss_pipeline.resources import LssSettings, MLflowTracking


@asset(
    group_name="evaluation",
    deps=["trained_model"],
    kinds={"html", "mlflow"},
    description=(
        "Macro recall per architecture × category, Kaggle metric, plots, thesis comparison; "
        "moves the `champion` aliases."
    ),
)
def evaluation_report(
    context: AssetExecutionContext, settings: LssSettings, mlflow_tracking: MLflowTracking
) -> MaterializeResult:
    # MLflow and matplotlib load here, not when the code location loads.
    from lss_pipeline.core.evaluate.run import evaluate

    cfg = settings.get()
    mlflow_tracking.configure(cfg)
    result = evaluate(cfg, tags={"dagster_run_id": context.run.run_id}, progress=context.log.info)
    report = result.report
    return MaterializeResult(
        metadata={
            "report_html": MetadataValue.path(str(report.html_path)),
            "report_md": MetadataValue.path(str(report.markdown_path)),
            "metrics_csv": MetadataValue.path(str(report.csv_path)),
            "table": MetadataValue.md(report.markdown_table),
            "partitions": report.metrics.height,
            "missing_partitions": MetadataValue.json([f"{a}|{c}" for a, c in report.missing]),
            "competition_score": MetadataValue.json(
                {arch: s.get("score") for arch, s in report.competition.items()}
            ),
            "champions": MetadataValue.json(json.loads(json.dumps(result.champions, default=str))),
            "mlflow_run_id": result.mlflow_run_id,
        }
    )
