"""Crops per second: ``build_level_crops`` against a naive baseline, same data, one run.

The naive baseline decodes the labelled series' every instance for every crop (what a
per-sample Dataset that reads "the series" would do), then cuts the crop with exactly the
same selection and cropping code (``crops._crop_study`` on a one-label task fed the
already decoded pixels). ``build_level_crops`` decodes each needed instance once per study.
Both run in one process (workers=1) so the ratio measures the decoding strategy, not the
core count; a pooled run of ``build_level_crops`` is reported beside them. Times cover the
crop loop (decode, crop, write into the memory-mapped array), not the index/PNG writing.

    .venv/bin/python benchmarks/bench_crops.py --studies 8 --out /tmp/lss_bench_crops
    .venv/bin/python benchmarks/bench_crops.py --raw-dir data/raw        # an existing RSNA folder
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import polars as pl

from lss_pipeline.core import constants
from lss_pipeline.core.crops import _crop_study, build_level_crops, prepare_tasks
from lss_pipeline.core.dicom_metadata import read_pixels, scan_dicom_folder
from lss_pipeline.core.labels import build_labels
from lss_pipeline.core.settings import PROFILES
from lss_pipeline.core.splits import make_splits


def naive_crops(category: str, metadata: pl.DataFrame, labels: pl.DataFrame, raw_dir: Path,
                crop_mm: float, crop_px: int, slices: int) -> tuple[int, float, int]:
    """(crops made, seconds, instances decoded) decoding the whole series for each crop."""
    tasks = prepare_tasks(category, metadata, labels, raw_dir, crop_mm=crop_mm, crop_px=crop_px, slices=slices)
    n_crops = n_decoded = 0
    t0 = time.perf_counter()
    for task in tasks:
        for label in task.labels:
            series = task.series.get(int(label["series_id"])) if label["series_id"] is not None else None
            decoded: dict[str, np.ndarray] = {}
            if series is not None:
                for rel in series["path"].to_list():
                    try:
                        decoded[rel] = read_pixels(raw_dir / rel)
                    except Exception:  # same outcome as the real run: that crop is skipped
                        pass
                    n_decoded += 1
            one = dataclasses.replace(task, labels=[label], reader=_Lookup(decoded, raw_dir))
            n_crops += len(_crop_study(one).crops)
    return n_crops, time.perf_counter() - t0, n_decoded


class _Lookup:
    """Reader over pixels the naive loop already decoded."""

    def __init__(self, decoded: dict[str, np.ndarray], raw_dir: Path):
        self.decoded, self.raw_dir = decoded, raw_dir

    def __call__(self, path: Path) -> np.ndarray:
        rel = Path(path).relative_to(self.raw_dir).as_posix()
        if rel not in self.decoded:
            raise OSError(f"{rel} could not be decoded")
        return self.decoded[rel]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-dir", type=Path, help="existing RSNA folder (default: generate a synthetic one)")
    parser.add_argument("--studies", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/lss_bench_crops"))
    parser.add_argument("--profile", default="demo", choices=sorted(PROFILES))
    parser.add_argument("--pool-workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--categories", nargs="+", default=list(constants.CATEGORIES))
    args = parser.parse_args()
    profile = PROFILES[args.profile]

    raw_dir = args.raw_dir
    if raw_dir is None:
        from lss_pipeline.core.synth import generate_dataset

        raw_dir = args.out / "raw"
        if not (raw_dir / constants.TRAIN_CSV).exists():
            generate_dataset(raw_dir, n_studies=args.studies, seed=args.seed)
    metadata, _ = scan_dicom_folder(raw_dir)
    labels, _ = build_labels(raw_dir)
    splits = make_splits(labels, n_folds=5, seed=0) if labels["study_id"].n_unique() >= 5 else None

    results = []
    for category in args.categories:
        kw = dict(crop_mm=profile.crop_mm, crop_px=profile.crop_px, slices=profile.slices)
        naive_n, naive_s, naive_decoded = naive_crops(category, metadata, labels, raw_dir, **kw)
        fast = build_level_crops(category, metadata, labels, splits, raw_dir, args.out / "crops" / category,
                                 workers=1, **kw)
        pooled = build_level_crops(category, metadata, labels, splits, raw_dir,
                                   args.out / "crops_pool" / category, workers=args.pool_workers, **kw)
        assert fast.n_crops == naive_n == pooled.n_crops, (fast.n_crops, naive_n, pooled.n_crops)
        row = {
            "category": category,
            "crops": fast.n_crops,
            "naive_crops_per_s": naive_n / naive_s,
            "naive_instances_decoded": naive_decoded,
            "fast_crops_per_s": fast.n_crops / fast.timings["crops_s"],
            "fast_instances_decoded": int(fast.timings["instances_decoded"]),
            "speedup": (fast.n_crops / fast.timings["crops_s"]) / (naive_n / naive_s),
            "pool_workers": pooled.workers,
            "pool_crops_per_s": pooled.n_crops / pooled.timings["crops_s"],
        }
        results.append(row)
        print(json.dumps(row))

    print()
    print(f"{len(metadata)} instances, {labels['study_id'].n_unique()} studies, profile {profile.name} "
          f"({profile.slices}x{profile.crop_px}x{profile.crop_px}, {profile.crop_mm:g} mm), "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    print("| category | crops | naive crops/s (instances decoded) | build_level_crops, 1 process, crops/s "
          "(instances decoded) | speed-up | build_level_crops, pool crops/s |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['category']} | {r['crops']} | {r['naive_crops_per_s']:.1f} ({r['naive_instances_decoded']}) "
              f"| {r['fast_crops_per_s']:.1f} ({r['fast_instances_decoded']}) | {r['speedup']:.1f}x "
              f"| {r['pool_crops_per_s']:.1f} ({r['pool_workers']} workers) |")


if __name__ == "__main__":
    main()
