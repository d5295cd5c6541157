"""Evaluate the trained grid end to end: load every partition once, set champions, write the report,
and record it all in an MLflow run of experiment ``lss-evaluation``. MLflow must be configured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from lss_pipeline.core.atomic import write_json
from lss_pipeline.core.evaluate.champions import set_champions
from lss_pipeline.core.evaluate.load import load_grid
from lss_pipeline.core.evaluate.options import EvaluationOptions
from lss_pipeline.core.evaluate.report import ReportResult, build_report
from lss_pipeline.core.evaluate.runs import training_runs_table
from lss_pipeline.core.evaluate.table import metrics_table
from lss_pipeline.core.label_watch import read_label_snapshot
from lss_pipeline.core.settings import Settings

EVALUATION_EXPERIMENT = "lss-evaluation"


@dataclass
class EvaluationResult:
    report: ReportResult
    champions: dict[str, dict[str, Any]]
    mlflow_run_id: str


def dataset_info(settings: Settings) -> dict[str, Any]:
    """What the report was computed on: synthetic or RSNA, a fingerprint of the label files, studies."""
    paths = settings.paths
    snapshot = read_label_snapshot(paths.label_files, settle_seconds=0.0)
    n_studies = (
        pl.read_parquet(paths.labels, columns=["study_id"])["study_id"].n_unique()
        if paths.labels.is_file()
        else None
    )
    return {
        "kind": paths.dataset_kind,
        "fingerprint": (snapshot.labels_hash or "")[:16] or None,
        "n_studies": n_studies,
    }


def evaluate(
    settings: Settings,
    options: EvaluationOptions | None = None,
    *,
    tags: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """Report on every trained partition of ``settings.paths.models_dir`` and move the champions."""
    import mlflow

    from lss_pipeline.core.train import tracking

    say = progress or (lambda _msg: None)
    options = (options or EvaluationOptions()).validate()
    paths = settings.paths
    grid = load_grid(paths, progress=say)
    metrics = metrics_table(grid, options)
    champions = set_champions(metrics)
    for category, champ in champions.items():
        say(f"{champ['registered_model']}@champion -> v{champ['version']} ({champ['arch']}, {category})")
    write_json(champions, paths.champions_json)
    report = build_report(
        grid,
        paths,
        dataset=dataset_info(settings),
        options=options,
        champions=champions,
        mlflow_runs=training_runs_table(),
        metrics=metrics,
        progress=say,
    )
    with tracking.start_run(EVALUATION_EXPERIMENT, "evaluation-report", dict(tags or {})) as run:
        tracking.log_params({"partitions": metrics.height, "missing": len(grid.missing)})
        tracking.log_metrics(
            {
                f"{r['arch']}_{r['category']}_test_macro_recall": r["test_macro_recall"]
                for r in metrics.iter_rows(named=True)
            }
        )
        tracking.log_metrics(
            {f"{arch}_test_competition_score": s["score"] for arch, s in report.competition.items()}
        )
        mlflow.log_artifacts(str(paths.reports_dir), artifact_path="report")
    return EvaluationResult(report=report, champions=champions, mlflow_run_id=run.run_id)
