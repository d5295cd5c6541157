"""Grading studies from their DICOMs alone: localisation error, localised vs oracle grades, seconds per study.

1. A *training* synthetic set (seed ``--train-seed``) goes through the whole pipeline
   (``lss-pipeline demo`` with one architecture): graders, localisers, registry, champions.
2. A *fresh* synthetic set (seed ``--eval-seed``, never used by a test) is ingested; none of its
   studies was seen by any model.
3. On every labelled study of the fresh set: the localisers' points against the labelled ones
   (``core/localise/metrics``), and the champion graders' macro recall on crops at the
   *labelled* points (oracle) and at the *localised* points (what a submission can reach).
4. Seconds per study end to end on this machine's CPU (demo profile), split into decode /
   localise / crop / grade (``core/predict/run.grade_study``), and ``lss-pipeline predict`` on one
   test study folder.

    .venv/bin/python benchmarks/bench_predict.py --train-studies 120 --eval-studies 40 --out /tmp/bench
    .venv/bin/python benchmarks/bench_predict.py --train-dir /tmp/bench/train ...  # reuse a trained set
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import polars as pl
from synthetic_sets import scanned_set

from lss_pipeline.core.constants import CATEGORIES, CATEGORY_SERIES, CLASS_NAMES, PROB_COLUMNS
from lss_pipeline.core.crops.points import crop_points
from lss_pipeline.core.evaluate.metrics import classification_metrics
from lss_pipeline.core.localise.metrics import point_errors, summarise
from lss_pipeline.core.localise.run import localise_studies
from lss_pipeline.core.markdown import markdown_table
from lss_pipeline.core.predict.grade import Grader
from lss_pipeline.core.predict.run import TIMING_KEYS, Models, grade_study, load_models
from lss_pipeline.core.settings import Settings


def train_set(root: Path, studies: int, seed: int, archs: tuple[str, ...]) -> Settings:
    """The training set's data folder with the whole demo pipeline run on it (skipped when done)."""
    from lss_pipeline.demo import run_demo

    settings = Settings(data_dir=root, raw_dir=root / "raw", profile_name="demo")
    if not settings.paths.champions_json.exists():
        from lss_pipeline.core.synth import generate_dataset

        if not settings.paths.train_csv.exists():
            generate_dataset(settings.raw_dir, n_studies=studies, seed=seed, n_test_studies=2)
        os.environ["LSS_DATA_DIR"], os.environ["LSS_RAW_DIR"] = str(root), str(settings.raw_dir)
        run_demo(settings, archs=archs, say=lambda m: print(m, flush=True))
    return settings


def eval_set(
    root: Path, studies: int, test_studies: int, seed: int
) -> tuple[Settings, pl.DataFrame, pl.DataFrame]:
    return scanned_set(root, studies, seed, n_test_studies=test_studies)


def oracle_vs_localised(
    models: Models, metadata: pl.DataFrame, labels: pl.DataFrame, raw_dir: Path, localised: pl.DataFrame
) -> pl.DataFrame:
    """Macro recall per category of the champion graders at labelled and at localised points."""
    rows = []
    for category in CATEGORIES:
        grader: Grader | None = models.graders.get(category)
        if grader is None:
            continue
        truth = labels.filter(
            (pl.col("category") == category) & pl.col("label").is_not_null() & pl.col("x").is_not_null()
        )
        columns = ("study_id", "series_id", "instance_number", "x", "y", "row_id", "side")
        oracle = _grade(grader, truth.select(columns), metadata, raw_dir)
        mine = localised.filter(pl.col("category") == category).select("row_id", *CLASS_NAMES)
        both = truth.select("row_id", "label").join(oracle, on="row_id").join(mine, on="row_id")
        y = both["label"].to_numpy()
        o = classification_metrics(y, both.select(PROB_COLUMNS).to_numpy())
        loc = classification_metrics(y, both.select(CLASS_NAMES).to_numpy())
        rows.append(
            {
                "category": category,
                "rows": both.height,
                "oracle_macro_recall": o["macro_recall"],
                "localised_macro_recall": loc["macro_recall"],
                "difference_points": 100 * (loc["macro_recall"] - o["macro_recall"]),
            }
        )
    return pl.DataFrame(rows)


