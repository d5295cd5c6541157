"""Evaluation report on hand-made trained-model partitions (oof.parquet + summary.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lss_pipeline.core.constants import ARCHITECTURES, CATEGORIES, CONDITIONS, LEVEL_SLUGS, LEVELS
from lss_pipeline.core.evaluate.champions import choose_champions
from lss_pipeline.core.evaluate.kaggle import competition_for_arch
from lss_pipeline.core.evaluate.load import load_grid, load_partition
from lss_pipeline.core.evaluate.metrics import competition_score, make_row_id
from lss_pipeline.core.evaluate.report import build_report
from lss_pipeline.core.evaluate.table import metrics_table
from lss_pipeline.core.paths import Paths

STUDIES = list(range(101, 109))  # 8 studies
DATASET = {"kind": "synthetic", "fingerprint": "abc123", "n_studies": 8}


def _rows(category: str) -> list[tuple]:
    """(study_id, row_id, condition, side, level) of every row of one category."""
    return [
        (s, make_row_id(s, stem, slug), cond, side, lvl)
        for s in STUDIES
        for (cond, cat, side, stem) in CONDITIONS
        if cat == category
        for lvl, slug in zip(LEVELS, LEVEL_SLUGS)
    ]


def _labels(n: int) -> np.ndarray:
    return np.arange(n) % 3  # every class present


def report_of(paths: Paths, archs=ARCHITECTURES, categories=CATEGORIES, **kwargs):
    grid = load_grid(paths, archs, categories, kwargs.get("progress"))
    return build_report(grid, metrics_table(grid), paths, **kwargs)


def write_partition(
    paths: Paths,
    arch: str,
    category: str,
    wrong: tuple[int, int, int],
    macs: int,
    params: int = 1_000_000,
    version: str | None = "3",
) -> None:
    """Predictions equal the label except for the first wrong[c] rows of each class c,
    which are predicted as class (c + 1) % 3; recall of class c = 1 - wrong[c] / count_c."""
    rows = _rows(category)
    labels = _labels(len(rows))
    preds = labels.copy()
    for c in range(3):
        idx = np.flatnonzero(labels == c)[: wrong[c]]
        preds[idx] = (c + 1) % 3
    probs = np.full((len(rows), 3), 0.15)
    probs[np.arange(len(rows)), preds] = 0.7
    oof = pl.DataFrame(
        {
            "study_id": [r[0] for r in rows],
            "row_id": [r[1] for r in rows],
            "condition": [r[2] for r in rows],
            "side": [r[3] for r in rows],
            "level": [r[4] for r in rows],
            "label": labels.tolist(),
            "fold": [r[0] % 5 for r in rows],
            "prob_normal_mild": probs[:, 0],
            "prob_moderate": probs[:, 1],
            "prob_severe": probs[:, 2],
        },
        schema_overrides={"study_id": pl.Int64, "side": pl.Utf8, "label": pl.Int8, "fold": pl.Int8},
    )
    paths.model_dir(arch, category).mkdir(parents=True, exist_ok=True)
    oof.write_parquet(paths.model_oof(arch, category))
    summary = {
        "arch": arch,
        "timm_name": f"{arch}_tiny",
        "category": category,
        "mlflow_run_id": f"run-{arch}-{category}",
        "model_version": version,
        "registered_model": f"lss-{category}" if version else None,
        "params": params,
        "macs": macs,
        "loss": "weighted_ce",
        "weight_scheme": "effective_number",
        "val_macro_recall": 0.5,
    }
    paths.model_summary(arch, category).write_text(json.dumps(summary))


def expected_macro_recall(category: str, wrong: tuple[int, int, int]) -> float:
    counts = np.bincount(_labels(len(_rows(category))), minlength=3)
    return float(np.mean([1 - wrong[c] / counts[c] for c in range(3)]))


# scs has 40 rows (counts 14, 13, 13); nfs and sbs 80 rows (27, 27, 26).
CONVNEXT_WRONG = {"scs": (2, 1, 1), "nfs": (3, 2, 2), "sbs": (1, 1, 3)}
RESNET_WRONG = {"scs": (4, 3, 5), "nfs": (3, 2, 2)}  # nfs ties with ConvNeXt; no sbs
MACS = {"convnext": 2_000_000_000, "resnet": 500_000_000}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    models = Paths(data_dir=root, raw_dir=root / "raw")
    for cat, wrong in CONVNEXT_WRONG.items():
        write_partition(models, "convnext", cat, wrong, MACS["convnext"], params=3_700_000)
    for cat, wrong in RESNET_WRONG.items():
        write_partition(models, "resnet", cat, wrong, MACS["resnet"], params=11_200_000)
    # A half-written partition (summary only) counts as missing.
    models.model_dir("swin", "scs").mkdir(parents=True)
    models.model_summary("swin", "scs").write_text("{}")
    runs = pl.DataFrame(
        {
            "arch": ["convnext", "convnext", "convnext", "resnet"],
            "category": ["scs", "scs", "scs", "scs"],
            "loss": ["weighted_ce", "weighted_ce", "focal", "focal"],
            "run_id": ["r1", "r2", "r3", "r4"],
            "val_macro_recall": [0.61, 0.72, 0.66, None],
        }
    )
    messages: list[str] = []
    result = report_of(models, dataset=DATASET, mlflow_runs=runs, progress=messages.append)
    return result, messages


def _row(result, arch, cat) -> dict:
    return result.metrics.filter((pl.col("arch") == arch) & (pl.col("category") == cat)).row(0, named=True)


def test_files_written(report):
    result, messages = report
    out = result.markdown_path.parent
    for name in (
        "evaluation.md",
        "evaluation.html",
        "evaluation_metrics.csv",
        "evaluation_metrics.parquet",
        "confusion_convnext_scs.png",
        "confusion_resnet_nfs.png",
        "recall_per_class_sbs.png",
        "recall_vs_gmacs_scs.png",
    ):
        assert (out / name).is_file(), name
    assert not list(out.glob(".*tmp*")), "temp files left behind"
    assert len(result.plot_paths) == 5 + 3 + 3
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in result.plot_paths)
    html = result.html_path.read_text()
    assert html.count('<img src="data:image/png;base64,') == len(result.plot_paths)
    assert "<table>" in html
    assert pl.read_parquet(result.parquet_path).shape == result.metrics.shape == (5, result.metrics.width)
    assert pl.read_csv(result.csv_path).height == 5
    assert any("convnext/scs" in m for m in messages)


def test_missing_partitions_listed(report):
    result, _ = report
    assert result.missing == [("resnet", "sbs"), ("swin", "scs"), ("swin", "nfs"), ("swin", "sbs")]
    md = result.markdown_path.read_text()
    assert "ResNet × SBS" in md and "Swin × SCS" in md


def test_metrics_and_delta_vs_resnet(report):
    result, _ = report
    for cat, wrong in CONVNEXT_WRONG.items():
        expected = expected_macro_recall(cat, wrong)
        assert _row(result, "convnext", cat)["macro_recall"] == pytest.approx(expected)
    conv, res = _row(result, "convnext", "scs"), _row(result, "resnet", "scs")
    # scs counts 14, 13, 13: ConvNeXt misses 2, 1, 1; ResNet 4, 3, 5.
    conv_expected = (1 - 2 / 14 + 1 - 1 / 13 + 1 - 1 / 13) / 3
    resnet_expected = (1 - 4 / 14 + 1 - 3 / 13 + 1 - 5 / 13) / 3
    expected_delta = 100 * (conv_expected - resnet_expected)
    assert conv["delta_vs_resnet_pts"] == pytest.approx(expected_delta)
    assert res["delta_vs_resnet_pts"] == pytest.approx(0.0)
    assert _row(result, "convnext", "sbs")["delta_vs_resnet_pts"] is None  # no baseline
    assert conv["gmacs"] == pytest.approx(2.0)
    assert conv["macro_recall_pct_per_gmac"] == pytest.approx(100 * conv["macro_recall"] / 2.0)
    assert conv["cm_true0_pred1"] == 2 and conv["cm_true2_pred0"] == 1 and conv["cm_true0_pred0"] == 12
    assert conv["params"] == 3_700_000 and conv["mlflow_run_id"] == "run-convnext-scs"
    assert conv["val_macro_recall"] == pytest.approx(0.5) and conv["loss"] == "weighted_ce"
    assert f"{expected_delta:+.2f}" in result.markdown_table


def test_markdown_has_dataset_and_thesis_numbers(report):
    result, _ = report
    md = result.markdown_path.read_text()
    head = md[: md.index("## ")]
    assert "synthetic" in head and "abc123" in head and "8 studies" in head
    for number in ("76.17 %", "69.31 %", "72.65 %", "+6.18", "+32.98", "+5.86"):
        assert number in md, number
    assert "published, real RSNA data" in md
    assert "Macro recall" in result.markdown_table and "| ConvNeXt | SCS |" in result.markdown_table


def test_competition_only_with_all_three_categories(report):
    result, _ = report
    assert set(result.competition) == {"convnext"}
    md = result.markdown_path.read_text()
    assert "ResNet: not computed, missing SBS" in md
    # Same numbers as scoring the concatenated oof rows directly.
    paths = Paths(data_dir=result.markdown_path.parent.parent, raw_dir=Path("raw"))
    oofs = [pl.read_parquet(paths.model_oof("convnext", c)) for c in CONVNEXT_WRONG]
    allrows = pl.concat(oofs)
    solution = allrows.select("row_id", pl.col("label").cast(pl.Int64))
    submission = allrows.select(
        "row_id",
        pl.col("prob_normal_mild").alias("normal_mild"),
        pl.col("prob_moderate").alias("moderate"),
        pl.col("prob_severe").alias("severe"),
    )
    direct = competition_score(solution, submission)
    got = result.competition["convnext"]
    assert got["score"] == pytest.approx(direct["score"])
    assert got["n_studies"] == 8 and got["n_rows"] == 200 and got["n_filled_rows"] == 0


def test_champions_tie_broken_by_macs(report):
    result, _ = report
    # nfs: ConvNeXt and ResNet have the same macro recall; ResNet has fewer MACs.
    resnet_nfs = _row(result, "resnet", "nfs")["macro_recall"]
    assert _row(result, "convnext", "nfs")["macro_recall"] == pytest.approx(resnet_nfs)
    assert result.champions["nfs"]["arch"] == "resnet"
    assert result.champions["scs"]["arch"] == "convnext"
    assert result.champions["sbs"]["arch"] == "convnext"
    assert "no registered model alias was set" in result.markdown_path.read_text()


def test_choose_champions_direct():
    df = pl.DataFrame(
        {
            "arch": ["convnext", "resnet", "swin", "convnext", "resnet"],
            "category": ["scs", "scs", "scs", "nfs", "nfs"],
            "macro_recall": [0.70, 0.70, 0.69, 0.50, 0.55],
            "macs": [900, 400, 100, 1, 2],
        }
    )
    chosen = choose_champions(df)
    assert chosen["scs"]["arch"] == "resnet"
    assert chosen["nfs"]["arch"] == "resnet"


def test_loss_table_best_run_per_loss(report):
    result, _ = report
    table = result.loss_table
    assert table.select("arch", "loss", "run_id", "n_runs").rows() == [
        ("convnext", "focal", "r3", 1),
        ("convnext", "weighted_ce", "r2", 2),
    ]
    assert "72.00 %" in result.markdown_path.read_text()


def test_given_champions_and_one_category_missing(tmp_path):
    models = Paths(data_dir=tmp_path, raw_dir=tmp_path / "raw")
    write_partition(models, "convnext", "scs", CONVNEXT_WRONG["scs"], MACS["convnext"])
    write_partition(models, "convnext", "nfs", CONVNEXT_WRONG["nfs"], MACS["convnext"])
    champions = {"scs": {"arch": "convnext", "version": "7", "macro_recall": 0.9, "macs": 2_000_000_000}}
    rsna = {"kind": "rsna", "fingerprint": "f0", "n_studies": 1975}
    result = report_of(models, archs=("convnext",), dataset=rsna, champions=champions)
    assert result.competition == {}
    assert result.missing == [("convnext", "sbs")]
    md = result.markdown_path.read_text()
    assert "ConvNeXt: not computed, missing SBS" in md
    assert "`champion`" in md and "| SCS | `lss-scs` | ConvNeXt | 7 | 90.00 % | 2.000 |" in md
    assert "RSNA 2024 Lumbar Spine (real)" in md and "not comparable" not in md
    assert "No MLflow runs were given." in md
    assert result.metrics.height == 2 and result.loss_table is None
    assert '<img src="data:image/png;base64,' in result.html_path.read_text()


def test_competition_fills_unpredicted_rows_with_prior(tmp_path):
    models = Paths(data_dir=tmp_path, raw_dir=tmp_path / "raw")
    for cat, wrong in CONVNEXT_WRONG.items():
        write_partition(models, "convnext", cat, wrong, MACS["convnext"])
    oofs = {c: pl.read_parquet(models.model_oof("convnext", c)) for c in CONVNEXT_WRONG}
    labels = pl.concat(
        [df.select("study_id", "row_id", pl.col("label").cast(pl.Int64)) for df in oofs.values()]
    )
    dropped = "101_spinal_canal_stenosis_l1_l2"
    label_of_dropped = labels.filter(pl.col("row_id") == dropped)["label"][0]
    oofs["scs"] = oofs["scs"].filter(pl.col("row_id") != dropped)
    got = competition_for_arch(oofs, labels)
    assert got["n_filled_rows"] == 1 and got["n_rows"] == 200
    # Reproduce with the prior (label shares of the remaining scs oof rows) filled in by hand.
    counts = np.bincount(oofs["scs"]["label"].to_numpy(), minlength=3)
    prior = counts / counts.sum()
    allrows = pl.concat(list(oofs.values()))
    submission = pl.concat(
        [
            allrows.select(
                "row_id",
                pl.col("prob_normal_mild").alias("normal_mild"),
                pl.col("prob_moderate").alias("moderate"),
                pl.col("prob_severe").alias("severe"),
            ),
            pl.DataFrame(
                {"row_id": [dropped], "normal_mild": [prior[0]], "moderate": [prior[1]], "severe": [prior[2]]}
            ),
        ]
    )
    expected = competition_score(labels.select("row_id", "label"), submission)["score"]
    assert got["score"] == pytest.approx(expected)
    assert label_of_dropped is not None


def test_bad_partition_names_the_file(tmp_path):
    models = Paths(data_dir=tmp_path, raw_dir=tmp_path / "raw")
    write_partition(models, "convnext", "scs", (0, 0, 0), 1)
    oof_path = models.model_oof("convnext", "scs")
    pl.read_parquet(oof_path).drop("prob_severe").write_parquet(oof_path)
    with pytest.raises(ValueError, match=r"oof\.parquet.*prob_severe"):
        load_partition(models, "convnext", "scs")
    with pytest.raises(ValueError, match="oof.parquet"):
        report_of(models, dataset=DATASET)
    assert not models.report_markdown.exists()

    write_partition(models, "resnet", "nfs", (0, 0, 0), 1)
    models.model_summary("resnet", "nfs").write_text(json.dumps({"arch": "swin", "category": "nfs"}))
    with pytest.raises(ValueError, match="summary.json.*arch"):
        load_partition(models, "resnet", "nfs")


def test_bad_dataset_info(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        report_of(Paths(data_dir=tmp_path, raw_dir=tmp_path / "raw"), dataset={"kind": "toy"})


def test_empty_grid_still_reports(tmp_path):
    result = report_of(Paths(data_dir=tmp_path, raw_dir=tmp_path / "raw"), dataset=DATASET)
    assert result.metrics.is_empty() and len(result.missing) == 9
    assert result.markdown_path.is_file() and result.plot_paths == []
    assert "No trained partition found." in result.markdown_path.read_text()
