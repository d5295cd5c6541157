"""Synthetic set generation: the varied 8-site set (`--sites 8`) against the plain set, same run.

Both sets have the same studies, seed and image size; each is written ``--rounds`` times,
alternating, in one process each (``--workers``), and the best wall time is kept. Reports
seconds, files, bytes on disk and the ratio varied / plain (total and per DICOM file).

    .venv/bin/python benchmarks/bench_synth.py --studies 60 --workers 1
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from lss_pipeline.core.synth import generate_dataset


def _run(out: Path, args: argparse.Namespace, sites: int) -> tuple[float, int, int]:
    if out.exists():
        shutil.rmtree(out)
    started = time.perf_counter()
    summary = generate_dataset(
        out,
        n_studies=args.studies,
        seed=args.seed,
        n_test_studies=args.test_studies,
        workers=args.workers,
        sites=sites,
        rows=args.rows,
    )
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in out.rglob("*.dcm"))
    return seconds, summary.n_instances, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=60)
    parser.add_argument("--test-studies", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    best: dict[int, tuple[float, int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="lss_bench_synth_") as tmp:
        for _ in range(args.rounds):
            for sites in (0, 8):
                result = _run(Path(tmp) / f"sites{sites}", args, sites)
                if sites not in best or result[0] < best[sites][0]:
                    best[sites] = result
    print(
        f"{args.studies} + {args.test_studies} studies, rows {args.rows}, workers {args.workers}, "
        f"best of {args.rounds}"
    )
    print("| set | wall s | DICOM files | MiB | ms per file |")
    print("|---|---:|---:|---:|---:|")
    for sites, name in ((0, "plain"), (8, "8 sites (`--sites 8`)")):
        seconds, files, size = best[sites]
        print(f"| {name} | {seconds:.1f} | {files:,} | {size / 2**20:.0f} | {1000 * seconds / files:.1f} |")
    (plain_s, plain_n, _), (varied_s, varied_n, _) = best[0], best[8]
    print(
        f"ratio varied / plain: {varied_s / plain_s:.2f}x in total, "
        f"{(varied_s / varied_n) / (plain_s / plain_n):.2f}x per file"
    )


if __name__ == "__main__":
    main()