def _grade(grader: Grader, points: pl.DataFrame, metadata: pl.DataFrame, raw_dir: Path) -> pl.DataFrame:
    import torch

    from lss_pipeline.core.predict.grade import _flip_right

    cut = crop_points(points, metadata, raw_dir, crop_mm=grader.crop_mm, crop_px=grader.crop_px,
                      slices=grader.slices, series_description=CATEGORY_SERIES[grader.category])  # fmt: skip
    crops = cut.crops.astype(np.float32)
    if grader.flip_merge:
        crops = _flip_right(crops, cut.index["side"].to_list(), grader.category)
    with torch.inference_mode():
        probs = torch.softmax(grader.model(torch.from_numpy(crops)).float(), dim=1).numpy()
    return cut.index.select("row_id").with_columns(
        [pl.Series(c, probs[:, i]) for i, c in enumerate(PROB_COLUMNS)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/lss_bench_predict"))
    parser.add_argument(
        "--train-dir", type=Path, default=None, help="a data folder already run (default: OUT/train)"
    )
    parser.add_argument("--train-studies", type=int, default=120)
    parser.add_argument("--train-seed", type=int, default=2024)
    parser.add_argument("--eval-studies", type=int, default=40)
    parser.add_argument("--eval-test-studies", type=int, default=4)
    parser.add_argument("--eval-seed", type=int, default=777)
    parser.add_argument("--arch", default="convnext")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    train = train_set(args.train_dir or out / "train", args.train_studies, args.train_seed, (args.arch,))
    settings, metadata, labels = eval_set(
        out / "eval", args.eval_studies, args.eval_test_studies, args.eval_seed
    )
    models = load_models(train)
    print("models:", models.versions, "notes:", models.notes, flush=True)

    study_ids = sorted(labels["study_id"].unique().to_list())
    t0 = time.perf_counter()
    points, loc_timings = localise_studies(study_ids, metadata, settings.paths, models.localisers)
    profile = settings.profile
    errors = point_errors(points, labels, metadata, crop_mm=profile.crop_mm, slices=profile.slices)
    localisation = summarise(errors)
    print(localisation, flush=True)

    per_study = []
    graded = []
    for study_id in study_ids:
        result = grade_study(study_id, metadata, settings.raw_dir, models)
        per_study.append(result.timings)
        graded.append(result.table)
    grades = oracle_vs_localised(models, metadata, labels, settings.raw_dir, pl.concat(graded))
    print(grades, flush=True)
    timing = {
        key: {
            "mean": statistics.mean(t[key] for t in per_study),
            "median": statistics.median(t[key] for t in per_study),
        }
        for key in TIMING_KEYS
    }

    from lss_pipeline.core.predict.folder import predict_folder

    test_folder = sorted(p for p in settings.paths.test_images.iterdir() if p.is_dir())[0]
    t1 = time.perf_counter()
    folder = predict_folder(test_folder, out / "predict_one", train, models=models)
    predict_one_s = time.perf_counter() - t1

    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "train": {"studies": args.train_studies, "seed": args.train_seed, "dir": str(train.data_dir)},
        "eval": {"studies": len(study_ids), "seed": args.eval_seed},
        "models": models.versions,
        "localisation": localisation.to_dicts(),
        "grades": grades.to_dicts(),
        "seconds_per_study": timing,
        "predict_one_study_folder_s": predict_one_s,
        "predict_one_timings": folder.grades.timings,
        "localise_all_s": time.perf_counter() - t0,
        "total_s": time.perf_counter() - started,
    }
    (out / "bench_predict.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    timing_table = pl.DataFrame(
        [{"step": k, "mean_s": v["mean"], "median_s": v["median"]} for k, v in timing.items()]
    )
    md = "\n\n".join(
        [
            f"train: {args.train_studies} studies (seed {args.train_seed}); eval: {len(study_ids)} studies "
            f"(seed {args.eval_seed}), {os.cpu_count()} CPUs",
            markdown_table(localisation),
            markdown_table(grades),
            markdown_table(timing_table),
            f"lss-pipeline predict on one study folder: {predict_one_s:.2f} s",
        ]
    )
    (out / "bench_predict.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
