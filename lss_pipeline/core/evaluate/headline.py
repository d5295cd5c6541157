"""The report's numbers as blocks: test-split metrics with intervals, Kaggle metric, the thesis' claims."""

from __future__ import annotations

from typing import Any

import polars as pl

from lss_pipeline.core.constants import CATEGORY_NAMES, CLASS_NAMES
from lss_pipeline.core.evaluate import claims as claims_module
from lss_pipeline.core.evaluate.calibration import ECE_BINS, T_BOUNDS
from lss_pipeline.core.evaluate.claims import Claim
from lss_pipeline.core.evaluate.kaggle import MISSING_ROWS_POLICY
from lss_pipeline.core.evaluate.metrics import COMPETITION_TERMS
from lss_pipeline.core.evaluate.plots import CLASS_TITLES, arch_title
from lss_pipeline.core.evaluate.render import (
    Block,
    fmt_counts,
    fmt_num,
    fmt_num_ci,
    fmt_params,
    fmt_pct,
    fmt_pct_ci,
    fmt_pts_ci,
)
from lss_pipeline.core.markdown import markdown_rows

# Below this many labelled test rows a class's recall moves by 5 points or more per row.
FEW_TEST_ROWS = 20


def _counts(r: dict[str, Any], prefix: str = "test") -> str:
    return fmt_counts([r[f"{prefix}_n_{c}"] for c in CLASS_NAMES])


def headline_table(metrics: pl.DataFrame) -> tuple[list[str], list[list[str]]]:
    headers = [
        "Architecture",
        "Category",
        "Params",
        "GMACs",
        "Macro recall (95 % CI)",
        "Δ vs ResNet, pts (95 % CI)",
        "Severe recall (95 % CI)",
        "Weighted log loss",
        "Studies",
        "n",
    ]
    rows = [
        [
            arch_title(r["arch"]),
            r["category"].upper(),
            fmt_params(r["params"]),
            fmt_num(r["gmacs"]),
            fmt_pct_ci(r["test_macro_recall"], r["test_macro_recall_lo"], r["test_macro_recall_hi"]),
            "baseline"
            if r["arch"] == "resnet"
            else fmt_pts_ci(
                r["test_delta_vs_resnet_pts"],
                r["test_delta_vs_resnet_pts_lo"],
                r["test_delta_vs_resnet_pts_hi"],
            ),
            fmt_pct_ci(r["test_recall_severe"], r["test_recall_severe_lo"], r["test_recall_severe_hi"]),
            fmt_num(r["test_weighted_log_loss"]),
            str(r["test_n_studies"]),
            _counts(r),
        ]
        for r in metrics.iter_rows(named=True)
    ]
    return headers, rows


def headline_blocks(metrics: pl.DataFrame) -> tuple[list[Block], str]:
    """Blocks of the test-split tables, and the headline table as Markdown-ready rows for the UI."""
    blocks: list[Block] = [
        ("h", 2, "Headline: the held-out test split"),
        (
            "p",
            'Macro recall = mean of the per-class recalls (the thesis\' "recall"); Δ vs ResNet = paired '
            "difference in macro recall on the same test studies; weighted log loss uses weights 1/2/4. "
            "n = labelled test rows Normal/Mild / Moderate / Severe.",
        ),
    ]
    if not metrics.height:
        blocks.append(("p", "No trained partition found."))
        return blocks, "No trained partition found."
    headers, rows = headline_table(metrics)
    blocks.append(("table", headers, rows))
    few = [
        f"{arch_title(r['arch'])} {r['category'].upper()} {title} (n = {r[f'test_n_{c}']})"
        for r in metrics.iter_rows(named=True)
        for c, title in zip(CLASS_NAMES, CLASS_TITLES, strict=True)
        if r[f"test_n_{c}"] < FEW_TEST_ROWS
    ]
    if few:
        blocks.append(
            (
                "note",
                f"Fewer than {FEW_TEST_ROWS} labelled test rows, so that recall is a coarse estimate with a "
                f"wide interval: {'; '.join(few)}.",
            )
        )
    per_class_headers = ["Architecture", "Category", *[f"Recall {t} (95 % CI), n" for t in CLASS_TITLES]]
    per_class = [
        [arch_title(r["arch"]), r["category"].upper()]
        + [
            f"{fmt_pct_ci(r[f'test_recall_{c}'], r[f'test_recall_{c}_lo'], r[f'test_recall_{c}_hi'])}, "
            f"n = {r[f'test_n_{c}']}"
            for c in CLASS_NAMES
        ]
        for r in metrics.iter_rows(named=True)
    ]
    blocks += [("h", 3, "Per-class recall (test split)"), ("table", per_class_headers, per_class)]
    pf_headers = [
        "Architecture",
        "Category",
        *[f"{m} {t}" for t in CLASS_TITLES for m in ("Precision", "F1")],
        "n",
    ]
    pf_rows = [
        [
            arch_title(r["arch"]),
            r["category"].upper(),
            *[fmt_pct(r[f"test_{m}_{c}"]) for c in CLASS_NAMES for m in ("precision", "f1")],
            _counts(r),
        ]
        for r in metrics.iter_rows(named=True)
    ]
    blocks += [("h", 3, "Per-class precision and F1 (test split)"), ("table", pf_headers, pf_rows)]
    return blocks, markdown_rows(headers, rows)


