"""The evaluation report on hand-made trained partitions: test-split headline, intervals, claims, files."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from lss_pipeline.core.constants import ARCHITECTURES, CATEGORIES
from lss_pipeline.core.evaluate.champions import choose_champions
from lss_pipeline.core.evaluate.load import load_grid, load_partition
from lss_pipeline.core.evaluate.metrics import competition_score
from lss_pipeline.core.evaluate.options import EvaluationOptions
from lss_pipeline.core.evaluate.report import build_report
from lss_pipeline.core.paths import Paths
from lss_pipeline_tests.core.evaluate.fabricate import (
    CV_STUDIES,
    DATASET,
    TEST_STUDIES,
    class_counts,
    expected_macro_recall,
    write_partition,
    write_splits,
)

OPTIONS = EvaluationOptions(n_boot=300)

# Test split: scs 50 rows (17, 17, 16), nfs and sbs 100 rows (34, 33, 33).
CONVNEXT_TEST_WRONG = {"scs": (0, 0, 0), "nfs": (3, 2, 2), "sbs": (1, 1, 3)}
RESNET_TEST_WRONG = {"scs": (9, 9, 9), "nfs": (3, 2, 2)}  # scs far worse, nfs identical; no sbs
# Out-of-fold rows: ResNet looks better there, so a headline from them would differ.
CONVNEXT_OOF_WRONG = {"scs": (4, 4, 4), "nfs": (1, 1, 1), "sbs": (0, 0, 0)}


def report_of(paths: Paths, archs=ARCHITECTURES, categories=CATEGORIES, **kwargs):
    grid = load_grid(paths, archs, categories, kwargs.get("progress"))
    return build_report(grid, paths, options=OPTIONS, **kwargs)


def write_grid(paths: Paths) -> None:
    for cat, wrong in CONVNEXT_TEST_WRONG.items():
        write_partition(paths, "convnext", cat, wrong, CONVNEXT_OOF_WRONG[cat])
    for cat, wrong in RESNET_TEST_WRONG.items():
        write_partition(paths, "resnet", cat, wrong)
    write_splits(paths)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    paths = Paths(data_dir=root, raw_dir=root / "raw")
    write_grid(paths)
    # Swin SCS: a training that never wrote its test predictions is left out, with the reason.
    write_partition(paths, "swin", "scs", (0, 0, 0))
    paths.model_test_predictions("swin", "scs").unlink()
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
    result = report_of(paths, dataset=DATASET, mlflow_runs=runs, progress=messages.append)
    return result, messages, paths


def _row(result, arch, cat) -> dict:
    return result.metrics.filter((pl.col("arch") == arch) & (pl.col("category") == cat)).row(0, named=True)


def test_files_written(report):
    result, messages, paths = report
    plot_stems = ("confusion_convnext_scs", "recall_per_class_sbs", "recall_vs_gmacs_scs")
    tables = (
        paths.report_markdown,
        paths.report_html,
        paths.report_metrics_csv,
        paths.report_metrics_parquet,
    )
    for path in (*tables, *(paths.report_plot(stem) for stem in plot_stems)):
        assert path.is_file(), path
    assert not list(paths.reports_dir.glob(".*tmp*")), "temp files left behind"
    assert len(result.plot_paths) == 5 + 3 + 3 + 3  # confusion, recall bars, recall vs GMACs, reliability
    assert paths.report_plot("reliability_scs").is_file()
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in result.plot_paths)
    html = result.html_path.read_text()
    assert html.count('<img src="data:image/png;base64,') == len(result.plot_paths)
    assert pl.read_parquet(result.parquet_path).shape == result.metrics.shape == (5, result.metrics.width)
    assert pl.read_csv(result.csv_path).height == 5
    assert any("convnext/scs" in m for m in messages)


def test_missing_and_incomplete_partitions_named(report):
    result, _, _ = report
    assert result.missing == [("resnet", "sbs"), ("swin", "scs"), ("swin", "nfs"), ("swin", "sbs")]
    md = result.markdown_path.read_text()
    assert "Swin × SCS: no test predictions" in md and "ResNet × SBS" in md


def test_headline_comes_from_the_test_split_with_intervals_and_counts(report):
    result, _, _ = report
    for cat, wrong in CONVNEXT_TEST_WRONG.items():
        row = _row(result, "convnext", cat)
        assert row["test_macro_recall"] == pytest.approx(expected_macro_recall(cat, TEST_STUDIES, wrong))
        assert row["oof_macro_recall"] == pytest.approx(
            expected_macro_recall(cat, CV_STUDIES, CONVNEXT_OOF_WRONG[cat])
        )
        assert [row[f"test_n_{c}"] for c in ("normal_mild", "moderate", "severe")] == list(
            class_counts(cat, TEST_STUDIES)
        )
        assert row["test_n_studies"] == len(TEST_STUDIES) and row["oof_n_studies"] == len(CV_STUDIES)
        for name in ("test_macro_recall", "test_recall_severe", "test_recall_moderate"):
            assert row[f"{name}_lo"] <= row[name] <= row[f"{name}_hi"], name
    # A perfect model's interval is a point; an imperfect one's is not.
    perfect = _row(result, "convnext", "scs")
    assert perfect["test_macro_recall_lo"] == perfect["test_macro_recall_hi"] == 1.0
    sbs = _row(result, "convnext", "sbs")
    assert sbs["test_recall_severe_lo"] < sbs["test_recall_severe"] < 1.0
    assert sbs["test_cm_true2_pred0"] == 3 and sbs["test_cm_true2_pred2"] == 30
    md = result.markdown_path.read_text()
    assert "17 / 17 / 16" in md and "34 / 33 / 33" in md  # n per class, test split
    assert "100.0 % (100.0–100.0)" in md
    assert "Fewer than 20 labelled test rows" in md and "ConvNeXt SCS Moderate (n = 17)" in md
    assert "| ConvNeXt | SCS |" in result.markdown_table


def test_delta_vs_resnet_is_paired_on_the_same_studies(report):
    result, _, _ = report
    conv, res = _row(result, "convnext", "scs"), _row(result, "resnet", "scs")
    expected = 100 * (conv["test_macro_recall"] - res["test_macro_recall"])
    assert conv["test_delta_vs_resnet_pts"] == pytest.approx(expected)
    assert conv["test_delta_vs_resnet_pts_lo"] > 0
    # Identical predictions: the paired difference is exactly zero in every resample.
    nfs = _row(result, "convnext", "nfs")
    assert nfs["test_delta_vs_resnet_pts"] == nfs["test_delta_vs_resnet_pts_lo"] == 0.0
    assert _row(result, "convnext", "sbs")["test_delta_vs_resnet_pts"] is None  # no baseline


def test_method_is_stated_and_the_false_sentence_is_gone(report):
    result, _, _ = report
    md = result.markdown_path.read_text()
    head = md[: md.index("## ")]
    assert "synthetic" in head and "abc123" in head and "18 studies" in head
    assert "every study scored by the model of the fold that did not train on it" not in md
    assert "Of 18 studies, 10 (56 %) form the held-out **test split**" in md
    assert "300 resamples of the test **studies**" in md
    assert "fvcore" in md and "MACs" in md
    assert "4 of 4 (folds 0,1,2,3)" in md and "8 / 8" in md  # folds trained; OOF studies / cv studies


def test_kaggle_metric_on_the_test_split(report):
    result, _, paths = report
    assert set(result.competition) == {"convnext"}
    md = result.markdown_path.read_text()
    assert "ResNet: not computed, missing SBS" in md
    tables = pl.concat([pl.read_parquet(paths.model_test_predictions("convnext", c)) for c in CATEGORIES])
    solution = tables.select("row_id", pl.col("label").cast(pl.Int64))
    submission = tables.select(
        "row_id",
        pl.col("prob_normal_mild").alias("normal_mild"),
        pl.col("prob_moderate").alias("moderate"),
        pl.col("prob_severe").alias("severe"),
    )
    got = result.competition["convnext"]
    assert got["score"] == pytest.approx(competition_score(solution, submission)["score"])
    assert got["n_studies"] == len(TEST_STUDIES) and got["n_rows"] == 250 and got["n_filled_rows"] == 0
    assert got["score_lo"] < got["score"] < got["score_hi"]


def test_thesis_claims_verdicts(report):
    result, _, _ = report
    verdicts = {(c.category, c.versus): c.verdict for c in result.claims}
    assert verdicts == {
        ("scs", "resnet"): "reproduced",
        ("scs", "swin"): "not checked",
        ("nfs", "resnet"): "inconclusive",
        ("nfs", "swin"): "not checked",
        ("sbs", "resnet"): "not checked",
        ("sbs", "swin"): "not checked",
    }
    scs = next(c for c in result.claims if (c.category, c.versus) == ("scs", "resnet"))
    assert scs.result is not None and scs.result.difference.excludes_zero
    assert scs.comparable_size is False  # 3.7 M params vs 11.2 M
    md = result.markdown_path.read_text()
    for number in ("76.17 %", "69.31 %", "72.65 %", "+6.18", "+32.98", "+5.86"):
        assert number in md, number
    assert "**reproduced**" in md and "**inconclusive**" in md
    assert "not of comparable size: the verdict is about size as much as architecture" in md


def test_not_reproduced_when_convnext_is_worse_and_comparable_size_is_quiet(tmp_path):
    paths = Paths(data_dir=tmp_path, raw_dir=tmp_path / "raw")
    write_partition(paths, "convnext", "scs", (9, 9, 9), params=10_000_000, macs=10)
    write_partition(paths, "swin", "scs", (0, 0, 0), params=11_000_000, macs=12)
    result = report_of(paths, archs=("convnext", "swin"), categories=("scs",), dataset=DATASET)
    [vs_resnet, vs_swin] = result.claims
    assert vs_resnet.verdict == "not checked" and vs_swin.verdict == "not reproduced"
    assert vs_swin.comparable_size is True
    assert "the verdict is about size as much as architecture" not in result.markdown_path.read_text()


def test_challengers_are_chosen_on_out_of_fold_rows(report):
    result, _, _ = report
    # Test split: ConvNeXt perfect on SCS; out-of-fold rows: ResNet (0 wrong) beats ConvNeXt (4 wrong).
    assert result.candidates["scs"]["arch"] == "resnet"
    assert "No registry was consulted for this report" in result.markdown_path.read_text()


def test_choose_champions_ties_go_to_fewer_macs():
    df = pl.DataFrame(
        {
            "arch": ["convnext", "resnet", "swin", "convnext", "resnet"],
            "category": ["scs", "scs", "scs", "nfs", "nfs"],
            "oof_macro_recall": [0.70, 0.70, 0.69, 0.50, 0.55],
            "macs": [900, 400, 100, 1, 2],
        }
    )
    chosen = choose_champions(df)
    assert chosen["scs"]["arch"] == "resnet" and chosen["nfs"]["arch"] == "resnet"


def test_loss_table_best_run_per_loss(report):
    result, _, _ = report
    assert result.loss_table is not None
    assert result.loss_table.select("arch", "loss", "run_id", "n_runs").rows() == [
        ("convnext", "focal", "r3", 1),
        ("convnext", "weighted_ce", "r2", 2),
    ]
    assert "72.0 %" in result.markdown_path.read_text()


def test_kaggle_fills_unpredicted_rows_with_the_oof_prior(tmp_path):
    paths = Paths(data_dir=tmp_path, raw_dir=tmp_path / "raw")
    for cat, wrong in CONVNEXT_TEST_WRONG.items():
        write_partition(paths, "convnext", cat, wrong, CONVNEXT_OOF_WRONG[cat])
    tables = {c: pl.read_parquet(paths.model_test_predictions("convnext", c)) for c in CATEGORIES}
    labels = pl.concat(
        [t.select("study_id", "row_id", pl.col("label").cast(pl.Int64)) for t in tables.values()]
    )
    paths.processed_dir.mkdir(parents=True)
    labels.write_parquet(paths.labels)
    dropped = f"{TEST_STUDIES[0]}_spinal_canal_stenosis_l1_l2"
    tables["scs"].filter(pl.col("row_id") != dropped).write_parquet(
        paths.model_test_predictions("convnext", "scs")
    )
    result = report_of(paths, archs=("convnext",), dataset=DATASET)
    got = result.competition["convnext"]
    assert got["n_filled_rows"] == 1 and got["n_rows"] == 250 and got["solution_source"] == "labels table"
    oof = pl.read_parquet(paths.model_oof("convnext", "scs"))
    prior = np.bincount(oof["label"].to_numpy(), minlength=3) / oof.height
    kept = pl.concat([t.filter(pl.col("row_id") != dropped) for t in tables.values()])
    submission = pl.concat(
        [
            kept.select(
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
    assert got["score"] == pytest.approx(
        competition_score(labels.select("row_id", "label"), submission)["score"]
    )


def test_bad_partition_names_the_file_and_writes_nothing(tmp_path):
    paths = Paths(data_dir=tmp_path, raw_dir=tmp_path / "raw")
    write_partition(paths, "convnext", "scs", (0, 0, 0))
    test_path = paths.model_test_predictions("convnext", "scs")
    pl.read_parquet(test_path).drop("prob_severe").write_parquet(test_path)
    with pytest.raises(ValueError, match=r"test_predictions\.parquet.*prob_severe"):
        load_partition(paths, "convnext", "scs")
    with pytest.raises(ValueError, match="test_predictions.parquet"):
        report_of(paths, dataset=DATASET)
    assert not paths.report_markdown.exists()

    write_partition(paths, "resnet", "nfs", (0, 0, 0))
    paths.model_summary("resnet", "nfs").write_text(json.dumps({"arch": "swin", "category": "nfs"}))
    with pytest.raises(ValueError, match="summary.json.*arch"):
        load_partition(paths, "resnet", "nfs")


def test_calibration_is_fitted_on_oof_rows_and_reported_before_and_after(report):
    result, _, _ = report
    row = _row(result, "convnext", "nfs")
    assert row["temperature_fit_rows"] == row["oof_n_rows"] and row["temperature"] > 0
    assert row["test_ece_calibrated"] is not None and row["test_log_loss_calibrated"] is not None
    got = result.competition["convnext"]
    assert got["calibrated_score"] != got["score"]
    assert got["calibrated_score_lo"] <= got["calibrated_score"] <= got["calibrated_score_hi"]
    md = result.markdown_path.read_text()
    assert "## Calibration: temperature scaling" in md and "ECE before → after" in md
    assert "Score after temperature scaling (95 % CI)" in md
    # Perfect out-of-fold rows (ResNet SCS) push T to the edge of its range: flagged, not trusted.
    assert _row(result, "resnet", "scs")["temperature_at_bound"] and "(search bound: not trusted)" in md


def test_bad_dataset_info(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        report_of(Paths(data_dir=tmp_path, raw_dir=tmp_path / "raw"), dataset={"kind": "toy"})


def test_empty_grid_still_reports(tmp_path):
    paths = Paths(data_dir=tmp_path, raw_dir=tmp_path / "raw")
    result = report_of(paths, dataset=DATASET)
    assert result.metrics.is_empty() and len(result.missing) == 9
    assert result.markdown_path.is_file() and result.plot_paths == []
    assert "No trained partition found." in result.markdown_path.read_text()
