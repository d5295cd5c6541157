"""What the asset checks on ``level_crops`` assert: the share of labelled rows left without a crop.

On the real data about 1 % of graded rows have no coordinate and a handful point at another
series, so a category loses ~1-2 % of its rows. A decoder that cannot read a transfer syntax,
a wrong pixel path or a geometry bug instead skips whole studies, and a crop set that is
"all skipped" (or quietly missing every JPEG 2000 study) must not reach training.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from lss_pipeline.core.crops.points import SKIP_NO_COORDINATE, SKIP_UNREADABLE

# Defaults of the check's config, above what the real data loses (see the module docstring).
MAX_SKIPPED_SHARE = 0.10
MAX_UNREADABLE_SHARE = 0.02
# Losses up to one study's rows of a category always pass: a 10-study demo set that misses
# one series would otherwise fail on share alone.
ALLOWED_ROWS = 10


def skipped_share_report(
    n_crops: int,
    skipped: pl.DataFrame,
    *,
    max_skipped_share: float = MAX_SKIPPED_SHARE,
    max_unreadable_share: float = MAX_UNREADABLE_SHARE,
) -> dict[str, Any]:
    """Facts about the skipped rows of one category and whether they stay within bounds.

    ``passed`` needs at least one crop, a skipped share (rows with a coordinate that gave no
    crop, over rows with a coordinate) of at most ``max_skipped_share`` and an ``unreadable``
    share of at most ``max_unreadable_share``; up to ``ALLOWED_ROWS`` lost rows pass whatever
    the share. Rows without any coordinate are reported but not counted: they are a property
    of the label file, not of the crop step.
    """
    by_reason = dict(skipped.group_by("reason").len().sort("reason").iter_rows()) if skipped.height else {}
    no_coordinate = int(by_reason.get(SKIP_NO_COORDINATE, 0))
    with_coordinate = n_crops + skipped.height - no_coordinate
    lost = skipped.height - no_coordinate
    share = lost / with_coordinate if with_coordinate else 1.0
    unreadable = int(by_reason.get(SKIP_UNREADABLE, 0))
    unreadable_share = unreadable / with_coordinate if with_coordinate else 1.0
    problems = []
    if n_crops == 0:
        problems.append(f"no crop at all from {with_coordinate} rows with a coordinate")
    if share > max_skipped_share and lost > ALLOWED_ROWS:
        problems.append(f"{share:.1%} of rows with a coordinate skipped (bound {max_skipped_share:.0%})")
    if unreadable_share > max_unreadable_share and unreadable > ALLOWED_ROWS:
        problems.append(f"{unreadable_share:.1%} unreadable pixels (bound {max_unreadable_share:.0%})")
    return {
        "passed": not problems,
        "problems": problems,
        "crops": n_crops,
        "rows_with_coordinate": with_coordinate,
        "rows_without_coordinate": no_coordinate,
        "skipped_share": round(share, 4),
        "unreadable_share": round(unreadable_share, 4),
        "skipped_by_reason": {str(k): int(v) for k, v in by_reason.items()},
        "max_skipped_share": max_skipped_share,
        "max_unreadable_share": max_unreadable_share,
    }
