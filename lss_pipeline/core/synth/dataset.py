"""Write a synthetic RSNA 2024 LSDC folder: the exact Kaggle layout, real DICOMs, labels.

Each study is one :class:`~lss_pipeline.core.synth.phantom.Phantom` sampled by three
series; labels are drawn with the real class shares, a few are blanked or flipped, and
every coordinate is the projection of the graded structure's 3D landmark into the
instance that shows it. ``faults=True`` plants the real dataset's faults and lists them
in ``synth_manifest.json``. The folder is built beside the target and renamed into place,
so a crash never leaves a half-written dataset.
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
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import ndimage

from lss_pipeline.core import atomic
from lss_pipeline.core.constants import (
    CONDITIONS, COORDINATES_CSV, COORDINATES_CSV_HEADER, LEVEL_SLUGS, LEVELS, REAL_CLASS_SHARES,
    SERIES_CSV, SERIES_CSV_HEADER, SEVERITIES, SUBMISSION_CSV, SUBMISSION_CSV_HEADER,
    TEST_IMAGES, TEST_SERIES_CSV, TRAIN_CSV, TRAIN_CSV_HEADER, TRAIN_IMAGES,
)
from lss_pipeline.core.synth.dicom_writer import StudyTags, encode_instance
from lss_pipeline.core.synth.phantom import (
    SERIES_CONTRAST, Phantom, PhantomGeometry, SlicePlane, sample_geometry,
)

MANIFEST = "synth_manifest.json"
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
# The 25 train.csv cells of a study, in column order: (condition, category, side, level).
CELLS: tuple[tuple[str, str, str | None, str], ...] = tuple(
    (cond, cat, side, level) for (cond, cat, side, _) in CONDITIONS for level in LEVELS
)
SERIES_OF_CATEGORY = {"scs": "Sagittal T2/STIR", "nfs": "Sagittal T1", "sbs": "Axial T2"}


@dataclass(frozen=True)
class SynthOptions:
    """Acquisition and label-noise knobs; defaults are close to the real data."""

    rows: int = 256  # image side in pixels (all series)
    sagittal_slices: int = 17
    sagittal_spacing_mm: float = 3.8
    sagittal_fov_mm: float = 210.0
    axial_slices_per_level: int = 5
    axial_spacing_mm: float = 4.0
    axial_fov_mm: float = 170.0
    voxel_mm: float = 0.6  # phantom resolution
    thickness_samples: int = 2  # samples across the slice thickness (partial volume)
    noise: float = 0.035  # Rician noise sigma, in tissue units (CSF on T2 is about 1)
    bias: float = 0.35  # strength of the smooth intensity bias
    variation: float = 1.0  # anatomical variation between studies (0 = identical spines)
    label_noise: float = 0.04  # chance a written label is an adjacent class to the anatomy
    blank_rate: float = 0.02  # share of blank train.csv cells
    annotation_jitter_mm: float = 0.8  # annotators' click error
    shuffled_order_rate: float = 0.15  # series whose InstanceNumber order is not spatial
    fault_rate: float = 0.02  # per fault kind, share of studies (at least one each)

    @classmethod
    def from_kwargs(cls, **kwargs) -> "SynthOptions":
        known = {f.name for f in fields(cls)}
        unknown = set(kwargs) - known
        if unknown:
            raise TypeError(f"unknown synthetic-data option(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**kwargs)


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


# ------------------------------------------------------------------------ labels
def sample_labels(
    rng: np.random.Generator,
    n_studies: int,
    class_shares: dict[str, tuple[float, float, float]] | None = None,
    blank_rate: float = 0.02,
    label_noise: float = 0.04,
) -> tuple[np.ndarray, np.ndarray]:
    """(true, written) severities, shape (n_studies, 25) in train.csv column order.

    ``true`` drives the anatomy; ``written`` is what train.csv says: mostly equal, an
    adjacent class with probability ``label_noise``, -1 (blank) with ``blank_rate``.
    Blanks fall mostly on subarticular L1/L2 and L2/L3, as in the real file.
    """
    shares = class_shares or REAL_CLASS_SHARES
    true = np.empty((n_studies, len(CELLS)), dtype=np.int8)
    for j, (_, cat, _, _) in enumerate(CELLS):
        p = np.asarray(shares[cat], dtype=float)
        true[:, j] = rng.choice(3, size=n_studies, p=p / p.sum())
    written = true.copy()
    flip = rng.random(true.shape) < label_noise
    step = np.where(rng.random(true.shape) < 0.5, -1, 1)
    step = np.where(true == 0, 1, np.where(true == 2, -1, step))
    written[flip] = (true + step)[flip]
    # Blank cells: weight subarticular upper levels 6x.
    weights = np.array([6.0 if cat == "sbs" and level in ("L1/L2", "L2/L3") else 1.0 for (_, cat, _, level) in CELLS])
    p_blank = np.clip(blank_rate * weights / weights.mean(), 0, 1)
    written[rng.random(true.shape) < p_blank[None, :]] = -1
    return true, written


# ----------------------------------------------------------------------- studies
@dataclass
class StudyTask:
    study_id: int
    split: str  # "train" | "test"
    series_ids: dict[str, int]  # description -> series id
    seed: int
    entropy: tuple[int, ...]
    true: list[int]  # 25 true severities
    written: list[int]  # 25 written severities (-1 blank)
    faults: list[str]
    options: SynthOptions
    root: str  # staging folder


@dataclass
class StudyResult:
    study_id: int
    split: str
    coordinates: list[tuple]
    n_instances: int
    faults: list[dict]


def _order(rng: np.random.Generator, n: int, shuffle: bool) -> np.ndarray:
    """InstanceNumber-1 for each spatial position (real series are not always spatially ordered)."""
    if not shuffle:
        return np.arange(n)
    return np.arange(n)[::-1].copy() if rng.random() < 0.5 else rng.permutation(n)


def _sagittal_planes(g: PhantomGeometry, o: SynthOptions, rng: np.random.Generator) -> list[SlicePlane]:
    ps = o.sagittal_fov_mm / o.rows
    center = g.to_patient([0.0, g.canal_center_y - 8.0 + rng.uniform(-4, 4), rng.uniform(-8, 8)])
    x_mid = g.origin[0] + rng.uniform(-1.5, 1.5)
    planes = []
    for k in range(o.sagittal_slices):
        x = x_mid + (k - (o.sagittal_slices - 1) / 2) * o.sagittal_spacing_mm  # right to left
        planes.append(SlicePlane.centered((x, center[1], center[2]), (0, 1, 0), (0, 0, -1), o.rows, o.rows, (ps, ps),
                                          thickness=o.sagittal_spacing_mm * 0.9))
    return planes


def _axial_planes(g: PhantomGeometry, o: SynthOptions, rng: np.random.Generator,
                  two_stacks: bool) -> tuple[list[SlicePlane], list[str]]:
    """Per level a small stack parallel to the disc, superior to inferior."""
    ps = o.axial_fov_mm / o.rows
    planes, levels = [], []
    for k, level in enumerate(LEVELS):
        extra = np.deg2rad(14.0 if (two_stacks and k >= 3) else rng.uniform(-1.0, 1.0))
        c, s = np.cos(extra), np.sin(extra)
        col_local = np.array([0.0, c, s])
        normal_local = np.array([0.0, -s, c])
        col_dir = g.rotation @ col_local
        normal = g.rotation @ normal_local
        center = g.to_patient([rng.uniform(-2, 2), g.canal_center_y - 6 + rng.uniform(-3, 3),
                               g.level_disc_z(level) + rng.uniform(-1.0, 1.0)])
        n = o.axial_slices_per_level
        for j in range(n):
            off = ((n - 1) / 2 - j) * o.axial_spacing_mm  # superior first
            planes.append(SlicePlane.centered(center + off * normal, (1, 0, 0), col_dir, o.rows, o.rows, (ps, ps),
                                              thickness=o.axial_spacing_mm * 0.9))
            levels.append(level)
    return planes, levels


def _series_field(plane: SlicePlane, rng: np.random.Generator, o: SynthOptions) -> np.ndarray:
    """Smooth multiplicative field of one series: coil bias (mostly posterior) times a faint texture."""
    r = np.linspace(-1, 1, plane.rows, dtype=np.float32)[:, None]
    c = np.linspace(-1, 1, plane.cols, dtype=np.float32)[None, :]
    k = rng.normal(0, 1, 5).astype(np.float32)
    bias = np.exp(o.bias * (0.5 * k[0] * r + 0.5 * k[1] * c + 0.4 * k[2] * r * c + 0.5 * k[3] * r**2 + 0.5 * k[4] * c**2))
    coarse = rng.normal(0, 1, (plane.rows // 16 + 2, plane.cols // 16 + 2)).astype(np.float32)
    texture = 1 + 0.05 * ndimage.zoom(coarse, 16, order=1)[: plane.rows, : plane.cols]
    return (bias * texture).astype(np.float32)


def _to_pixels(img: np.ndarray, o: SynthOptions, rng: np.random.Generator, field_: np.ndarray, gain: float) -> np.ndarray:
    """Bias/texture field, Rician noise, 12-bit scaling."""
    img = img * field_
    n1 = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(o.noise)
    n2 = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(o.noise)
    img = np.sqrt((img + n1) ** 2 + n2**2)
    return np.clip(img * np.float32(gain), 0, 4095).astype(np.uint16)


def render_study(task: StudyTask) -> StudyResult:
    """Render and write one study's three series; returns its coordinate rows and faults."""
    o = task.options
    rng = np.random.default_rng(np.random.SeedSequence(list(task.entropy)))
    true_sev = {(cond, level): int(task.true[j]) for j, (cond, _, _, level) in enumerate(CELLS)}
    g = sample_geometry(rng, true_sev, variation=o.variation)
    phantom = Phantom(g, voxel_mm=o.voxel_mm)
    study = StudyTags(task.study_id, task.seed, site=int(task.study_id % 8) + 1)
    images_dir = TRAIN_IMAGES if task.split == "train" else TEST_IMAGES
    study_dir = Path(task.root) / images_dir / str(task.study_id)
    faults: list[dict] = []

    sag_t1 = _sagittal_planes(g, o, rng)
    sag_t2 = _sagittal_planes(g, o, rng)
    axial, axial_levels = _axial_planes(g, o, rng, two_stacks="axial_two_stacks" in task.faults)
    series_planes = {"Sagittal T1": sag_t1, "Sagittal T2/STIR": sag_t2, "Axial T2": axial}

    # Which instance shows each label: the plane closest to the landmark (SBS: among its level's stack).
    instance_of: dict[str, list[int]] = {}
    for desc, planes in series_planes.items():
        shuffled = rng.random() < o.shuffled_order_rate
        order = _order(rng, len(planes), shuffled)
        numbers = order + 1
        if desc == "Sagittal T2/STIR" and "non_contiguous_instances" in task.faults:
            numbers = np.where(numbers > len(planes) // 2, numbers + 3, numbers)
            faults.append({"kind": "non_contiguous_instances", "study_id": task.study_id,
                           "series_id": task.series_ids[desc],
                           "path": f"{images_dir}/{task.study_id}/{task.series_ids[desc]}"})
        instance_of[desc] = [int(n) for n in numbers]

    coordinates: list[tuple] = []
    labelled: dict[str, set[int]] = {d: set() for d in series_planes}
    if task.split == "train":
        nfs_left_instance: dict[str, int] = {}
        for j, (cond, cat, side, level) in enumerate(CELLS):
            blank = task.written[j] < 0
            if (blank and rng.random() > 0.05) or (not blank and rng.random() < 0.003):
                continue  # mirror the real file: a few blanks with, a few labels without, a point
            desc = SERIES_OF_CATEGORY[cat]
            planes = series_planes[desc]
            candidates = [i for i in range(len(planes)) if cat != "sbs" or axial_levels[i] == level]
            p = g.landmark(cond, level)
            i_best = min(candidates, key=lambda i: abs(planes[i].project(p)[2]))
            if cat == "nfs" and side == "right" and "lr_foraminal_same_instance" in task.faults \
                    and level in nfs_left_instance and not faults_has(faults, "lr_foraminal_same_instance"):
                i_best = nfs_left_instance[level]
                faults.append({"kind": "lr_foraminal_same_instance", "study_id": task.study_id,
                               "series_id": task.series_ids[desc], "instance_number": instance_of[desc][i_best],
                               "level": level})
            if cat == "nfs" and side == "left":
                nfs_left_instance[level] = i_best
            x, y, _ = planes[i_best].project(p)
            jitter = rng.normal(0, o.annotation_jitter_mm, 2) / planes[i_best].pixel_spacing[1]
            x, y = float(x + jitter[0]), float(y + jitter[1])
            labelled[desc].add(i_best)
            coordinates.append((task.study_id, task.series_ids[desc], instance_of[desc][i_best], cond, level, x, y))
        if "coordinate_off_image" in task.faults and coordinates:
            k = int(rng.integers(len(coordinates)))
            row = list(coordinates[k])
            row[5] = float(row[5] + o.rows + 120.0)
            coordinates[k] = tuple(row)
            faults.append({"kind": "coordinate_off_image", "study_id": task.study_id, "series_id": row[1],
                           "instance_number": row[2], "condition": row[3], "level": row[4], "x": row[5]})

    n_written = 0
    for s_num, (desc, planes) in enumerate(series_planes.items(), start=1):
        series_id = task.series_ids[desc]
        series_dir = study_dir / str(series_id)
        rel_series = f"{images_dir}/{task.study_id}/{series_id}"
        if desc == "Sagittal T1" and "missing_series" in task.faults:
            faults.append({"kind": "missing_series", "study_id": task.study_id, "series_id": series_id,
                           "series_description": desc, "path": rel_series})
            continue
        no_spacing = desc == "Axial T2" and "missing_spacing_tags" in task.faults
        if no_spacing:
            faults.append({"kind": "missing_spacing_tags", "study_id": task.study_id, "series_id": series_id,
                           "path": rel_series})
        gain = float(rng.uniform(1800, 3600))
        contrast = SERIES_CONTRAST[desc]
        spacing = o.sagittal_spacing_mm if desc.startswith("Sagittal") else o.axial_spacing_mm
        field_ = _series_field(planes[0], rng, o)
        unlabelled = [i for i in range(len(planes)) if i not in labelled[desc]]
        broken: dict[int, str] = {}
        if desc == "Sagittal T2/STIR" and "non_dicom_file" in task.faults and unlabelled:
            broken[unlabelled[0]] = "non_dicom_file"
        if desc == "Axial T2" and "truncated_dicom" in task.faults and unlabelled:
            broken[unlabelled[-1]] = "truncated_dicom"
        for i, plane in enumerate(planes):
            img = phantom.render(plane, contrast, o.thickness_samples)
            pixels = _to_pixels(img, o, rng, field_, gain)
            number = instance_of[desc][i]
            data = encode_instance(pixels, plane, study, series_id, s_num, desc, number,
                                   with_spacing_tags=not no_spacing, spacing_between_slices=spacing)
            rel = f"{rel_series}/{number}.dcm"
            if broken.get(i) == "non_dicom_file":
                data = b"This is not a DICOM file: a stray text export from the archive.\n"
                faults.append({"kind": "non_dicom_file", "study_id": task.study_id, "series_id": series_id,
                               "instance_number": number, "path": rel})
            elif broken.get(i) == "truncated_dicom":
                data = data[: len(data) - pixels.nbytes // 2]
                faults.append({"kind": "truncated_dicom", "study_id": task.study_id, "series_id": series_id,
                               "instance_number": number, "path": rel})
            atomic.write_bytes(data, series_dir / f"{number}.dcm")
            n_written += 1
    if "axial_two_stacks" in task.faults:
        faults.append({"kind": "axial_two_stacks", "study_id": task.study_id,
                       "series_id": task.series_ids["Axial T2"],
                       "path": f"{images_dir}/{task.study_id}/{task.series_ids['Axial T2']}",
                       "levels_tilted": list(LEVELS[3:])})
    return StudyResult(task.study_id, task.split, coordinates, n_written, faults)


def faults_has(faults: list[dict], kind: str) -> bool:
    return any(f["kind"] == kind for f in faults)


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
    **geometry_options,
) -> SynthSummary:
    """Write a synthetic RSNA folder to ``out_dir``; ``geometry_options`` are :class:`SynthOptions` fields.

    ``out_dir`` must not exist or be empty unless ``overwrite``. ``progress(done, total)``
    is called after each study.
    """
    started = time.perf_counter()
    if n_studies < 1 or n_test_studies < 0:
        raise ValueError(f"n_studies must be >= 1 and n_test_studies >= 0, got {n_studies}, {n_test_studies}")
    options = SynthOptions.from_kwargs(**geometry_options)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; pass overwrite=True (CLI: --overwrite) to replace it")

    rng = np.random.default_rng(seed)
    taken: set[int] = set()
    train_ids = sorted(_unique_ids(rng, n_studies, taken))
    test_ids = sorted(_unique_ids(rng, n_test_studies, taken))
    true, written = sample_labels(rng, n_studies, class_shares, options.blank_rate, options.label_noise)
    test_true, _ = sample_labels(rng, max(n_test_studies, 1), class_shares, 0.0, 0.0)
    fault_plan = _plan_faults(rng, train_ids, options.fault_rate) if faults else {s: [] for s in train_ids}

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.synth-", dir=out.parent))
    try:
        tasks: list[StudyTask] = []
        series_rows: dict[str, list[tuple]] = {"train": [], "test": []}
        for split, ids in (("train", train_ids), ("test", test_ids)):
            for i, sid in enumerate(ids):
                series_ids = dict(zip(("Sagittal T1", "Sagittal T2/STIR", "Axial T2"), _unique_ids(rng, 3, taken)))
                for desc, ser in sorted(series_ids.items(), key=lambda kv: kv[1]):
                    series_rows[split].append((sid, ser, desc))
                t = true[i] if split == "train" else test_true[i]
                w = written[i] if split == "train" else np.full(len(CELLS), -1)
                tasks.append(StudyTask(sid, split, series_ids, seed, (seed, sid, 7919), [int(v) for v in t],
                                       [int(v) for v in w], fault_plan.get(sid, []) if split == "train" else [],
                                       options, str(staging)))
        results = _run_tasks(tasks, workers, progress)

        coordinates = [row for r in results if r.split == "train" for row in r.coordinates]
        planted = [f for r in results for f in r.faults]
        train_rows = [
            (sid, *(SEVERITIES[v] if v >= 0 else "" for v in written[i])) for i, sid in enumerate(train_ids)
        ]
        atomic.write_bytes(_csv_bytes(TRAIN_CSV_HEADER, train_rows), staging / TRAIN_CSV)
        atomic.write_bytes(_csv_bytes(COORDINATES_CSV_HEADER, [(*r[:5], repr(r[5]), repr(r[6])) for r in coordinates]),
                           staging / COORDINATES_CSV)
        atomic.write_bytes(_csv_bytes(SERIES_CSV_HEADER, series_rows["train"]), staging / SERIES_CSV)
        atomic.write_bytes(_csv_bytes(SERIES_CSV_HEADER, series_rows["test"]), staging / TEST_SERIES_CSV)
        third = repr(1 / 3)
        submission = sorted(
            f"{sid}_{stem}_{slug}" for sid in test_ids for (_, _, _, stem) in CONDITIONS for slug in LEVEL_SLUGS
        )
        atomic.write_bytes(_csv_bytes(SUBMISSION_CSV_HEADER, [(r, third, third, third) for r in submission]),
                           staging / SUBMISSION_CSV)

        class_counts = {}
        for cat in ("scs", "nfs", "sbs"):
            cols = [j for j, c in enumerate(CELLS) if c[1] == cat]
            vals = written[:, cols]
            class_counts[cat] = [int((vals == k).sum()) for k in range(3)]
        summary = SynthSummary(
            out_dir=str(out), seed=seed, n_train_studies=n_studies, n_test_studies=n_test_studies,
            n_series=sum(len(v) for v in series_rows.values()),
            n_instances=sum(r.n_instances for r in results), n_coordinates=len(coordinates),
            n_blank_labels=int((written < 0).sum()), class_counts=class_counts,
            faults=sorted(planted, key=lambda f: (f["kind"], f["study_id"])), options=asdict(options),
        )
        manifest = {k: v for k, v in asdict(summary).items() if k not in ("seconds", "out_dir")}
        manifest.update({"generator": "lss_pipeline.core.synth", "faults_enabled": faults,
                         "train_study_ids": train_ids, "test_study_ids": test_ids})
        atomic.write_bytes((json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode(), staging / MANIFEST)

        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _run_tasks(tasks: list[StudyTask], workers: int | None,
               progress: Callable[[int, int], None] | None) -> list[StudyResult]:
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
