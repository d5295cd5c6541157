"""Ablation of the demo recipe: each change alone, its effect on test-split macro recall per category.

    python benchmarks/ablation.py --work /tmp/lss_ablation                  # every recipe, 3 categories
    python benchmarks/ablation.py --work /tmp/lss_ablation --recipes baseline focal --categories sbs
    python benchmarks/ablation.py --work /tmp/lss_ablation --archs convnext resnet swin --recipes baseline
    python benchmarks/ablation.py --work /tmp/lss_ablation_sites --sites 8 --categories sbs   # the varied set

The demo's synthetic set (``demo.DEMO_STUDIES`` studies, ``demo.DEMO_CLASS_SHARES``, seed
``demo.DEMO_SEED``) is written once under ``--work`` and taken through the same core steps as the
assets (header scan, labels, data_splits with the profile's K, level_crops, class_weights); a
second set from ``--fresh-seed`` (unseen studies, same generator) is cropped alike, and every
labelled crop of it is scored too. Recipes that change the crops (size, slices, folds, the level
channel) get their own crop folder beside the baseline's.

A recipe is the demo profile's training (``TrainConfig.from_profile("demo", ...)``) with one change.
Each recipe x category trains every cv fold (``plan_fold`` / ``train_fold``, as ``trained_model``
does), averages the fold models' softmax on the test split, and is logged as one MLflow run in the
experiment ``lss-ablation`` (params: recipe, change, category, arch; metrics: test macro and
per-class recall with 95 % study-bootstrap intervals, the paired difference to the baseline with
its interval, OOF and fresh-set macro recall, seconds). The bootstrap is the report's own
(``core/evaluate/bootstrap.py``). The Markdown table printed at the end (every row of ``--work``'s
``ablation.jsonl``, so separate calls add up) is what benchmarks/README.md holds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader

from lss_pipeline.core.constants import CATEGORIES
from lss_pipeline.core.evaluate.bootstrap import paired_macro_recall_difference, recall_intervals
from lss_pipeline.core.settings import PROFILES, Settings
from lss_pipeline.core.train import tracking
from lss_pipeline.core.train.config import TrainConfig
from lss_pipeline.core.train.data import (
    PREDICTION_ID_COLUMNS,
    batch_as_is,
    class_weights_for,
    cv_folds,
    make_dataset,
    read_index,
)
from lss_pipeline.core.train.ensemble import load_fold_model
from lss_pipeline.core.train.fold import plan_fold
from lss_pipeline.core.train.loop import train_fold
from lss_pipeline.core.train.models import count_parameters
from lss_pipeline.core.train.predict import predict_logits, softmax, with_probabilities
from lss_pipeline.demo import DEMO_CLASS_SHARES, DEMO_SEED, DEMO_STUDIES

EXPERIMENT = "lss-ablation"
N_BOOT = 2000
log = logging.getLogger("ablation")


@dataclass(frozen=True)
class CropVariant:
    """How the crops of a recipe are made; the baseline is the demo profile's."""

    crop_px: int
    slices: int
    n_folds: int
    level_channel: bool = False  # the level (0..4, scaled to [0, 1]) as one more constant channel

    def folder(self) -> str:
        return f"px{self.crop_px}_s{self.slices}_k{self.n_folds}" + ("_level" if self.level_channel else "")


@dataclass(frozen=True)
class Recipe:
    name: str
    change: str  # what differs from the baseline, in words
    overrides: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields
    crops: dict[str, Any] = field(default_factory=dict)  # CropVariant fields
    categories: tuple[str, ...] = CATEGORIES  # where the change means something
    single_fold: bool = False  # test predictions from fold 0's model alone, not the fold ensemble
    # test-time mirror: the baseline's saved fold models, each crop averaged with its patient
    # left/right mirror (no training); only SCS, whose midline crops have no side
    tta_mirror: bool = False


