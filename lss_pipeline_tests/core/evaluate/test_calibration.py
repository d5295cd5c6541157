"""Temperature scaling: recovers a known temperature, keeps every argmax, lowers ECE and log loss."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lss_pipeline.core.constants import PROB_COLUMNS
from lss_pipeline.core.evaluate.calibration import (
    apply_temperature,
    calibrate,
    calibrated_table,
    expected_calibration_error,
    fit_temperature,
    reliability,
)


def _overconfident(n: int, seed: int, sharpen: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z); the model reports softmax(sharpen · z), too sure of itself."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.2, (n, 3))
    true_p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in true_p])
    reported = np.exp(sharpen * z) / np.exp(sharpen * z).sum(axis=1, keepdims=True)
    return reported, labels


def test_fit_recovers_the_temperature_that_undoes_overconfidence():
    proba, labels = _overconfident(6000, seed=1)
    assert fit_temperature(proba, labels) == pytest.approx(2.5, rel=0.1)


def test_scaling_keeps_argmax_and_lowers_ece_on_fresh_rows():
    fit_p, fit_y = _overconfident(3000, seed=2)
    test_p, test_y = _overconfident(3000, seed=3)
    temperature = fit_temperature(fit_p, fit_y)
    after = apply_temperature(test_p, temperature)
    assert (after.argmax(axis=1) == test_p.argmax(axis=1)).all()
    assert np.allclose(after.sum(axis=1), 1.0)
    before_ece, after_ece = (
        expected_calibration_error(test_p, test_y),
        expected_calibration_error(after, test_y),
    )
    assert after_ece < before_ece / 2


def test_ece_of_hand_made_bins():
    # Two rows at confidence 0.9, one right: |0.5 − 0.9| = 0.4; two at 0.6, both right: |1 − 0.6| = 0.4.
    proba = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.2, 0.6, 0.2], [0.2, 0.6, 0.2]])
    labels = np.array([0, 1, 1, 1])
    assert expected_calibration_error(proba, labels) == pytest.approx(0.4)
    confidence, accuracy, rows = reliability(proba, labels)
    assert confidence.tolist() == pytest.approx([0.6, 0.9]) and accuracy.tolist() == [1.0, 0.5]
    assert rows.tolist() == [2, 2]


def test_calibrate_fits_on_oof_rows_and_measures_on_test_rows():
    def table(proba: np.ndarray, labels: np.ndarray) -> pl.DataFrame:
        return pl.DataFrame({"label": labels, **{c: proba[:, i] for i, c in enumerate(PROB_COLUMNS)}})

    oof, test = table(*_overconfident(2000, seed=4)), table(*_overconfident(2000, seed=5))
    result = calibrate(oof, test)
    assert result.temperature > 1.5 and result.n_fit_rows == 2000
    assert result.ece_after < result.ece_before and result.nll_after < result.nll_before
    scaled = calibrated_table(test, result.temperature)
    assert scaled.columns == test.columns and not scaled.equals(test)
