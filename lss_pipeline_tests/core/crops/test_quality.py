"""The skipped-share facts behind the blocking level_crops check."""

from __future__ import annotations

import polars as pl
import pytest

from lss_pipeline.core.crops.points import (
    SKIP_NO_COORDINATE,
    SKIP_SERIES_MISSING,
    SKIP_UNREADABLE,
    SKIP_WRONG_SERIES,
)
from lss_pipeline.core.crops.quality import skipped_share_report


def _skipped(**counts: int) -> pl.DataFrame:
    reasons = [reason for reason, n in counts.items() for _ in range(n)]
    return pl.DataFrame(
        {"reason": reasons, "detail": [""] * len(reasons)}, schema={"reason": pl.Utf8, "detail": pl.Utf8}
    )


def test_a_real_sized_category_losing_what_the_real_file_loses_passes():
    # ~1 % of rows without a coordinate and a few on another series, as in the real train files.
    report = skipped_share_report(9700, _skipped(**{SKIP_NO_COORDINATE: 117, SKIP_WRONG_SERIES: 5}))
    assert report["passed"] and report["rows_without_coordinate"] == 117
    assert report["skipped_share"] == pytest.approx(5 / 9705, abs=1e-4)


def test_everything_skipped_fails_whatever_the_reason():
    report = skipped_share_report(0, _skipped(**{SKIP_UNREADABLE: 400}))
    assert not report["passed"] and report["skipped_share"] == 1.0
    assert any("no crop at all" in p for p in report["problems"])


@pytest.mark.parametrize(
    ("crops", "counts", "failing"),
    [
        (800, {SKIP_UNREADABLE: 200}, ["skipped", "unreadable"]),  # one transfer syntax nobody decodes
        (970, {SKIP_UNREADABLE: 30}, ["unreadable"]),  # 3 %: under the skipped bound, over the decoder's
        (850, {SKIP_SERIES_MISSING: 150}, ["skipped"]),
    ],
)
def test_a_partial_loss_over_a_bound_fails_and_says_which(crops, counts, failing):
    report = skipped_share_report(crops, _skipped(**counts))
    assert not report["passed"]
    named = ["unreadable" if "unreadable" in p else "skipped" for p in report["problems"]]
    assert named == failing, report["problems"]


def test_a_small_set_may_lose_one_studys_rows():
    assert skipped_share_report(70, _skipped(**{SKIP_SERIES_MISSING: 10}))["passed"]
    assert not skipped_share_report(70, _skipped(**{SKIP_SERIES_MISSING: 11}))["passed"]


def test_bounds_come_from_the_caller():
    skipped = _skipped(**{SKIP_SERIES_MISSING: 150})
    assert skipped_share_report(850, skipped, max_skipped_share=0.2)["passed"]
