"""Evaluate the trained grid end to end, inside one MLflow run of experiment ``lss-evaluation``:
load every partition once, decide the champions, write the report and ``champions.json``, and log
the headline numbers and the decisions. MLflow must be configured (``tracking.configure_mlflow``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import polars as pl

from lss_pipeline.core.atomic import write_json
from lss_pipeline.core.evaluate.load import load_grid
from lss_pipeline.core.evaluate.options import EvaluationOptions
from lss_pipeline.core.evaluate.promote import ChampionOutcome, decide_champions
from lss_pipeline.core.evaluate.report import ReportResult, build_report
from lss_pipeline.core.evaluate.runs import training_runs_table
from lss_pipeline.core.evaluate.table import metrics_table
from lss_pipeline.core.label_watch import read_label_snapshot
from lss_pipeline.core.settings import Settings

EVALUATION_EXPERIMENT = "lss-evaluation"


@dataclass
class EvaluationResult:
    report: ReportResult
    # category -> champions.json entry (arch, version, registered_model, macro_recall, decision, ...)
    champions: dict[str, dict[str, Any]]
    outcomes: dict[str, ChampionOutcome]
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


def champions_json(outcomes: dict[str, ChampionOutcome]) -> dict[str, dict[str, Any]]:
    """category -> the champion after this evaluation, with its test macro recall and the decision."""
    out = {}
    for category, outcome in outcomes.items():
        d, recall = outcome.decision, outcome.macro_recall
        out[category] = {
            "arch": d.champion_after_arch,
            "version": d.champion_after,
            "registered_model": d.registered_model,
            "macro_recall": None if recall is None else recall.point,
            "macro_recall_ci95": None if recall is None else [recall.lo, recall.hi],
            "macro_recall_test_studies": outcome.test_studies,
            "macro_recall_class_counts": None
            if outcome.test_class_counts is None
            else list(outcome.test_class_counts),
            **d.as_json(),
        }
    return out


def _log(report: ReportResult, outcomes: dict[str, ChampionOutcome]) -> None:
    from lss_pipeline.core.train import tracking

    metrics: dict[str, float] = {}
    for r in report.metrics.iter_rows(named=True):
        key = f"{r['arch']}_{r['category']}"
        for name in ("test_macro_recall", "test_macro_recall_lo", "test_macro_recall_hi", "oof_macro_recall"):
            metrics[f"{key}_{name}"] = r[name]
    for arch, score in report.competition.items():
        metrics[f"{arch}_test_competition_score"] = score["score"]
    for category, outcome in outcomes.items():
        comparison = outcome.decision.comparison
        if comparison is not None:
            d = comparison.difference
            metrics |= {
                f"{category}_challenger_minus_champion_pts": 100 * d.point,
                f"{category}_challenger_minus_champion_lo_pts": 100 * d.lo,
                f"{category}_challenger_minus_champion_hi_pts": 100 * d.hi,
            }
    tracking.log_metrics(metrics)
    import mlflow

    mlflow.set_tags({f"{c}_champion_decision": o.decision.outcome for c, o in outcomes.items()})
    mlflow.set_tags({f"{c}_champion_version": o.decision.champion_after for c, o in outcomes.items()})
    mlflow.set_tags({f"{c.category}_{c.versus}_claim": c.verdict for c in report.claims})


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
    oof = {(r["arch"], r["category"]): r["oof_macro_recall"] for r in metrics.iter_rows(named=True)}
    with tracking.start_run(EVALUATION_EXPERIMENT, "evaluation-report", dict(tags or {})) as run:
        tracking.log_params({**asdict(options), "partitions": metrics.height, "missing": len(grid.missing)})
        outcomes = decide_champions(grid, oof, paths, options, run.run_id, say)
        champions = champions_json(outcomes)
        write_json(champions, paths.champions_json)
        report = build_report(
            grid,
            paths,
            dataset=dataset_info(settings),
            options=options,
            champions=outcomes,
            mlflow_runs=training_runs_table(),
            metrics=metrics,
            progress=say,
        )
        _log(report, outcomes)
        mlflow.log_artifacts(str(paths.reports_dir), artifact_path="report")
    return EvaluationResult(report=report, champions=champions, outcomes=outcomes, mlflow_run_id=run.run_id)
