"""Temperature scaling (Guo et al. 2017): one temperature per partition, fitted on its out-of-fold rows,
applied to its test predictions.

Class-weighted training pushes probability towards the rare grades, and the Kaggle metric scores the
probabilities themselves. Dividing the log-probabilities by one temperature T and renormalising
(softmax) fixes over- or under-confidence without changing any argmax, so recalls stay as they are;
T minimises the plain log loss of the out-of-fold rows, which the test split never influences.
Expected calibration error (ECE) is the top-label ECE over equal-width confidence bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.optimize import minimize_scalar

from lss_pipeline.core.constants import PROB_COLUMNS
from lss_pipeline.core.evaluate.metrics import normalise_probabilities

ECE_BINS = 15
RELIABILITY_BINS = 10
# Search range of T. A fit that ends on a bound means the out-of-fold rows are (nearly) separable or
# carry no signal; such a T is reported as such, not trusted.
T_BOUNDS = (0.25, 10.0)
_EPS = np.finfo(np.float64).eps


def _log_probs(proba: np.ndarray) -> np.ndarray:
    return np.log(np.clip(normalise_probabilities(proba), _EPS, 1.0))


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``: the same ranking of classes, sharper for T < 1, flatter for T > 1."""
    scaled = _log_probs(proba) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    out = np.exp(scaled)
    return out / out.sum(axis=1, keepdims=True)


def nll(proba: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(proba[np.arange(len(labels)), labels], _EPS, 1.0)
    return float(-np.mean(np.log(p)))


def fit_temperature(proba: np.ndarray, labels: np.ndarray) -> float:
    """The T in ``T_BOUNDS`` minimising the mean log loss of ``apply_temperature(proba, T)``."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise ValueError("temperature scaling needs at least one labelled row")
    log_p = _log_probs(proba)

    def loss(log_t: float) -> float:
        scaled = log_p / np.exp(log_t)
        scaled -= scaled.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(scaled).sum(axis=1))
        return float(np.mean(log_norm - scaled[np.arange(len(labels)), labels]))

    result = minimize_scalar(loss, bounds=tuple(np.log(T_BOUNDS)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def expected_calibration_error(proba: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Σ over bins of (rows in bin / rows) × |accuracy − mean confidence| of the top-label predictions."""
    proba = normalise_probabilities(proba)
    confidence, correct = proba.max(axis=1), proba.argmax(axis=1) == np.asarray(labels)
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        in_bin = bins == b
        ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def reliability(
    proba: np.ndarray, labels: np.ndarray, n_bins: int = RELIABILITY_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty confidence bin: (mean confidence, accuracy, rows), for a reliability diagram."""
    proba = normalise_probabilities(proba)
    confidence, correct = proba.max(axis=1), proba.argmax(axis=1) == np.asarray(labels)
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    present = np.unique(bins)
    return (
        np.array([confidence[bins == b].mean() for b in present]),
        np.array([correct[bins == b].mean() for b in present]),
        np.array([(bins == b).sum() for b in present]),
    )


def labelled_arrays(table: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    rows = table.filter(pl.col("label").is_not_null())
    return rows.select(PROB_COLUMNS).to_numpy(), rows["label"].cast(pl.Int64).to_numpy()


def calibrated_table(table: pl.DataFrame, temperature: float) -> pl.DataFrame:
    """A prediction table with its probability columns temperature-scaled."""
    proba = apply_temperature(table.select(PROB_COLUMNS).to_numpy(), temperature)
    return table.with_columns([pl.Series(name, proba[:, i]) for i, name in enumerate(PROB_COLUMNS)])


@dataclass(frozen=True)
class Calibration:
    temperature: float
    n_fit_rows: int  # labelled out-of-fold rows T was fitted on
    ece_before: float  # test split
    ece_after: float
    nll_before: float  # test split, plain (unweighted) log loss
    nll_after: float

    @property
    def at_bound(self) -> bool:
        return bool(np.isclose(self.temperature, T_BOUNDS, rtol=1e-3).any())


def calibrate(oof: pl.DataFrame, test: pl.DataFrame) -> Calibration:
    """Fit T on ``oof``'s labelled rows; measure ECE and log loss on ``test`` before and after."""
    fit_p, fit_y = labelled_arrays(oof)
    temperature = fit_temperature(fit_p, fit_y)
    test_p, test_y = labelled_arrays(test)
    after = apply_temperature(test_p, temperature)
    return Calibration(
        temperature=temperature,
        n_fit_rows=len(fit_y),
        ece_before=expected_calibration_error(test_p, test_y),
        ece_after=expected_calibration_error(after, test_y),
        nll_before=nll(normalise_probabilities(test_p), test_y),
        nll_after=nll(after, test_y),
    )
