"""Correlated grades: the real file's correlation summaries and class shares, in the written train.csv."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from lss_pipeline.core.constants import REAL_CLASS_SHARES, SEVERITIES, TRAIN_CSV
from lss_pipeline.core.synth.grades import (
    CELLS,
    REAL_GRADE_CORRELATIONS,
    REAL_LEVEL_SHARES,
    correlation_summary,
    latent_correlation,
    sample_labels,
)
from lss_pipeline_tests.real_labels import REAL_LABELS

CORRELATION_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def correlated() -> tuple[np.ndarray, np.ndarray]:
    return sample_labels(np.random.default_rng(0), 6000, correlated=True)


def test_constants_are_what_the_real_file_says():
    if not (REAL_LABELS / TRAIN_CSV).exists():
        pytest.skip(f"{REAL_LABELS / TRAIN_CSV} absent: real label files not available here")
    code = {name: k for k, name in enumerate(SEVERITIES)}
    with (REAL_LABELS / TRAIN_CSV).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[1:]
    real = np.array([[code.get(v, -1) for v in row[1:]] for row in rows], dtype=float)
    summary = correlation_summary(real)
    for key, value in REAL_GRADE_CORRELATIONS.items():
        assert summary[key] == pytest.approx(value, abs=0.0015), key
    for j, (_, cat, _, level) in enumerate(CELLS):
        kept = real[:, j] >= 0
        shares = [(real[kept, j] == k).mean() for k in range(3)]
        level_index = [lv for *_, lv in CELLS[:5]].index(level)
        # Left and right are averaged in the constant: each side is within a point of it.
        assert np.allclose(shares, REAL_LEVEL_SHARES[cat][level_index], atol=0.012), (cat, level)


def test_written_grades_correlate_like_the_real_file(correlated):
    _, written = correlated
    summary = correlation_summary(written)
    off = {k: round(summary[k] - v, 3) for k, v in REAL_GRADE_CORRELATIONS.items()}
    assert all(abs(d) <= CORRELATION_TOLERANCE for d in off.values()), off


def test_independent_grades_do_not_correlate():
    _, written = sample_labels(np.random.default_rng(0), 6000)
    summary = correlation_summary(written)
    assert all(abs(v) < 0.04 for v in summary.values()), summary


def test_correlated_grades_keep_the_real_class_shares(correlated):
    true, written = correlated
    for cat, shares in REAL_CLASS_SHARES.items():
        cols = [j for j, c in enumerate(CELLS) if c[1] == cat]
        for grades in (true, written):
            vals = grades[:, cols]
            kept = vals[vals >= 0]
            assert np.allclose([(kept == k).mean() for k in range(3)], shares, atol=0.012), cat
    for j, (_, cat, _, level) in enumerate(CELLS):
        level_index = [lv for *_, lv in CELLS[:5]].index(level)
        assert np.allclose(
            [(true[:, j] == k).mean() for k in range(3)], REAL_LEVEL_SHARES[cat][level_index], atol=0.025
        ), (cat, level)


def test_annotator_noise_and_blanks(correlated):
    true, written = correlated
    kept = written >= 0
    assert 0.03 < (written[kept] != true[kept]).mean() < 0.05  # label_noise = 0.04
    assert np.all(np.abs(written[kept].astype(int) - true[kept]) <= 2)
    assert 0.012 < (written < 0).mean() < 0.03


@pytest.mark.parametrize("label_noise", [0.02, 0.04, 0.08])
def test_annotator_noise_is_what_was_asked_for_whatever_the_class_shares(label_noise):
    # The demo's enriched shares put more grades near a cut point: with sigma fixed for the real
    # shares, label_noise 0.04 wrote 7.4 % of its labels as another class.
    enriched = {"scs": (0.42, 0.33, 0.25), "nfs": (0.45, 0.33, 0.22), "sbs": (0.45, 0.33, 0.22)}
    for shares in (None, enriched):
        true, written = sample_labels(np.random.default_rng(3), 4000, shares, 0.0, label_noise, True)
        rate = (written != true).mean()
        assert abs(rate - label_noise) < 0.2 * label_noise, (shares, rate)


def test_latent_correlation_is_a_valid_correlation_matrix():
    corr = latent_correlation()
    assert np.allclose(corr, corr.T) and np.allclose(np.diag(corr), 1)
    assert np.linalg.eigvalsh(corr).min() > 0


def test_same_seed_same_grades():
    a = sample_labels(np.random.default_rng(7), 50, correlated=True)
    b = sample_labels(np.random.default_rng(7), 50, correlated=True)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
