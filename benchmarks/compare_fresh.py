"""Two sets' champions on their own fresh studies: the difference, with its interval, against the
written labels and against the true grades.

Reads two ``fresh_seed.py --out`` folders (``fresh_rows.parquet``, ``fresh_seed.csv`` and the fresh
set's ``synth_train_truth.csv``), e.g. the plain demo's champions on plain fresh studies and the
varied demo's on varied ones (issue 13: "within 3 points of the plain set's"):

    .venv/bin/python benchmarks/compare_fresh.py --a /tmp/lss_fresh_plain --b /tmp/lss_fresh_varied \
        --names plain varied

Several folders a side (fresh sets of other seeds, scored by the same champions) are pooled: their
studies are resampled together.

The two sets share no study, so the interval of ``b − a`` comes from independent study bootstraps
of each (2,000 draws, the report's resampling, ``core/evaluate/bootstrap.py``). Against the written
labels each set also has its ceiling (a perfect reader's macro recall): the annotator noise of one
draw of studies can cost a perfect reader a few points more than another's, and that part of a
difference is no model's doing. Against the true grades there is no such noise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl
from synthetic_sets import true_grades

from lss_pipeline.core.constants import CATEGORIES, PROB_COLUMNS
from lss_pipeline.core.evaluate.bootstrap import (
    interval,
    recall_sums,
    recalls_of,
    resample_weights,
    seed_for,
    study_codes,
)
from lss_pipeline.core.markdown import markdown_table

N_BOOT = 2000


def pooled_rows(outs: list[Path], category: str) -> tuple[str, pl.DataFrame]:
    """The champion's rows of every folder in ``outs`` (one champion: the same trained models)."""
    found = [champion_rows(out, category) for out in outs]
    archs = {arch for arch, _ in found}
    if len(archs) != 1:
        raise ValueError(f"{category}: the folders {outs} name different champions {sorted(archs)}")
    rows = pl.concat([r for _, r in found], how="vertical_relaxed")
    if rows["row_id"].n_unique() != rows.height:
        raise ValueError(f"{category}: the folders {outs} share studies; pool fresh sets of distinct seeds")
    return archs.pop(), rows


def champion_rows(out: Path, category: str) -> tuple[str, pl.DataFrame]:
    """(arch, rows with label, true_label and probabilities) of ``category``'s champion in ``out``."""
    table = pl.read_csv(out / "fresh_seed.csv")
    champion = table.filter((pl.col("category") == category) & (pl.col("champion") == "yes"))
    if champion.is_empty():
        raise ValueError(f"{out / 'fresh_seed.csv'}: no champion for {category}")
    arch = champion["arch"][0]
    rows = pl.read_parquet(out / "fresh_rows.parquet").filter(
        (pl.col("category") == category) & (pl.col("arch") == arch)
    )
    truth = true_grades(out / "fresh" / "raw")
    joined = rows.join(truth, on="row_id", how="left")
    if joined["true_label"].null_count():
        raise ValueError(f"{out}: {joined['true_label'].null_count()} scored rows have no true grade")
    return arch, joined


def boot_macro(codes: np.ndarray, weights: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray):
    """Macro recall and its draws under the study resampling ``weights``."""
    sums = recall_sums(codes, weights.shape[1], y_true.astype(np.int64), y_pred.astype(np.int64))
    point, _ = recalls_of(sums.sum(axis=0))
    draws, _ = recalls_of(np.einsum("bs,sij->bij", weights, sums))
    return float(point), draws


def measures(rows: pl.DataFrame, key: str) -> dict[str, tuple[float, np.ndarray]]:
    """Model vs written labels, model vs true grades, perfect reader vs written labels; one study
    resampling for the three, so their differences within a set are paired."""
    studies, codes = study_codes(rows["study_id"].to_numpy())
    weights = resample_weights(len(studies), N_BOOT, seed_for(key))
    written, true = rows["label"].to_numpy(), rows["true_label"].to_numpy()
    predicted = rows.select(PROB_COLUMNS).to_numpy().argmax(axis=1)
    return {
        "written": boot_macro(codes, weights, written, predicted),
        "true": boot_macro(codes, weights, true, predicted),
        "ceiling": boot_macro(codes, weights, written, true),
    }


def pct(point: float, draws: np.ndarray) -> str:
    ci = interval(point, draws)
    return f"{100 * ci.point:.1f} ({100 * ci.lo:.1f}–{100 * ci.hi:.1f})"


def diff(a: tuple[float, np.ndarray], b: tuple[float, np.ndarray]) -> str:
    ci = interval(b[0] - a[0], b[1] - a[1])
    return f"{100 * ci.point:+.1f} ({100 * ci.lo:+.1f} to {100 * ci.hi:+.1f})"


def compare(a: list[Path], b: list[Path], names: tuple[str, str]) -> pl.DataFrame:
    rows = []
    for category in CATEGORIES:
        arch_a, rows_a = pooled_rows(a, category)
        arch_b, rows_b = pooled_rows(b, category)
        m_a, m_b = measures(rows_a, f"a|{category}"), measures(rows_b, f"b|{category}")
        below_a = (m_a["ceiling"][0] - m_a["written"][0], m_a["ceiling"][1] - m_a["written"][1])
        below_b = (m_b["ceiling"][0] - m_b["written"][0], m_b["ceiling"][1] - m_b["written"][1])
        na, nb = names
        rows.append(
            {
                "category": category,
                "champions": f"{na} {arch_a}, {nb} {arch_b}",
                "studies": f"{rows_a['study_id'].n_unique()} / {rows_b['study_id'].n_unique()}",
                f"written: {na}": pct(*m_a["written"]),
                f"written: {nb}": pct(*m_b["written"]),
                f"written: {nb} − {na}": diff(m_a["written"], m_b["written"]),
                f"ceiling: {na}": pct(*m_a["ceiling"]),
                f"ceiling: {nb}": pct(*m_b["ceiling"]),
                f"below ceiling: {nb} − {na}": diff(below_a, below_b),
                f"true: {na}": pct(*m_a["true"]),
                f"true: {nb}": pct(*m_b["true"]),
                f"true: {nb} − {na}": diff(m_a["true"], m_b["true"]),
            }
        )
    return pl.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--a", type=Path, nargs="+", required=True, help="fresh_seed.py --out folder(s), reference"
    )
    parser.add_argument(
        "--b", type=Path, nargs="+", required=True, help="fresh_seed.py --out folder(s), compared"
    )
    parser.add_argument("--names", nargs=2, default=("a", "b"))
    args = parser.parse_args()
    table = compare(args.a, args.b, tuple(args.names))
    print(
        "Champions' macro recall on fresh studies, % (95 % study-bootstrap interval); written = against "
        "train.csv's labels, ceiling = a perfect reader against them, true = against the true grades; "
        "differences with independent bootstraps of the two sets\n"
    )
    # One row per measure, one column per category: the table reads down a category.
    shown = pl.DataFrame(
        [
            {"measure": m, **{r["category"]: r[m] for r in table.iter_rows(named=True)}}
            for m in table.columns[1:]
        ]
    )
    print(markdown_table(shown))


if __name__ == "__main__":
    main()