def recipes(profile: str = "demo") -> list[Recipe]:
    prof = PROFILES[profile]
    return [
        Recipe("baseline", "the demo recipe"),
        Recipe("no_flip_merge", "right crops not mirrored", {"flip_merge": False}, categories=("nfs", "sbs")),
        Recipe("focal", "weighted focal loss (γ 2) instead of weighted CE", {"loss": "focal"}),
        Recipe(
            "inverse_frequency", "inverse-frequency class weights", {"weight_scheme": "inverse_frequency"}
        ),
        Recipe("no_class_weights", "no class weights", {"weight_scheme": "none"}),
        Recipe("no_augment", "no augmentation", {"augment": False}),
        Recipe("no_clip", "no gradient clipping", {"clip_grad_norm": 0.0}),
        Recipe("epochs_half", f"{prof.epochs // 2} epochs", {"epochs": prof.epochs // 2}),
        Recipe("epochs_1.5x", f"{prof.epochs * 3 // 2} epochs", {"epochs": prof.epochs * 3 // 2}),
        Recipe("epochs_2x", f"{prof.epochs * 2} epochs", {"epochs": prof.epochs * 2}),
        Recipe(
            "single_fold", "test predictions from one fold model, not the fold ensemble", single_fold=True
        ),
        Recipe(
            "tta_mirror",
            "test-time mirror (mean with the left/right-mirrored crop)",
            categories=("scs",),
            tta_mirror=True,
        ),
        Recipe("level_channel", "level as one more input channel", crops={"level_channel": True}),
        *(
            Recipe(f"px{px}", f"{px} px crops", crops={"crop_px": px})
            for px in (32, 48, 64)
            if px != prof.crop_px
        ),
        Recipe("slices3", "3 slices", crops={"slices": 3}),
        Recipe("slices7", "7 slices", crops={"slices": 7}),
        Recipe("k5", "5 cv folds", crops={"n_folds": 5}),
    ]


# ----------------------------------------------------------------------------- data


def settings_for(root: Path, raw: Path) -> Settings:
    return Settings(data_dir=root, raw_dir=raw)


def make_raw(
    raw: Path, n_studies: int, seed: int, shares: dict | None, sites: int = 0, correlated: bool | None = None
) -> None:
    from lss_pipeline.core.synth import generate_dataset

    if (raw / "train.csv").is_file():
        return
    log.info(f"synthetic set: {n_studies} studies, seed {seed}, sites {sites} -> {raw}")
    generate_dataset(
        raw, n_studies=n_studies, seed=seed, class_shares=shares, sites=sites, correlated_grades=correlated
    )


def make_crops(root: Path, raw: Path, variant: CropVariant, crop_mm: float) -> Settings:
    """The assets' core steps into ``root`` (skipped when done): scan, labels, splits, crops, weights."""
    from lss_pipeline.core.crops import store
    from lss_pipeline.core.dicom.store import ingest_dicom_folder
    from lss_pipeline.core.labels import splits
    from lss_pipeline.core.labels.store import ingest_labels

    settings = settings_for(root, raw)
    paths = settings.paths
    if all(paths.class_weights(c).is_file() for c in CATEGORIES):
        return settings
    ingest_dicom_folder(paths)
    labels, _, _ = ingest_labels(paths)
    splits.write_splits(splits.make_splits(labels, n_folds=variant.n_folds), paths)
    plain = CropVariant(variant.crop_px, variant.slices, variant.n_folds)
    for category in CATEGORIES:
        store.crop_category(paths, category, crop_mm=crop_mm, crop_px=plain.crop_px, slices=plain.slices)
        if variant.level_channel:
            add_level_channel(paths.crops_array(category), paths.crops_index(category))
        store.class_weights_for_category(paths, category)
    return settings


def add_level_channel(crops_path: Path, index_path: Path) -> None:
    """Append a constant plane = level_index / 4 to every crop (what the level-input recipe sees)."""
    crops = np.load(crops_path)
    index = pl.read_parquet(index_path).sort("crop_index")
    level = (index["level_index"].to_numpy().astype(np.float32) / 4).astype(crops.dtype)
    plane = np.broadcast_to(level[:, None, None, None], (len(level), 1, *crops.shape[2:]))
    np.save(crops_path, np.concatenate([crops, plane], axis=1))


# ----------------------------------------------------------------------------- training


@dataclass
class Outcome:
    recipe: Recipe
    category: str
    arch: str
    test: pl.DataFrame  # test rows with the fold ensemble's probabilities
    oof: pl.DataFrame
    fresh: pl.DataFrame | None
    seconds: float
    cpu_seconds: float
    params: int
    gmacs: float


# Patient left/right in a (slices, H, W) crop: the slice axis of sagittal series, the width of axial.
MIRROR_AXIS: dict[str, int] = {"scs": 0, "nfs": 0, "sbs": 2}


class Mirrored(torch.nn.Module):
    """A model whose softmax is averaged with its softmax on the left/right-mirrored crop (as log)."""

    def __init__(self, model: torch.nn.Module, axis: int):
        super().__init__()
        self.model, self.axis = model, axis

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        both = [self.model(crops), self.model(torch.flip(crops, dims=[self.axis + 1]))]
        return torch.log(torch.stack([torch.softmax(x.float(), 1) for x in both]).mean(0))


def predict_rows(
    models: list[torch.nn.Module], settings: Settings, config: TrainConfig, rows: pl.DataFrame
) -> pl.DataFrame:
    """``rows`` of the index scored by the mean of the models' softmax (flip merge as trained)."""
    category = config.category
    dataset = make_dataset(
        settings.paths.crops_array(category), rows, train=False, augment=False, seed=0,
        flip_merge=config.flip_merge, category=category, in_memory=True,
    )  # fmt: skip
    loader = DataLoader(dataset, batch_size=128, collate_fn=batch_as_is)
    cpu = torch.device("cpu")
    probs = np.mean([softmax(predict_logits(m, loader, cpu, None, False)[0]) for m in models], axis=0)
    return with_probabilities(rows, PREDICTION_ID_COLUMNS, probs)


def labelled_rows(settings: Settings, category: str) -> pl.DataFrame:
    paths = settings.paths
    n = np.load(paths.crops_array(category), mmap_mode="r").shape[0]
    return read_index(paths.crops_index(category), n).filter(pl.col("label").is_not_null())


def saved_outcome(
    recipe: Recipe,
    source: str,
    arch: str,
    category: str,
    settings: Settings,
    fresh: Settings | None,
    out: Path,
) -> Outcome:
    """An outcome from the fold models another recipe (``source``) saved under ``out``: no training."""
    config = TrainConfig.from_profile("demo", arch, category, device="cpu")
    index = labelled_rows(settings, category)
    fold_dirs = sorted((out / source / arch / category).glob("fold*"))
    if not fold_dirs:
        raise FileNotFoundError(f"no saved {source} models under {out / source / arch / category}")
    models = [load_fold_model(d) for d in fold_dirs]
    if recipe.tta_mirror:
        models = [Mirrored(m, MIRROR_AXIS[category]).eval() for m in models]
    started, cpu_started = time.perf_counter(), time.process_time()
    test = predict_rows(models, settings, config, index.filter(pl.col("split") == "test"))
    oof = pl.concat([pl.read_parquet(d / "oof.parquet") for d in fold_dirs])
    return Outcome(
        recipe=recipe,
        category=category,
        arch=arch,
        test=test,
        oof=oof,
        fresh=predict_rows(models, fresh, config, labelled_rows(fresh, category)) if fresh else None,
        seconds=time.perf_counter() - started,
        cpu_seconds=time.process_time() - cpu_started,
        params=count_parameters(models[0]),
        gmacs=float("nan"),
    )


def train_recipe(
    recipe: Recipe, arch: str, category: str, settings: Settings, fresh: Settings | None, out: Path
) -> Outcome:
    config = TrainConfig.from_profile("demo", arch, category, device="cpu", **recipe.overrides)
    paths = settings.paths
    crops = np.load(paths.crops_array(category), mmap_mode="r")
    config = dataclasses.replace(config, in_chans=crops.shape[1], crop_px=crops.shape[2])
    index = read_index(paths.crops_index(category), crops.shape[0])
    started, cpu_started = time.perf_counter(), time.process_time()
    folds = []
    for k in cv_folds(index):
        fold_config = config.for_fold(k)
        weights = class_weights_for(paths.class_weights(category), k, fold_config.weight_scheme)
        fold_dir = out / recipe.name / arch / category / f"fold{k}"
        shutil.rmtree(fold_dir, ignore_errors=True)
        plan = plan_fold(
            fold_config, paths.crops_array(category), paths.crops_index(category), weights, fold_dir
        )
        folds.append(train_fold(plan, log=log))
    used = folds[:1] if recipe.single_fold else folds
    test_rows = index.filter(pl.col("split") == "test")
    test = with_probabilities(test_rows, PREDICTION_ID_COLUMNS, np.mean([f.test_probs for f in used], axis=0))
    fresh_table = None
    if fresh is not None:
        fresh_table = predict_rows([f.model for f in used], fresh, config, labelled_rows(fresh, category))
    return Outcome(
        recipe=recipe,
        category=category,
        arch=arch,
        test=test,
        oof=pl.concat([f.oof for f in folds]),
        fresh=fresh_table,
        seconds=time.perf_counter() - started,
        cpu_seconds=time.process_time() - cpu_started,
        params=folds[0].params,
        gmacs=folds[0].macs / 1e9,
    )


# ----------------------------------------------------------------------------- scoring


def score(outcome: Outcome, baseline: Outcome | None) -> dict[str, Any]:
    seed = 0
    test = recall_intervals(outcome.test, N_BOOT, seed)
    oof = recall_intervals(outcome.oof, 200, seed)
    row: dict[str, Any] = {
        "recipe": outcome.recipe.name,
        "change": outcome.recipe.change,
        "category": outcome.category,
        "arch": outcome.arch,
        "test_macro_recall": test.macro.point,
        "test_macro_recall_lo": test.macro.lo,
        "test_macro_recall_hi": test.macro.hi,
        "test_recall_normal_mild": test.per_class[0].point,
        "test_recall_moderate": test.per_class[1].point,
        "test_recall_severe": test.per_class[2].point,
        "test_n_studies": test.n_studies,
        "test_class_counts": list(test.class_counts),
        "oof_macro_recall": oof.macro.point,
        "seconds": outcome.seconds,
        "cpu_seconds": outcome.cpu_seconds,
        "params": outcome.params,
        "gmacs": outcome.gmacs,
    }
    if outcome.fresh is not None:
        fresh = recall_intervals(outcome.fresh, N_BOOT, seed)
        row.update(
            fresh_macro_recall=fresh.macro.point,
            fresh_macro_recall_lo=fresh.macro.lo,
            fresh_macro_recall_hi=fresh.macro.hi,
            fresh_recall_moderate=fresh.per_class[1].point,
            fresh_n_studies=fresh.n_studies,
        )
    if baseline is not None and baseline is not outcome:
        paired = paired_macro_recall_difference(outcome.test, baseline.test, N_BOOT, seed)
        row.update(
            diff_vs_baseline=paired.difference.point,
            diff_vs_baseline_lo=paired.difference.lo,
            diff_vs_baseline_hi=paired.difference.hi,
        )
    return row


def log_run(row: dict[str, Any], recipe: Recipe) -> str:
    experiment = tracking.ensure_experiment(EXPERIMENT)
    name = f"{row['recipe']}-{row['arch']}-{row['category']}"
    with tracking.start_run(EXPERIMENT, name, {"recipe": row["recipe"], "category": row["category"]}) as run:
        run.log_params(
            {
                "recipe": recipe.name,
                "change": recipe.change,
                "arch": row["arch"],
                "category": row["category"],
                "overrides": json.dumps(recipe.overrides),
                "crops": json.dumps(recipe.crops),
                "single_fold": recipe.single_fold,
            }
        )
        run.log_metrics({k: float(v) for k, v in row.items() if isinstance(v, (int, float))})
    return f"{experiment}/{run.run_id}"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    """One line per recipe x arch, one column per category: test macro recall [95 % CI], Δ baseline."""
    by_key: dict[tuple[str, str], dict[str, dict]] = {}
    for r in rows:
        by_key.setdefault((r["recipe"], r["arch"]), {})[r["category"]] = r
    cats = [c for c in CATEGORIES if any(r["category"] == c for r in rows)]
    head = ["recipe", "change", "arch"] + [
        f"{c.upper()} test [95 % CI]; Δ vs baseline [95 % CI]" for c in cats
    ]
    head += ["fresh set " + "/".join(c.upper() for c in cats), "CPU s (all cats)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (recipe, arch), per_cat in by_key.items():
        any_row = next(iter(per_cat.values()))
        cells = [recipe, any_row["change"], arch]
        for c in cats:
            if c not in per_cat:
                cells.append("n/a")
                continue
            r = per_cat[c]
            lo, hi = pct(r["test_macro_recall_lo"]), pct(r["test_macro_recall_hi"])
            cell = f"{pct(r['test_macro_recall'])} [{lo}–{hi}]"
            if "diff_vs_baseline" in r:
                cell += (
                    f"; {100 * r['diff_vs_baseline']:+.1f} "
                    f"[{100 * r['diff_vs_baseline_lo']:+.1f}, {100 * r['diff_vs_baseline_hi']:+.1f}]"
                )
            cells.append(cell)
        cells.append(
            "/".join(pct(per_cat[c].get("fresh_macro_recall")) if c in per_cat else "–" for c in cats)
        )
        cells.append(f"{sum(r['cpu_seconds'] for r in per_cat.values()):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def all_rows(work: Path) -> list[dict[str, Any]]:
    """Every row of ``work``'s ablation.jsonl (all calls), the last one per recipe x arch x category."""
    path = work / "ablation.jsonl"
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        row = json.loads(line)
        latest[(row["recipe"], row["arch"], row["category"])] = row
    return list(latest.values())


# ----------------------------------------------------------------------------- main


def run(args: argparse.Namespace, say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    prof = PROFILES["demo"]
    work: Path = args.work
    shares = None if args.real_shares else DEMO_CLASS_SHARES
    raw, fresh_raw = work / "raw", work / f"raw_fresh{args.fresh_seed}"
    correlated = False if args.independent_grades else None
    make_raw(raw, args.studies, args.seed, shares, args.sites, correlated)
    if args.fresh_seed is not None:
        make_raw(fresh_raw, args.fresh_studies, args.fresh_seed, shares, args.sites, correlated)
    tracking.configure_mlflow(
        args.mlflow_uri or f"sqlite:///{(work / 'mlflow.db').resolve()}", work / "mlartifacts"
    )

    chosen = [r for r in recipes() if not args.recipes or r.name in args.recipes]
    base_variant = CropVariant(prof.crop_px, prof.slices, prof.n_folds)
    rows: list[dict[str, Any]] = []
    baselines: dict[tuple[str, str], Outcome] = {}
    for recipe in sorted(chosen, key=lambda r: r.name != "baseline"):
        variant = dataclasses.replace(base_variant, **recipe.crops)
        settings = make_crops(work / "crops" / variant.folder(), raw, variant, prof.crop_mm)
        fresh = None
        if args.fresh_seed is not None:
            fresh = make_crops(
                work / f"fresh{args.fresh_seed}" / variant.folder(), fresh_raw, variant, prof.crop_mm
            )
        for arch in args.archs:
            for category in recipe.categories:
                if args.categories and category not in args.categories:
                    continue
                say(f"{recipe.name} / {arch} / {category} …")
                models = work / "models"
                if recipe.tta_mirror:
                    outcome = saved_outcome(recipe, "baseline", arch, category, settings, fresh, models)
                else:
                    outcome = train_recipe(recipe, arch, category, settings, fresh, models)
                if recipe.name == "baseline":
                    baselines[(arch, category)] = outcome
                elif (arch, category) not in baselines and (models / "baseline" / arch / category).is_dir():
                    # The baseline of an earlier call: rescored from its saved fold models for the paired
                    # difference (same models, same test rows).
                    base_settings = make_crops(
                        work / "crops" / base_variant.folder(), raw, base_variant, prof.crop_mm
                    )
                    baselines[(arch, category)] = saved_outcome(
                        recipes()[0], "baseline", arch, category, base_settings, None, models
                    )
                row = score(outcome, baselines.get((arch, category)))
                row["mlflow_run"] = log_run(row, recipe)
                rows.append(row)
                say(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}))
                with (work / "ablation.jsonl").open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, required=True, help="folder for the sets, crops, models, MLflow")
    parser.add_argument("--recipes", nargs="*", help=f"default: all of {[r.name for r in recipes()]}")
    parser.add_argument("--categories", nargs="*", choices=CATEGORIES)
    parser.add_argument("--archs", nargs="*", default=["convnext"], choices=["convnext", "resnet", "swin"])
    parser.add_argument("--studies", type=int, default=DEMO_STUDIES)
    parser.add_argument("--seed", type=int, default=DEMO_SEED)
    parser.add_argument(
        "--fresh-seed", type=int, default=4711, help="seed of the unseen set, one no test uses (-1: none)"
    )
    parser.add_argument("--fresh-studies", type=int, default=DEMO_STUDIES)
    parser.add_argument(
        "--sites", type=int, default=0, help="1-8: both sets multi-site (varied); 0: the plain protocol"
    )
    parser.add_argument(
        "--independent-grades",
        action="store_true",
        help="with --sites: grades drawn cell by cell as in the plain set, not correlated like the real file",
    )
    parser.add_argument("--real-shares", action="store_true", help="the real class shares, not the demo's")
    parser.add_argument("--mlflow-uri", default=None, help="default: sqlite in --work")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.fresh_seed is not None and args.fresh_seed < 0:
        args.fresh_seed = None
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    rows = run(args)
    table = markdown(all_rows(args.work))
    (args.work / "ablation.md").write_text(table + "\n")
    print(table)
    return rows


if __name__ == "__main__":
    main()
