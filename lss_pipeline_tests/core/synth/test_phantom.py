"""Severity changes the anatomy exactly where the label says, and nowhere else."""

from __future__ import annotations

import numpy as np
import pytest

from lss_pipeline.core.constants import CONDITION_NAMES, LEVELS
from lss_pipeline.core.synth.anatomy import sample_geometry
from lss_pipeline.core.synth.measures import canal_ap_mm, foramen_fat_mm2, recess_area_mm2
from lss_pipeline.core.synth.phantom import Phantom
from lss_pipeline.core.synth.plane import SlicePlane

TARGET = "L4/L5"
PROBE_LEVELS = ("L2/L3", "L4/L5", "L5/S1")


def _measure(phantom: Phantom, condition: str, level: str) -> float:
    """Render the plane a label of ``condition`` is drawn on, through its landmark, and measure there."""
    g = phantom.g
    p = g.landmark(condition, level)
    ps = (0.6, 0.6)
    if condition == "Spinal Canal Stenosis" or "Foraminal" in condition:
        plane = SlicePlane.centered(p, (0, 1, 0), (0, 0, -1), 128, 128, ps, thickness=3.5)
        contrast = "T2" if condition == "Spinal Canal Stenosis" else "T1"
    else:
        plane = SlicePlane.centered(
            p, (1, 0, 0), g.rotation @ np.array([0.0, 1.0, 0.0]), 128, 128, ps, thickness=3.5
        )
        contrast = "T2"
    img = phantom.render(plane, contrast)
    x, y, dist = plane.project(p)
    assert abs(dist) < 1e-6 and abs(x - 63.5) < 1e-6 and abs(y - 63.5) < 1e-6
    threshold = 0.75 * 0.96 if contrast == "T2" else 0.75 * 0.92  # no noise: fixed tissue units
    if condition == "Spinal Canal Stenosis":
        return canal_ap_mm(img, x, y, ps, threshold=threshold)
    if "Foraminal" in condition:
        return foramen_fat_mm2(img, x, y, ps, threshold=threshold)
    return recess_area_mm2(img, x, y, ps, threshold=threshold)


def _all_measures(severities: dict) -> dict:
    g = sample_geometry(np.random.default_rng(0), severities, variation=0.0)
    phantom = Phantom(g)
    return {(c, lv): _measure(phantom, c, lv) for c in CONDITION_NAMES for lv in PROBE_LEVELS}


@pytest.fixture(scope="module")
def baseline() -> dict:
    return _all_measures({})


@pytest.mark.parametrize("condition", CONDITION_NAMES)
def test_severity_shrinks_only_the_labelled_structure(baseline, condition):
    moderate = _all_measures({(condition, TARGET): 1})
    severe = _all_measures({(condition, TARGET): 2})
    key = (condition, TARGET)
    assert baseline[key] > 0
    assert severe[key] < moderate[key] < baseline[key], (condition, baseline[key], moderate[key], severe[key])
    assert severe[key] < 0.6 * baseline[key]
    for other in baseline:
        if other != key:  # contralateral side, other levels, other categories: untouched
            assert moderate[other] == pytest.approx(baseline[other], abs=1e-9), other
            assert severe[other] == pytest.approx(baseline[other], abs=1e-9), other


def test_landmarks_are_left_right_mirrored_in_lps():
    g = sample_geometry(np.random.default_rng(1), {}, variation=0.0)
    left = g.landmark("Left Neural Foraminal Narrowing", "L3/L4")
    right = g.landmark("Right Neural Foraminal Narrowing", "L3/L4")
    assert left[0] > 0 > right[0]  # LPS: +x is the patient's left
    canal = [g.landmark("Spinal Canal Stenosis", lv) for lv in LEVELS]
    assert all(a[2] > b[2] for a, b in zip(canal, canal[1:]))  # L1/L2 is superior to L5/S1
