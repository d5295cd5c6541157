"""Move the ``champion`` alias of ``lss-{category}``: score the current champion on today's test studies,
judge the challenger against it (``champions.judge``), and record the decision in the registry.

The champion's test predictions come from, in order: its partition when it is still the trained one;
the predictions an earlier evaluation stored for its version, when they cover the same test rows;
the registered model itself, loaded from MLflow and run on today's test crops. Every decision is
tagged on the challenger's version; every evaluated version keeps its test predictions (an artifact
of the active ``lss-evaluation`` run) so a later evaluation can compare against it after a retraining.
Needs an active MLflow run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import polars as pl

from lss_pipeline.core.evaluate import registry
from lss_pipeline.core.evaluate.bootstrap import Interval, recall_intervals
from lss_pipeline.core.evaluate.champions import (
    Contender,
    Decision,
    judge,
    pick_challenger,
    registered_version,
)
from lss_pipeline.core.evaluate.load import Grid
from lss_pipeline.core.evaluate.options import EvaluationOptions
from lss_pipeline.core.evaluate.table import report_recall_seed
from lss_pipeline.core.paths import Paths

FROM_PARTITION = "its trained partition's test predictions"
FROM_STORED = "test predictions stored by an earlier evaluation (same test rows)"
FROM_REGISTRY = "the registered model, loaded from MLflow and run on today's test crops"


@dataclasses.dataclass(frozen=True)
class ChampionOutcome:
    decision: Decision
    # The champion after the decision, on today's test studies (None when it could not be scored).
    macro_recall: Interval | None
    test_studies: int | None = None
    test_class_counts: tuple[int, int, int] | None = None  # labelled test rows per class


def _covers(stored: pl.DataFrame, today: pl.DataFrame) -> bool:
    """Whether stored predictions hold every labelled test row of today, for exactly today's studies."""
    if "row_id" not in stored.columns or "study_id" not in stored.columns:
        return False
    labelled = today.filter(pl.col("label").is_not_null())
    same_studies = set(stored["study_id"].to_list()) == set(today["study_id"].to_list())
    return same_studies and set(labelled["row_id"].to_list()) <= set(stored["row_id"].to_list())


def _with_labels(predictions: pl.DataFrame, today: pl.DataFrame) -> pl.DataFrame:
    """Stored or rescored predictions with today's labels (labels may have been corrected since)."""
    return predictions.drop("label", strict=False).join(
        today.select("row_id", "label"), on="row_id", how="inner", maintain_order="left"
    )


def champion_contender(
    current: Any, grid: Grid, category: str, today: pl.DataFrame, paths: Paths
) -> tuple[Contender, str | None, str | None]:
    """(champion with its test predictions or None, where they came from, why not scored)."""
    name, version = current.name, str(current.version)
    tags = current.tags or {}
    for partition in grid.of_category(category):
        if registered_version(partition) == (name, version):
            return Contender(name, version, partition.arch, partition.test), FROM_PARTITION, None
    arch = str(tags.get("arch", "unknown"))
    stored = registry.stored_test_predictions(current)
    if stored is not None and _covers(stored, today):
        return Contender(name, version, arch, _with_labels(stored, today)), FROM_STORED, None
    try:
        rescored = registry.score_on_test_crops(name, current, paths, category)
    except Exception as exc:  # noqa: BLE001 - any failure to load or run the old model keeps it champion
        return Contender(name, version, arch, None), None, f"{type(exc).__name__}: {exc}"
    registry.store_test_predictions(name, version, rescored)
    return Contender(name, version, arch, _with_labels(rescored, today)), FROM_REGISTRY, None


def decision_tags(decision: Decision, evaluation_run_id: str) -> dict[str, Any]:
    tags: dict[str, Any] = {
        "champion_decision": decision.outcome,
        "champion_decision_reason": decision.reason,
        "champion_decision_vs": decision.champion_before or "none",
        "champion_rule": f"{decision.rule}, margin {decision.margin_pts:g} pts",
        "evaluation_run_id": evaluation_run_id,
    }
    if decision.comparison is not None:
        d = decision.comparison.difference
        tags |= {
            "champion_delta_macro_recall_pts": f"{100 * d.point:+.2f}",
            "champion_delta_ci95_pts": f"[{100 * d.lo:+.2f}, {100 * d.hi:+.2f}]",
            "champion_test_studies": decision.comparison.n_studies,
        }
    return tags


def decide_champions(
    grid: Grid,
    oof_macro_recall: dict[tuple[str, str], float],
    paths: Paths,
    options: EvaluationOptions,
    evaluation_run_id: str,
    progress: Callable[[str], None] | None = None,
) -> dict[str, ChampionOutcome]:
    """category -> the champion decision, with the alias moved and the decision tagged in MLflow."""
    say = progress or (lambda _msg: None)
    outcomes: dict[str, ChampionOutcome] = {}
    for category in grid.categories:
        partitions = grid.of_category(category)
        for partition in partitions:  # keep every evaluated version's test predictions
            registered = registered_version(partition)
            found = registered and registry.model_version(*registered)
            if registered and found and registry.TEST_PREDICTIONS_TAG not in (found.tags or {}):
                registry.store_test_predictions(*registered, partition.test)
        scores = {
            p.arch: oof_macro_recall[(p.arch, category)]
            for p in partitions
            if (p.arch, category) in oof_macro_recall
        }
        pick = pick_challenger(partitions, scores)
        if pick is None:
            say(f"{category}: no registered model to judge")
            continue
        name, version = registered_version(pick)  # type: ignore[misc]
        if registry.model_version(name, version) is None:
            say(
                f"{category}: {name} v{version} named by {paths.model_summary(pick.arch, category)} "
                "is not in the registry; no champion decision"
            )
            continue
        challenger = Contender(name, version, pick.arch, pick.test)
        current = registry.champion_version(name)
        champion = None
        if current is None:
            decision = judge(category, challenger, None, options)
        else:
            champion, source, unscored = champion_contender(current, grid, category, pick.test, paths)
            decision = judge(
                category, challenger, champion, options, champion_source=source, unscored_reason=unscored
            )
        if decision.moved:
            registry.set_champion(name, decision.champion_after)
        registry.tag_version(name, version, decision_tags(decision, evaluation_run_id))
        say(f"{name}: {decision.outcome} — {decision.reason}; champion is v{decision.champion_after}")
        after = challenger if decision.champion_after == challenger.version else champion
        outcome = ChampionOutcome(decision, None)
        if after is not None and after.test is not None:
            # The report row's seed: the champion gets the interval the report prints, not a second draw.
            seed = report_recall_seed(after.arch, category, options.seed)
            scored = recall_intervals(after.test, options.n_boot, seed)
            outcome = ChampionOutcome(decision, scored.macro, scored.n_studies, scored.class_counts)
        outcomes[category] = outcome
    return outcomes
