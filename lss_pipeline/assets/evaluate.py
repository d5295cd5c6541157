"""`evaluation_report`: test-split metrics with intervals, the Kaggle metric, the thesis' claims, plots;
moves the `champion` aliases when a challenger beats the champion on the same test studies.

One call into ``core/evaluate/run.evaluate`` plus metadata for the UI.
"""

import json
from typing import Literal

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from lss_pipeline.resources import LssSettings, MLflowTracking


class EvaluationConfig(Config):
    n_boot: int = 2000  # bootstrap resamples of the test studies per interval
    seed: int = 0  # makes the intervals reproducible
    # A challenger replaces the champion when challenger − champion (test macro recall) exceeds the margin:
    # "bootstrap" at the lower end of the paired 95 % interval, "difference" as the paired difference.
    champion_rule: Literal["bootstrap", "difference"] = "bootstrap"
    champion_margin_pts: float = 0.0


@asset(
    group_name="evaluation",
    deps=["trained_model"],
    kinds={"html", "mlflow"},
    description=(
        "Test-split macro recall per architecture × category with 95 % intervals, Kaggle metric, thesis "
        "claims, plots; moves `champion` only when a challenger beats it on the same test studies."
    ),
)
def evaluation_report(
    context: AssetExecutionContext,
    config: EvaluationConfig,
    settings: LssSettings,
    mlflow_tracking: MLflowTracking,
) -> MaterializeResult:
    # MLflow, torch and matplotlib load here, not when the code location loads.
    from lss_pipeline.core.evaluate.options import EvaluationOptions
    from lss_pipeline.core.evaluate.run import evaluate

    cfg = settings.get()
    mlflow_tracking.configure(cfg)
    options = EvaluationOptions(
        n_boot=config.n_boot,
        seed=config.seed,
        champion_rule=config.champion_rule,
        champion_margin_pts=config.champion_margin_pts,
    )
    result = evaluate(cfg, options, tags={"dagster_run_id": context.run.run_id}, progress=context.log.info)
    report = result.report
    return MaterializeResult(
        metadata={
            "report_html": MetadataValue.path(str(report.html_path)),
            "report_md": MetadataValue.path(str(report.markdown_path)),
            "metrics_csv": MetadataValue.path(str(report.csv_path)),
            "table": MetadataValue.md(report.markdown_table),
            "partitions": report.metrics.height,
            "missing_partitions": MetadataValue.json([f"{a}|{c}" for a, c in report.missing]),
            "test_competition_score": MetadataValue.json(
                {arch: s.get("score") for arch, s in report.competition.items()}
            ),
            "thesis_claims": MetadataValue.json(
                {f"{c.category} convnext>{c.versus}": c.verdict for c in report.claims}
            ),
            "champions": MetadataValue.json(json.loads(json.dumps(result.champions, default=str))),
            "mlflow_run_id": result.mlflow_run_id,
        }
    )