def kaggle_blocks(competition: dict[str, dict[str, Any]], skipped: dict[str, list[str]]) -> list[Block]:
    blocks: list[Block] = [
        ("h", 2, "Kaggle competition metric on the test split (weighted log loss, lower is better)"),
        (
            "p",
            "Row weights 1, 2, 4 for a true Normal/Mild, Moderate, Severe label; blank labels dropped; "
            "spinal (5 rows per study), foraminal (10) and subarticular (10) weighted log loss, plus "
            "`any_severe_spinal` per study; the score is the mean of the four, with a 95 % interval "
            "from resampling the test studies.",
        ),
        (
            "p",
            MISSING_ROWS_POLICY + " The prior is the label shares of the category's cross-validation rows.",
        ),
    ]
    if competition:
        has_calibrated = any("calibrated_score" in c for c in competition.values())
        headers = [
            "Architecture",
            "Spinal",
            "Foraminal",
            "Subarticular",
            "any_severe_spinal",
            "Score (95 % CI)",
        ]
        headers += ["Score after temperature scaling (95 % CI)"] if has_calibrated else []
        headers += ["Studies", "Rows scored", "n", "Rows filled with prior", "Solution from"]
        rows = []
        for a, c in competition.items():
            row = [
                arch_title(a),
                *(fmt_num(c[t], 4) for t in COMPETITION_TERMS),
                fmt_num_ci(c["score"], c.get("score_lo"), c.get("score_hi"), 4),
            ]
            if has_calibrated:
                row.append(
                    fmt_num_ci(
                        c.get("calibrated_score"),
                        c.get("calibrated_score_lo"),
                        c.get("calibrated_score_hi"),
                        4,
                    )
                )
            row += [
                str(c["n_studies"]),
                str(c["n_rows"]),
                fmt_counts(c.get("class_counts")),
                str(c["n_filled_rows"]),
                c["solution_source"],
            ]
            rows.append(row)
        blocks.append(("table", headers, rows))
    else:
        blocks.append(("p", "No architecture has all three categories trained yet."))
    if skipped:
        blocks.append(
            (
                "list",
                [
                    f"{arch_title(a)}: not computed, missing {', '.join(c.upper() for c in cats)}"
                    for a, cats in skipped.items()
                ],
            )
        )
    return blocks


def _size_text(claim: Claim) -> str:
    a, b = claim.convnext_size, claim.other_size
    if a is None or b is None:
        return "—"
    text = (
        f"{fmt_params(a.params)}, {fmt_num(a.gmacs)} GMACs vs {fmt_params(b.params)}, "
        f"{fmt_num(b.gmacs)} GMACs"
    )
    if claim.comparable_size is False:
        text += " — not of comparable size: the verdict is about size as much as architecture"
    return text


