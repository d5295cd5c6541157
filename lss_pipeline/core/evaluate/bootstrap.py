"""Bootstrap intervals that resample studies, and paired differences over the same studies.

Rows of one study (its 5, 10 or 10 levels and sides) are correlated, so the unit of resampling is
the study: each of ``n_boot`` resamples draws as many studies as there are, with replacement, and
recomputes the statistic from the drawn studies' rows. A statistic that is a ratio of sums (recall,
weighted log loss) is computed from per-study sums, so a resample is one matrix product.

A paired difference draws the same studies for both models and takes the interval of the
difference, which is far narrower than comparing two separate intervals when the models agree on
most studies. Intervals are percentile intervals (2.5th and 97.5th percentiles for 95 %).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import polars as pl

from lss_pipeline.core.constants import PROB_COLUMNS

DEFAULT_N_BOOT = 2000
CONFIDENCE = 0.95
N_CLASSES = 3


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap interval (fractions for recalls)."""

    point: float
    lo: float
    hi: float

    @property
    def excludes_zero(self) -> bool:
        return bool(self.lo > 0 or self.hi < 0)

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {prefix: self.point, f"{prefix}_lo": self.lo, f"{prefix}_hi": self.hi}


def seed_for(key: str, seed: int = 0) -> int:
    """A stable seed per statistic (same numbers on every run, different draws per comparison)."""
    return (zlib.crc32(key.encode()) + 1_000_003 * seed) % 2**32


def resample_weights(n_studies: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_studies) counts: how often each study is drawn in each resample."""
    if n_studies < 1:
        raise ValueError("bootstrap needs at least one study")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_studies, np.full(n_studies, 1.0 / n_studies), size=n_boot).astype(np.float64)


def interval(point: float, samples: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Percentile interval of ``samples`` (NaN samples, e.g. a class absent from a resample, skipped)."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return Interval(point, float("nan"), float("nan"))
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return Interval(float(point), float(lo), float(hi))


def labelled(table: pl.DataFrame) -> pl.DataFrame:
    return table.filter(pl.col("label").is_not_null())


def study_codes(study_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique studies, each row's position among them)."""
    studies, codes = np.unique(study_ids, return_inverse=True)
    return studies, codes


def recall_sums(codes: np.ndarray, n_studies: int, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(n_studies, 2, 3): per study and class, [rows of the class, rows of it predicted right]."""
    sums = np.zeros((n_studies, 2, N_CLASSES))
    np.add.at(sums[:, 0, :], (codes, y_true), 1.0)
    np.add.at(sums[:, 1, :], (codes, y_true), (y_true == y_pred).astype(np.float64))
    return sums


def recalls_of(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(macro recall, per-class recall) from summed counts (..., 2, 3); NaN for a class with no rows."""
    total, correct = sums[..., 0, :], sums[..., 1, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(total > 0, correct / np.where(total > 0, total, 1.0), np.nan)
    present = np.isfinite(per_class)
    counts = present.sum(axis=-1)
    macro = np.where(counts > 0, np.nansum(per_class, axis=-1) / np.maximum(counts, 1), np.nan)
    return macro, per_class


@dataclass(frozen=True)
class RecallIntervals:
    macro: Interval
    per_class: tuple[Interval, Interval, Interval]
    n_studies: int
    n_rows: int
    class_counts: tuple[int, int, int]


def recall_intervals(table: pl.DataFrame, n_boot: int, seed: int) -> RecallIntervals:
    """Macro and per-class recall of a prediction table's labelled rows, with study-bootstrap intervals."""
    rows = labelled(table)
    if rows.is_empty():
        raise ValueError("no labelled rows to score")
    y_true = rows["label"].cast(pl.Int64).to_numpy()
    y_pred = rows.select(PROB_COLUMNS).to_numpy().argmax(axis=1)
    studies, codes = study_codes(rows["study_id"].to_numpy())
    sums = recall_sums(codes, len(studies), y_true, y_pred)
    point_macro, point_class = recalls_of(sums.sum(axis=0))
    weights = resample_weights(len(studies), n_boot, seed)
    boot_macro, boot_class = recalls_of(np.einsum("bs,sij->bij", weights, sums))
    per_class = tuple(interval(float(point_class[c]), boot_class[:, c]) for c in range(N_CLASSES))
    counts = np.bincount(y_true, minlength=N_CLASSES)
    return RecallIntervals(
        macro=interval(float(point_macro), boot_macro),
        per_class=per_class,  # type: ignore[arg-type]
        n_studies=len(studies),
        n_rows=len(y_true),
        class_counts=(int(counts[0]), int(counts[1]), int(counts[2])),
    )


@dataclass(frozen=True)
class PairedDifference:
    """``a − b`` macro recall over the rows both tables predict, studies resampled together."""

    difference: Interval
    a: float
    b: float
    n_studies: int
    n_rows: int
    class_counts: tuple[int, int, int]


def paired_macro_recall_difference(
    a: pl.DataFrame, b: pl.DataFrame, n_boot: int, seed: int
) -> PairedDifference:
    """Paired bootstrap of macro recall ``a − b`` on the labelled rows present in both tables."""
    left = labelled(a).select("row_id", "study_id", pl.col("label").cast(pl.Int64), *PROB_COLUMNS)
    right = labelled(b).select("row_id", *PROB_COLUMNS)
    joined = left.join(right, on="row_id", how="inner", suffix="_b")
    if joined.is_empty():
        raise ValueError("the two prediction tables share no labelled row")
    y_true = joined["label"].to_numpy()
    pred_a = joined.select(PROB_COLUMNS).to_numpy().argmax(axis=1)
    pred_b = joined.select([f"{c}_b" for c in PROB_COLUMNS]).to_numpy().argmax(axis=1)
    studies, codes = study_codes(joined["study_id"].to_numpy())
    sums_a = recall_sums(codes, len(studies), y_true, pred_a)
    sums_b = recall_sums(codes, len(studies), y_true, pred_b)
    point_a, _ = recalls_of(sums_a.sum(axis=0))
    point_b, _ = recalls_of(sums_b.sum(axis=0))
    weights = resample_weights(len(studies), n_boot, seed)
    boot_a, _ = recalls_of(np.einsum("bs,sij->bij", weights, sums_a))
    boot_b, _ = recalls_of(np.einsum("bs,sij->bij", weights, sums_b))
    counts = np.bincount(y_true, minlength=N_CLASSES)
    return PairedDifference(
        difference=interval(float(point_a - point_b), boot_a - boot_b),
        a=float(point_a),
        b=float(point_b),
        n_studies=len(studies),
        n_rows=len(y_true),
        class_counts=(int(counts[0]), int(counts[1]), int(counts[2])),
    )


def ratio_interval(numerators: np.ndarray, denominators: np.ndarray, n_boot: int, seed: int) -> Interval:
    """Interval of ``mean over terms of Σ num / Σ den``; both (n_studies, n_terms), resampling studies.

    The Kaggle score is this with one term per condition group plus ``any_severe_spinal``.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        point = float(np.mean(numerators.sum(axis=0) / denominators.sum(axis=0)))
        weights = resample_weights(numerators.shape[0], n_boot, seed)
        samples = np.mean((weights @ numerators) / (weights @ denominators), axis=1)
    return interval(point, samples)
