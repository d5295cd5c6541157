"""Training throughput: ``train_fold``'s loop against a bare timm loop, same model and tensors.

    python benchmarks/bench_training.py [--arch convnext_atto] [--crops 480] [--epochs 3] [--px 32]

Both loops train the same timm model (same seed, same init) for the same number of epochs
over the same crops held in memory, at the same batch size. The bare loop is the floor:
slice a tensor, forward, loss, backward, AdamW step. ``train_fold`` adds its data path
(batched dataset read, augmentation), the LR schedule, validation and checkpoints; only its
training phase is timed (``FoldResult.train_images_per_s``). The two runs alternate
``--repeats`` times so that a busy machine slows both alike; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F

from lss_pipeline.core.settings import PROFILES
from lss_pipeline.core.train.config import TrainConfig
from lss_pipeline.core.train.device import resolve_device
from lss_pipeline.core.train.fold import plan_fold
from lss_pipeline.core.train.loop import train_fold
from lss_pipeline.core.train.models import create_model


def make_crops(folder: Path, n: int, slices: int, px: int, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    crops = rng.random((n, slices, px, px), dtype=np.float32).astype(np.float16)
    labels = rng.choice(3, size=n, p=[0.7, 0.2, 0.1])
    np.save(folder / "crops.npy", crops)
    study = np.arange(n) // 5
    pl.DataFrame(
        {
            "crop_index": np.arange(n),
            "study_id": pl.Series(study, dtype=pl.Int64),
            "row_id": [f"{s}_spinal_canal_stenosis_l1_l2_{i}" for i, s in enumerate(study)],
            "condition": ["Spinal Canal Stenosis"] * n,
            "side": pl.Series([None] * n, dtype=pl.Utf8),
            "level": ["L1/L2"] * n,
            "label": pl.Series(labels, dtype=pl.Int8),
            # A small validation fold: the benchmark is about the training phase.
            "split": ["cv"] * n,
            "fold": pl.Series(np.where(study % 10 == 0, 0, 1), dtype=pl.Int8),
        }
    ).write_parquet(folder / "index.parquet")
    return folder / "crops.npy", folder / "index.parquet"


def bare_loop(config: TrainConfig, crops_path: Path, index_path: Path) -> float:
    """Images/s of a plain loop over the same training crops, already tensors in memory."""
    device, amp_dtype, channels_last = resolve_device(config.device, config.precision, config.channels_last)
    index = pl.read_parquet(index_path).filter(
        (pl.col("fold") != config.val_fold) & (pl.col("split") == "cv")
    )
    crops = np.load(crops_path)[index["crop_index"].to_numpy()]
    x_all = torch.from_numpy(crops.astype(np.float32)).to(device)
    y_all = torch.from_numpy(index["label"].to_numpy().astype(np.int64)).to(device)
    torch.manual_seed(config.seed)
    model = create_model(config.timm_name, config.in_chans, 3, img_size=config.crop_px).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    model.train()
    seen, seconds = 0, 0.0
    for _ in range(config.epochs):
        order = torch.randperm(len(y_all), device=device)
        started = time.perf_counter()
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            x, y = x_all[idx], y_all[idx]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = F.cross_entropy(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(idx)
        loss.item()  # sync the device before the clock stops
        seconds += time.perf_counter() - started
    return seen / seconds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="convnext_atto")
    parser.add_argument("--crops", type=int, default=480)
    parser.add_argument("--slices", type=int, default=PROFILES["demo"].slices)
    parser.add_argument("--px", type=int, default=PROFILES["demo"].crop_px)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--no-augment", action="store_true", help="time the loop without augmentation too")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    results: dict[str, list[float]] = {"bare": [], "train_fold": [], "train_fold_no_aug": []}
    with tempfile.TemporaryDirectory() as tmp:
        crops_path, index_path = make_crops(Path(tmp), args.crops, args.slices, args.px)
        config = TrainConfig(
            timm_name=args.arch,
            in_chans=args.slices,
            crop_px=args.px,
            epochs=args.epochs,
            batch_size=args.batch_size,
            device=args.device,
            precision=args.precision,
            patience=0,
            val_fold=0,
        )
        variants = [("train_fold", config)]
        if args.no_augment:
            variants.append(("train_fold_no_aug", TrainConfig(**{**config.to_dict(), "augment": False})))
        for repeat in range(args.repeats):
            results["bare"].append(bare_loop(config, crops_path, index_path))
            for name, cfg in variants:
                out = Path(tmp) / f"{name}_{repeat}"
                plan = plan_fold(cfg, crops_path, index_path, None, out)
                results[name].append(train_fold(plan).train_images_per_s)
            print(
                f"repeat {repeat}: " + ", ".join(f"{k} {v[-1]:.1f} img/s" for k, v in results.items() if v),
                file=sys.stderr,
                flush=True,
            )
    summary = {
        "arch": args.arch,
        "crops": args.crops,
        "shape": [args.slices, args.px, args.px],
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        **{f"{k}_img_per_s": round(statistics.median(v), 1) for k, v in results.items() if v},
    }
    summary["ratio"] = round(summary["train_fold_img_per_s"] / summary["bare_img_per_s"], 3)
    if args.no_augment:
        summary["ratio_no_aug"] = round(summary["train_fold_no_aug_img_per_s"] / summary["bare_img_per_s"], 3)
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