def thesis_blocks(claims: list[Claim], metrics: pl.DataFrame) -> list[Block]:
    by_key = {(r["arch"], r["category"]): r for r in metrics.iter_rows(named=True)}
    published_headers = [
        "Category",
        "Thesis: ConvNeXt recall",
        "Thesis: gain over ResNet-50 (pts)",
        "Thesis: ConvNeXt beat Swin",
        "This run: ConvNeXt test macro recall (95 % CI)",
        "n",
    ]
    published = []
    for cat in dict.fromkeys(c.category for c in claims):
        conv = by_key.get(("convnext", cat))
        published.append(
            [
                f"{cat.upper()} ({CATEGORY_NAMES[cat]})",
                f"{claims_module.THESIS_CONVNEXT_MACRO_RECALL_PCT[cat]:.2f} %",
                f"{claims_module.THESIS_GAIN_OVER_RESNET50_PTS[cat]:+.2f}",
                "yes" if claims_module.THESIS_CONVNEXT_BEAT_SWIN[cat] else "no",
                fmt_pct_ci(
                    conv["test_macro_recall"], conv["test_macro_recall_lo"], conv["test_macro_recall_hi"]
                )
                if conv
                else "not trained",
                _counts(conv) if conv else "—",
            ]
        )
    headers = [
        "Claim",
        "This run: ConvNeXt − other, pts (95 % CI)",
        "Interval excludes 0",
        "Thesis' gain inside the interval",
        "Verdict",
        "Studies",
        "n",
        "Sizes (ConvNeXt vs other)",
    ]
    rows = []
    for c in claims:
        r = c.result
        d = r.difference if r else None
        rows.append(
            [
                c.statement,
                fmt_pts_ci(100 * d.point, 100 * d.lo, 100 * d.hi) if d else "—",
                ("yes" if d.excludes_zero else "no") if d else "—",
                "—" if c.thesis_gain_inside is None else ("yes" if c.thesis_gain_inside else "no"),
                f"**{c.verdict}**",
                str(r.n_studies) if r else "—",
                fmt_counts(r.class_counts) if r else "—",
                _size_text(c),
            ]
        )
    return [
        ("h", 2, "The thesis' claims, checked on the test split"),
        (
            "note",
            "The **Thesis** numbers are the thesis' published results on the real RSNA 2024 dataset "
            "(Azmi 2025, full-size models), copied for reference; they were not computed by this "
            "pipeline. **This run** comes from the dataset named at the top of this report.",
        ),
        ("table", published_headers, published),
        (
            "p",
            "Each claim is checked as a direction with a paired bootstrap over the same test studies: "
            "**reproduced** when the 95 % interval of ConvNeXt − other lies above zero, **not reproduced** "
            "when it lies below zero, **inconclusive** when it contains zero; **not checked** when a "
            "model is missing. Two models more than "
            f"{claims_module.COMPARABLE_SIZE_RATIO:g}× apart in parameters or GMACs are not of comparable "
            "size, and the verdict then compares sizes as much as architectures.",
        ),
        ("table", headers, rows),
    ]


def calibration_blocks(metrics: pl.DataFrame) -> list[Block]:
    blocks: list[Block] = [
        ("h", 2, "Calibration: temperature scaling"),
        (
            "p",
            "Class-weighted training skews probabilities towards the rare grades, and the Kaggle metric "
            "scores probabilities. Each partition gets one temperature T, fitted on its out-of-fold rows "
            "(plain log loss; the test split plays no part) and applied to its test predictions as "
            "softmax(log p / T). No argmax changes, so every recall above is unchanged; the Kaggle table "
            "gives the score before and after. ECE = expected calibration error of the top-class "
            f"probability over {ECE_BINS} equal-width bins. The fold models' OOF rows are single models "
            "while the test predictions average them, which is already softer: a T fitted on the former "
            "may over-soften the latter, and the table shows whether it did. A T on the edge of its search "
            f"range ({T_BOUNDS[0]:g}–{T_BOUNDS[1]:g}) means the out-of-fold rows are (nearly) separable or "
            "carry no signal; such a T is marked and not to be trusted.",
        ),
    ]
    if not metrics.height:
        return blocks
    headers = [
        "Architecture",
        "Category",
        "T",
        "OOF rows fitted",
        "ECE before → after",
        "Log loss before → after",
        "Weighted log loss before → after",
        "n (test)",
    ]
    rows = [
        [
            arch_title(r["arch"]),
            r["category"].upper(),
            fmt_num(r["temperature"], 2)
            + (" (search bound: not trusted)" if r["temperature_at_bound"] else ""),
            str(r["temperature_fit_rows"]),
            f"{fmt_num(r['test_ece'])} → {fmt_num(r['test_ece_calibrated'])}",
            f"{fmt_num(r['test_log_loss'])} → {fmt_num(r['test_log_loss_calibrated'])}",
            f"{fmt_num(r['test_weighted_log_loss'])} → {fmt_num(r['test_weighted_log_loss_calibrated'])}",
            _counts(r),
        ]
        for r in metrics.iter_rows(named=True)
    ]
    blocks.append(("table", headers, rows))
    return blocks
