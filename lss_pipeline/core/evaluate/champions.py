"""Champion vs challenger, decided without touching MLflow: which model challenges, and whether it wins.

Per category, the **challenger** is the trained partition with the best out-of-fold macro recall
(cross-validation split; ties go to fewer MACs, then the architecture name), so the test split never
chooses among architectures. It replaces the current **champion** only when it beats it on the same
test studies: the paired difference challenger − champion in test macro recall must exceed the
margin, either at the lower end of its 95 % study-bootstrap interval (rule ``bootstrap``) or as the
difference itself (rule ``difference``). With no champion yet, the challenger is crowned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from lss_pipeline.core.evaluate.bootstrap import PairedDifference, paired_macro_recall_difference, seed_for
from lss_pipeline.core.evaluate.load import Partition
from lss_pipeline.core.evaluate.options import EvaluationOptions
from lss_pipeline.core.evaluate.table import as_int

CHAMPION_ALIAS = "champion"
# Chosen on the cross-validation split, never on the test split that reports it.
CHOICE_METRIC = "oof_macro_recall"

CROWNED, PROMOTED, KEPT, UNCHANGED = "crowned", "promoted", "kept", "unchanged"


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


def registered_version(partition: Partition) -> tuple[str, str] | None:
    """(registered model, version) the partition's training registered, if any."""
    name, version = partition.summary.get("registered_model"), partition.summary.get("model_version")
    return (str(name), str(version)) if name and version is not None else None


@dataclass(frozen=True)
class Contender:
    """A registered version and its predictions on today's test studies (None: could not be scored)."""

    registered_model: str
    version: str
    arch: str
    test: pl.DataFrame | None


@dataclass(frozen=True)
class Decision:
    category: str
    registered_model: str
    outcome: str  # crowned | promoted | kept | unchanged
    reason: str
    champion_before: str | None  # version
    champion_before_arch: str | None
    challenger: str  # version
    challenger_arch: str
    champion_after: str
    champion_after_arch: str
    comparison: PairedDifference | None  # challenger − champion on the same test studies
    champion_source: str | None  # where the champion's test predictions came from
    rule: str
    margin_pts: float

    @property
    def moved(self) -> bool:
        return self.outcome in (CROWNED, PROMOTED)

    def as_json(self) -> dict[str, Any]:
        d = self.comparison.difference if self.comparison else None
        return {
            "registered_model": self.registered_model,
            "decision": self.outcome,
            "reason": self.reason,
            "champion_before": self.champion_before,
            "challenger": self.challenger,
            "challenger_arch": self.challenger_arch,
            "delta_macro_recall_pts": None if d is None else 100 * d.point,
            "delta_ci95_pts": None if d is None else [100 * d.lo, 100 * d.hi],
            "test_studies": None if self.comparison is None else self.comparison.n_studies,
            "champion_source": self.champion_source,
            "rule": self.rule,
            "margin_pts": self.margin_pts,
        }


def pick_challenger(partitions: list[Partition], oof_macro_recall: dict[str, float]) -> Partition | None:
    """The registered partition with the best out-of-fold macro recall; ties to fewer MACs, then name."""
    registered = [p for p in partitions if registered_version(p) and p.arch in oof_macro_recall]
    if not registered:
        return None

    def key(p: Partition) -> tuple[float, float, str]:
        macs = as_int(p.summary.get("macs"))
        return (-oof_macro_recall[p.arch], float(macs) if macs else float("inf"), p.arch)

    return min(registered, key=key)


def beats(comparison: PairedDifference, options: EvaluationOptions) -> bool:
    """Whether challenger − champion clears the margin under the configured rule."""
    d = comparison.difference
    gain_pts = 100 * (d.lo if options.champion_rule == "bootstrap" else d.point)
    return bool(gain_pts > options.champion_margin_pts)


def judge(
    category: str,
    challenger: Contender,
    champion: Contender | None,
    options: EvaluationOptions,
    *,
    champion_source: str | None = None,
    unscored_reason: str | None = None,
) -> Decision:
    """The decision for one category; ``champion.test`` must cover the challenger's test studies.

    A champion without test predictions (``unscored_reason`` says why) stays: a model nobody can
    compare on today's test studies is not replaced blindly.
    """
    if challenger.test is None:
        raise ValueError(f"{category}: the challenger v{challenger.version} has no test predictions")
    rule = f"{options.champion_rule}, margin {options.champion_margin_pts:g} pts"
    base: dict[str, Any] = dict(
        category=category,
        registered_model=challenger.registered_model,
        challenger=challenger.version,
        challenger_arch=challenger.arch,
        rule=options.champion_rule,
        margin_pts=options.champion_margin_pts,
        champion_source=champion_source,
        champion_before=None if champion is None else champion.version,
        champion_before_arch=None if champion is None else champion.arch,
    )
    if champion is None:
        reason = "no champion yet: the challenger (best out-of-fold macro recall) is crowned"
        return Decision(outcome=CROWNED, reason=reason, champion_after=challenger.version,
                        champion_after_arch=challenger.arch, comparison=None, **base)  # fmt: skip
    if champion.version == challenger.version:
        reason = "the best out-of-fold model is already the champion"
        return Decision(outcome=UNCHANGED, reason=reason, champion_after=champion.version,
                        champion_after_arch=champion.arch, comparison=None, **base)  # fmt: skip
    if champion.test is None:
        reason = f"the champion could not be scored on today's test studies ({unscored_reason}); it stays"
        return Decision(outcome=KEPT, reason=reason, champion_after=champion.version,
                        champion_after_arch=champion.arch, comparison=None, **base)  # fmt: skip
    seed = seed_for(f"champion|{category}|{challenger.version}|{champion.version}", options.seed)
    comparison = paired_macro_recall_difference(challenger.test, champion.test, options.n_boot, seed)
    d = comparison.difference
    figures = f"{100 * d.point:+.2f} pts (95 % CI {100 * d.lo:+.2f} to {100 * d.hi:+.2f})"
    if beats(comparison, options):
        outcome, verb, after = PROMOTED, "clears", challenger
    else:
        outcome, verb, after = KEPT, "does not clear", champion
    reason = (
        f"challenger − champion {figures} on {comparison.n_studies} test studies {verb} the rule ({rule})"
    )
    return Decision(
        outcome=outcome,
        reason=reason,
        champion_after=after.version,
        champion_after_arch=after.arch,
        comparison=comparison,
        **base,
    )
