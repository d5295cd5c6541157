"""Write a synthetic RSNA 2024 LSDC folder: the exact Kaggle layout, real DICOMs, labels.

Each study is one :class:`~lss_pipeline.core.synth.phantom.Phantom` sampled by three
series; labels are drawn with the real class shares, a few are blanked or flipped, and
every coordinate is the projection of the graded structure's 3D landmark into the
instance that shows it. ``faults=True`` plants the real dataset's faults and lists them
in ``synth_manifest.json``. The test studies (``test_images/``, no labels) keep their truth
in ``synth_solution.csv``: each cell's true grade and the exact point that shows it, for
scoring predictions; the pipeline never reads it. ``synth_train_truth.csv`` holds the true grade
of every train study cell (train.csv holds the written one, ``label_noise`` of them an adjacent
class), so a benchmark can score a model against the anatomy and know the ceiling that the
written labels put on a perfect reader. The folder is built beside the target and
renamed into place, so a crash never leaves a half-written dataset.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lss_pipeline.core import atomic
from lss_pipeline.core.constants import (
    CONDITIONS,
    COORDINATES_CSV,
    COORDINATES_CSV_HEADER,
    LEVEL_SLUGS,
    LEVELS,
    SERIES_CSV,
    SERIES_CSV_HEADER,
    SEVERITIES,
    SUBMISSION_CSV,
    SUBMISSION_CSV_HEADER,
    TEST_SERIES_CSV,
    TRAIN_CSV,
    TRAIN_CSV_HEADER,
)
from lss_pipeline.core.paths import SYNTH_MANIFEST, SYNTH_SOLUTION, SYNTH_TRAIN_TRUTH
from lss_pipeline.core.synth.grades import CELLS, sample_labels
from lss_pipeline.core.synth.options import SynthOptions
from lss_pipeline.core.synth.sites import site_of
from lss_pipeline.core.synth.study import SOLUTION_CSV_HEADER, StudyResult, StudyTask, render_study

MANIFEST = SYNTH_MANIFEST
TRAIN_TRUTH_CSV_HEADER = ("row_id", "study_id", "condition", "level", "severity")
# (condition, train.csv stem, level, level slug) of each of a study's 25 cells, in CELLS order.
_CELL_IDS: tuple[tuple[str, str, str, str], ...] = tuple(
    (condition, stem, level, slug)
    for (condition, _, _, stem) in CONDITIONS
    for level, slug in zip(LEVELS, LEVEL_SLUGS)
)
FAULT_KINDS: tuple[str, ...] = (
    "missing_series",
    "non_dicom_file",
    "truncated_dicom",
    "coordinate_off_image",
    "non_contiguous_instances",
    "axial_two_stacks",
    "lr_foraminal_same_instance",
    "missing_spacing_tags",
)


@dataclass
class SynthSummary:
    out_dir: str
    seed: int
    n_train_studies: int
    n_test_studies: int
    n_series: int
    n_instances: int
    n_coordinates: int
    n_blank_labels: int
    class_counts: dict[str, list[int]]  # category -> written counts per severity
    faults: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    options: dict = field(default_factory=dict)


# ------------------------------------------------------------------------ tables
def _csv_bytes(header, rows) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # CRLF line ends, like the Kaggle files
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _unique_ids(rng: np.random.Generator, n: int, taken: set[int]) -> list[int]:
    out: list[int] = []
    while len(out) < n:
        v = int(rng.integers(1_000_000, 4_294_967_295))  # 7 to 10 digits, like the real ids
        if v not in taken:
            taken.add(v)
            out.append(v)
    return out


def _plan_faults(rng: np.random.Generator, study_ids: list[int], rate: float) -> dict[int, list[str]]:
    plan: dict[int, list[str]] = {s: [] for s in study_ids}
    if not study_ids:
        return plan
    per_kind = max(1, int(round(rate * len(study_ids))))
    order = [study_ids[i] for i in rng.permutation(len(study_ids))]
    k = 0
    for kind in FAULT_KINDS:
        for _ in range(per_kind):
            plan[order[k % len(order)]].append(kind)
            k += 1
    return plan


def generate_dataset(
    out_dir: str | os.PathLike,
    n_studies: int = 60,
    seed: int = 0,
    faults: bool = False,
    n_test_studies: int = 2,
    overwrite: bool = False,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    class_shares: dict[str, tuple[float, float, float]] | None = None,
    sites: int = 0,
    correlated_grades: bool | None = None,
    **geometry_options,
) -> SynthSummary:
    """Write a synthetic RSNA folder to ``out_dir``; ``geometry_options`` are :class:`SynthOptions` fields.

    ``out_dir`` must not exist or be empty unless ``overwrite``. ``progress(done, total)``
    is called after each study. ``sites`` (1–8): studies are spread round robin over that many
    site profiles (``sites.py``), each series drawn with its site's variety (orientation, flips,
    instance order, matrix, spacing, axial stacks, transfer syntax); 0 = the plain protocol.
    ``correlated_grades`` (default: on when ``sites``): grades correlated like the real train.csv
    (``grades.py``).
    """
    started = time.perf_counter()
    if n_studies < 1 or n_test_studies < 0:
        raise ValueError(f"n_studies must be >= 1 and n_test_studies >= 0, got {n_studies}, {n_test_studies}")
    if sites:
        site_of(0, sites)  # fails early on an unknown number of sites
    correlated = bool(sites) if correlated_grades is None else correlated_grades
    options = SynthOptions.from_kwargs(**geometry_options)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; pass overwrite=True (CLI: --overwrite) to replace it")

    rng = np.random.default_rng(seed)
    taken: set[int] = set()
    train_ids = sorted(_unique_ids(rng, n_studies, taken))
    test_ids = sorted(_unique_ids(rng, n_test_studies, taken))
    true, written = sample_labels(
        rng, n_studies, class_shares, options.blank_rate, options.label_noise, correlated
    )
    test_true, _ = sample_labels(rng, max(n_test_studies, 1), class_shares, 0.0, 0.0, correlated)
    fault_plan = _plan_faults(rng, train_ids, options.fault_rate) if faults else {s: [] for s in train_ids}

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.synth-", dir=out.parent))
    try:
        tasks: list[StudyTask] = []
        series_rows: dict[str, list[tuple]] = {"train": [], "test": []}
        for split, ids in (("train", train_ids), ("test", test_ids)):
            for i, sid in enumerate(ids):
                series_ids = dict(
                    zip(("Sagittal T1", "Sagittal T2/STIR", "Axial T2"), _unique_ids(rng, 3, taken))
                )
                for desc, ser in sorted(series_ids.items(), key=lambda kv: kv[1]):
                    series_rows[split].append((sid, ser, desc))
                t = true[i] if split == "train" else test_true[i]
                w = written[i] if split == "train" else np.full(len(CELLS), -1)
                site = site_of(len(tasks), sites) if sites else None
                tasks.append(
                    StudyTask(
                        sid,
                        split,
                        series_ids,
                        seed,
                        (seed, sid, 7919),
                        [int(v) for v in t],
                        [int(v) for v in w],
                        fault_plan.get(sid, []) if split == "train" else [],
                        options,
                        str(staging),
                        site,
                    )
                )
        results = _run_tasks(tasks, workers, progress)

        coordinates = [row for r in results if r.split == "train" for row in r.coordinates]
        planted = [f for r in results for f in r.faults]
        train_rows = [
            (sid, *(SEVERITIES[v] if v >= 0 else "" for v in written[i])) for i, sid in enumerate(train_ids)
        ]
        atomic.write_bytes(_csv_bytes(TRAIN_CSV_HEADER, train_rows), staging / TRAIN_CSV)
        truth_rows = [
            (f"{sid}_{stem}_{slug}", sid, condition, level, SEVERITIES[true[i, j]])
            for i, sid in enumerate(train_ids)
            for j, (condition, stem, level, slug) in enumerate(_CELL_IDS)
        ]
        atomic.write_bytes(_csv_bytes(TRAIN_TRUTH_CSV_HEADER, truth_rows), staging / SYNTH_TRAIN_TRUTH)
        atomic.write_bytes(
            _csv_bytes(COORDINATES_CSV_HEADER, [(*r[:5], repr(r[5]), repr(r[6])) for r in coordinates]),
            staging / COORDINATES_CSV,
        )
        atomic.write_bytes(_csv_bytes(SERIES_CSV_HEADER, series_rows["train"]), staging / SERIES_CSV)
        atomic.write_bytes(_csv_bytes(SERIES_CSV_HEADER, series_rows["test"]), staging / TEST_SERIES_CSV)
        third = repr(1 / 3)
        submission = sorted(
            f"{sid}_{stem}_{slug}"
            for sid in test_ids
            for (_, _, _, stem) in CONDITIONS
            for slug in LEVEL_SLUGS
        )
        atomic.write_bytes(
            _csv_bytes(SUBMISSION_CSV_HEADER, [(r, third, third, third) for r in submission]),
            staging / SUBMISSION_CSV,
        )
        # The test studies' truth, for scoring predictions; the pipeline never reads it.
        solution = sorted(row for r in results if r.split == "test" for row in r.solution)
        atomic.write_bytes(
            _csv_bytes(SOLUTION_CSV_HEADER, [(*r[:7], repr(r[7]), repr(r[8])) for r in solution]),
            staging / SYNTH_SOLUTION,
        )

        class_counts = {}
        for cat in ("scs", "nfs", "sbs"):
            cols = [j for j, c in enumerate(CELLS) if c[1] == cat]
            vals = written[:, cols]
            class_counts[cat] = [int((vals == k).sum()) for k in range(3)]
        summary = SynthSummary(
            out_dir=str(out),
            seed=seed,
            n_train_studies=n_studies,
            n_test_studies=n_test_studies,
            n_series=sum(len(v) for v in series_rows.values()),
            n_instances=sum(r.n_instances for r in results),
            n_coordinates=len(coordinates),
            n_blank_labels=int((written < 0).sum()),
            class_counts=class_counts,
            faults=sorted(planted, key=lambda f: (f["kind"], f["study_id"])),
            options=asdict(options),
        )
        manifest = {k: v for k, v in asdict(summary).items() if k not in ("seconds", "out_dir")}
        manifest.update(
            {
                "generator": "lss_pipeline.core.synth",
                "faults_enabled": faults,
                "train_study_ids": train_ids,
                "test_study_ids": test_ids,
            }
        )
        if sites or correlated:  # absent from a plain set's manifest, which stays as it was
            manifest.update(
                {
                    "sites": sites,
                    "correlated_grades": correlated,
                    "series": [s for r in results for s in r.series],
                }
            )
        atomic.write_bytes(
            (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode(), staging / MANIFEST
        )

        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _run_tasks(
    tasks: list[StudyTask], workers: int | None, progress: Callable[[int, int], None] | None
) -> list[StudyResult]:
    n_workers = min(workers or os.cpu_count() or 1, len(tasks))
    results: list[StudyResult] = []
    if n_workers <= 1:
        for k, task in enumerate(tasks, start=1):
            results.append(render_study(task))
            if progress:
                progress(k, len(tasks))
        return results
    # spawn: safe even when the caller has threads (Dagster, torch) running.
    with ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for k, result in enumerate(pool.map(render_study, tasks, chunksize=1), start=1):
            results.append(result)
            if progress:
                progress(k, len(tasks))
    return results


def read_manifest(raw_dir: str | os.PathLike) -> dict:
    """The manifest ``generate_dataset`` wrote (planted faults, parameters)."""
    path = Path(raw_dir) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: not a synthetic dataset folder")
    return json.loads(path.read_text(encoding="utf-8"))


def _read_synth_csv(raw_dir: str | os.PathLike, name: str) -> list[dict[str, str]]:
    path = Path(raw_dir) / name
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: not a synthetic dataset folder (or one written before it)"
        )
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def read_train_truth(raw_dir: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of ``synth_train_truth.csv`` (``TRAIN_TRUTH_CSV_HEADER``): each train cell's true grade."""
    return _read_synth_csv(raw_dir, SYNTH_TRAIN_TRUTH)


def read_solution(raw_dir: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of ``synth_solution.csv`` (``SOLUTION_CSV_HEADER``): each test study cell's truth."""
    return _read_synth_csv(raw_dir, SYNTH_SOLUTION)
