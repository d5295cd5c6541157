"""One synthetic study: plan its anatomy, series and labels, then render and write its DICOMs.

:func:`plan_study` is everything short of pixels: the phantom's geometry, each series' planes
and InstanceNumbers, the label coordinates and the planted faults. It is a pure function of
the task, so tests can re-plan a written study and check every label against its phantom.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from lss_pipeline.core import atomic
from lss_pipeline.core.constants import (
    CONDITION_STEM,
    LEVEL_SLUGS,
    LEVELS,
    SEVERITIES,
    TEST_IMAGES,
    TRAIN_IMAGES,
)
from lss_pipeline.core.synth.anatomy import PhantomGeometry, sample_geometry
from lss_pipeline.core.synth.dicom_writer import TRANSFER_SYNTAXES, StudyTags, encode_instance
from lss_pipeline.core.synth.grades import CELLS
from lss_pipeline.core.synth.options import SynthOptions
from lss_pipeline.core.synth.phantom import SERIES_CONTRAST, Phantom
from lss_pipeline.core.synth.plane import SlicePlane
from lss_pipeline.core.synth.series import (
    SeriesLayout,
    order,
    plain_axial,
    plain_sagittal,
    varied_axial,
    varied_sagittal,
)
from lss_pipeline.core.synth.sites import SiteProfile

SERIES_OF_CATEGORY = {"scs": "Sagittal T2/STIR", "nfs": "Sagittal T1", "sbs": "Axial T2"}
SERIES_DESCRIPTIONS_IN_ORDER = ("Sagittal T1", "Sagittal T2/STIR", "Axial T2")
# synth_solution.csv: the truth of every test study cell (severity, and the point that shows it).
SOLUTION_CSV_HEADER = (
    "row_id", "study_id", "condition", "level", "severity", "series_id", "instance_number", "x", "y",
)  # fmt: skip


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
    site: SiteProfile | None = None  # None: the plain protocol


@dataclass
class StudyResult:
    study_id: int
    split: str
    coordinates: list[tuple]
    n_instances: int
    faults: list[dict]
    series: list[dict] = field(default_factory=list)  # per series: site and what was varied
    solution: list[tuple] = field(default_factory=list)  # test studies: SOLUTION_CSV_HEADER rows


@dataclass
class StudyPlan:
    geometry: PhantomGeometry
    series: dict[str, SeriesLayout]  # description -> layout, in SERIES_DESCRIPTIONS_IN_ORDER
    coordinates: list[tuple]  # train_label_coordinates.csv rows
    labelled: dict[str, set[int]]  # description -> plane indices that carry a label
    faults: list[dict]
    rng: np.random.Generator  # continues into rendering
    solution: list[tuple] = field(default_factory=list)  # test studies: the truth the pipeline never reads


def _label_plane(layout: SeriesLayout, category: str, level: str, point: np.ndarray) -> int:
    """Index of the plane a radiologist labels ``point`` on: the closest (SBS: among its level's stack)."""
    planes = layout.planes
    candidates = [
        i
        for i in range(len(planes))
        if category != "sbs" or layout.levels[i] is None or layout.levels[i] == level
    ]
    return min(candidates, key=lambda i: abs(planes[i].project(point)[2]))


def solution_rows(task: StudyTask, g: PhantomGeometry, series: dict[str, SeriesLayout]) -> list[tuple]:
    """Every cell of a test study: its true grade and the exact point that shows it (no annotator jitter)."""
    rows = []
    for j, (cond, cat, _, level) in enumerate(CELLS):
        desc = SERIES_OF_CATEGORY[cat]
        layout = series[desc]
        point = g.landmark(cond, level)
        i = _label_plane(layout, cat, level, point)
        x, y, _ = layout.planes[i].project(point)
        row_id = f"{task.study_id}_{CONDITION_STEM[cond]}_{LEVEL_SLUGS[LEVELS.index(level)]}"
        rows.append(
            (row_id, task.study_id, cond, level, SEVERITIES[task.true[j]], task.series_ids[desc],
             layout.numbers[i], float(x), float(y))
        )  # fmt: skip
    return rows


def faults_has(faults: list[dict], kind: str) -> bool:
    return any(f["kind"] == kind for f in faults)


def _layouts(task: StudyTask, g: PhantomGeometry, rng: np.random.Generator) -> dict[str, SeriesLayout]:
    o = task.options
    two_stacks = "axial_two_stacks" in task.faults
    if task.site is None:
        sag_t1 = plain_sagittal(g, o, rng)
        sag_t2 = plain_sagittal(g, o, rng)
        axial, axial_levels = plain_axial(g, o, rng, two_stacks=two_stacks)
        layouts = {
            "Sagittal T1": SeriesLayout(sag_t1, [None] * len(sag_t1), [0] * len(sag_t1)),
            "Sagittal T2/STIR": SeriesLayout(sag_t2, [None] * len(sag_t2), [0] * len(sag_t2)),
            "Axial T2": SeriesLayout(axial, list(axial_levels), [LEVELS.index(lv) for lv in axial_levels]),
        }
        for layout in layouts.values():
            shuffled = rng.random() < o.shuffled_order_rate
            layout.numbers = [int(n) + 1 for n in order(rng, len(layout.planes), shuffled)]
        return layouts
    layouts = {
        "Sagittal T1": varied_sagittal(g, o, task.site, rng),
        "Sagittal T2/STIR": varied_sagittal(g, o, task.site, rng),
        "Axial T2": varied_axial(g, o, task.site, rng, two_stacks_fault=two_stacks),
    }
    for layout in layouts.values():
        if rng.random() < o.shuffled_order_rate / 2:  # a few exports store slices in no order at all
            layout.numbers = [layout.numbers[i] for i in rng.permutation(len(layout.numbers))]
            layout.protocol["shuffled_order"] = True
    return layouts


def plan_study(task: StudyTask) -> StudyPlan:
    """The study's geometry, series, label coordinates and faults (no pixels)."""
    o = task.options
    rng = np.random.default_rng(np.random.SeedSequence(list(task.entropy)))
    true_sev = {(cond, level): int(task.true[j]) for j, (cond, _, _, level) in enumerate(CELLS)}
    g = sample_geometry(rng, true_sev, variation=o.variation)
    images_dir = TRAIN_IMAGES if task.split == "train" else TEST_IMAGES
    faults: list[dict] = []
    series = _layouts(task, g, rng)

    desc = "Sagittal T2/STIR"
    if "non_contiguous_instances" in task.faults:
        n = len(series[desc].planes)
        series[desc].numbers = [v + 3 if v > n // 2 else v for v in series[desc].numbers]
        faults.append(
            {
                "kind": "non_contiguous_instances",
                "study_id": task.study_id,
                "series_id": task.series_ids[desc],
                "path": f"{images_dir}/{task.study_id}/{task.series_ids[desc]}",
            }
        )

    # Which instance shows each label: the plane closest to the landmark (SBS: among its level's stack).
    coordinates: list[tuple] = []
    labelled: dict[str, set[int]] = {d: set() for d in series}
    if task.split == "train":
        nfs_left_instance: dict[str, int] = {}
        for j, (cond, cat, side, level) in enumerate(CELLS):
            blank = task.written[j] < 0
            if (blank and rng.random() > 0.05) or (not blank and rng.random() < 0.003):
                continue  # mirror the real file: a few blanks with, a few labels without, a point
            desc = SERIES_OF_CATEGORY[cat]
            layout = series[desc]
            planes = layout.planes
            p = g.landmark(cond, level)
            i_best = _label_plane(layout, cat, level, p)
            if (
                cat == "nfs"
                and side == "right"
                and "lr_foraminal_same_instance" in task.faults
                and level in nfs_left_instance
                and not faults_has(faults, "lr_foraminal_same_instance")
            ):
                i_best = nfs_left_instance[level]
                faults.append(
                    {
                        "kind": "lr_foraminal_same_instance",
                        "study_id": task.study_id,
                        "series_id": task.series_ids[desc],
                        "instance_number": layout.numbers[i_best],
                        "level": level,
                    }
                )
            if cat == "nfs" and side == "left":
                nfs_left_instance[level] = i_best
            x, y, _ = planes[i_best].project(p)
            ps = planes[i_best].pixel_spacing
            jitter = rng.normal(0, o.annotation_jitter_mm, 2) / np.array([ps[1], ps[0]])  # mm -> (cols, rows)
            x, y = float(x + jitter[0]), float(y + jitter[1])
            labelled[desc].add(i_best)
            coordinates.append(
                (task.study_id, task.series_ids[desc], layout.numbers[i_best], cond, level, x, y)
            )
        if "coordinate_off_image" in task.faults and coordinates:
            k = int(rng.integers(len(coordinates)))
            row = list(coordinates[k])
            layout = next(lo for d, lo in series.items() if task.series_ids[d] == row[1])
            row[5] = float(row[5] + layout.planes[0].cols + 120.0)
            coordinates[k] = tuple(row)
            faults.append(
                {
                    "kind": "coordinate_off_image",
                    "study_id": task.study_id,
                    "series_id": row[1],
                    "instance_number": row[2],
                    "condition": row[3],
                    "level": row[4],
                    "x": row[5],
                }
            )
    # Test studies: the truth goes to the solution file (its own computation; the rng is untouched).
    solution = solution_rows(task, g, series) if task.split == "test" else []
    return StudyPlan(g, series, coordinates, labelled, faults, rng, solution)


def _series_field(plane: SlicePlane, rng: np.random.Generator, o: SynthOptions) -> np.ndarray:
    """Smooth multiplicative field of one series: coil bias (mostly posterior) times a faint texture."""
    r = np.linspace(-1, 1, plane.rows, dtype=np.float32)[:, None]
    c = np.linspace(-1, 1, plane.cols, dtype=np.float32)[None, :]
    k = rng.normal(0, 1, 5).astype(np.float32)
    bias = np.exp(
        o.bias
        * (0.5 * k[0] * r + 0.5 * k[1] * c + 0.4 * k[2] * r * c + 0.5 * k[3] * r**2 + 0.5 * k[4] * c**2)
    )
    coarse = rng.normal(0, 1, (plane.rows // 16 + 2, plane.cols // 16 + 2)).astype(np.float32)
    texture = 1 + 0.05 * ndimage.zoom(coarse, 16, order=1)[: plane.rows, : plane.cols]
    return (bias * texture).astype(np.float32)


def _to_pixels(
    img: np.ndarray, o: SynthOptions, rng: np.random.Generator, field_: np.ndarray, gain: float
) -> np.ndarray:
    """Bias/texture field, Rician noise, 12-bit scaling."""
    img = img * field_
    n1 = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(o.noise)
    n2 = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(o.noise)
    img = np.sqrt((img + n1) ** 2 + n2**2)
    return np.clip(img * np.float32(gain), 0, 4095).astype(np.uint16)


def render_study(task: StudyTask) -> StudyResult:
    """Render and write one study's three series; returns its coordinate rows and faults."""
    o = task.options
    plan = plan_study(task)
    rng, faults = plan.rng, plan.faults
    phantom = Phantom(plan.geometry, voxel_mm=o.voxel_mm)
    site_name = task.site.name if task.site else f"Site {task.study_id % 8 + 1}"
    study = StudyTags(task.study_id, task.seed, site=site_name)
    syntax = task.site.transfer_syntax if task.site else "explicit_le"
    images_dir = TRAIN_IMAGES if task.split == "train" else TEST_IMAGES
    study_dir = Path(task.root) / images_dir / str(task.study_id)
    series_info: list[dict] = []

    n_written = 0
    for s_num, (desc, layout) in enumerate(plan.series.items(), start=1):
        planes = layout.planes
        series_id = task.series_ids[desc]
        series_dir = study_dir / str(series_id)
        rel_series = f"{images_dir}/{task.study_id}/{series_id}"
        if task.site is not None:
            series_info.append(
                {
                    "study_id": task.study_id,
                    "series_id": series_id,
                    "series_description": desc,
                    "site": task.site.name,
                    "transfer_syntax": syntax,
                    **layout.protocol,
                }
            )
        if desc == "Sagittal T1" and "missing_series" in task.faults:
            faults.append(
                {
                    "kind": "missing_series",
                    "study_id": task.study_id,
                    "series_id": series_id,
                    "series_description": desc,
                    "path": rel_series,
                }
            )
            continue
        no_spacing = desc == "Axial T2" and "missing_spacing_tags" in task.faults
        if no_spacing:
            faults.append(
                {
                    "kind": "missing_spacing_tags",
                    "study_id": task.study_id,
                    "series_id": series_id,
                    "path": rel_series,
                }
            )
        gain = float(rng.uniform(1800, 3600))
        contrast = SERIES_CONTRAST[desc]
        if "spacing_mm" in layout.protocol:
            spacing = layout.protocol["spacing_mm"]
        else:
            spacing = o.sagittal_spacing_mm if desc.startswith("Sagittal") else o.axial_spacing_mm
        field_ = _series_field(planes[0], rng, o)
        unlabelled = [i for i in range(len(planes)) if i not in plan.labelled[desc]]
        broken: dict[int, str] = {}
        if desc == "Sagittal T2/STIR" and "non_dicom_file" in task.faults and unlabelled:
            broken[unlabelled[0]] = "non_dicom_file"
        if desc == "Axial T2" and "truncated_dicom" in task.faults and unlabelled:
            broken[unlabelled[-1]] = "truncated_dicom"
        for i, plane in enumerate(planes):
            img = phantom.render(plane, contrast, o.thickness_samples)
            pixels = _to_pixels(img, o, rng, field_, gain)
            number = layout.numbers[i]
            data = encode_instance(
                pixels,
                plane,
                study,
                series_id,
                s_num,
                desc,
                number,
                with_spacing_tags=not no_spacing,
                spacing_between_slices=spacing,
                transfer_syntax=syntax,
            )
            rel = f"{rel_series}/{number}.dcm"
            if broken.get(i) == "non_dicom_file":
                data = b"This is not a DICOM file: a stray text export from the archive.\n"
                faults.append(
                    {
                        "kind": "non_dicom_file",
                        "study_id": task.study_id,
                        "series_id": series_id,
                        "instance_number": number,
                        "path": rel,
                    }
                )
            elif broken.get(i) == "truncated_dicom":
                # Cut into the pixel data: half of it when uncompressed, a third of the file when compressed.
                cut = len(data) // 3 if TRANSFER_SYNTAXES[syntax][0].is_compressed else pixels.nbytes // 2
                data = data[: len(data) - cut]
                faults.append(
                    {
                        "kind": "truncated_dicom",
                        "study_id": task.study_id,
                        "series_id": series_id,
                        "instance_number": number,
                        "path": rel,
                    }
                )
            atomic.write_bytes(data, series_dir / f"{number}.dcm")
            n_written += 1
    if "axial_two_stacks" in task.faults:
        faults.append(
            {
                "kind": "axial_two_stacks",
                "study_id": task.study_id,
                "series_id": task.series_ids["Axial T2"],
                "path": f"{images_dir}/{task.study_id}/{task.series_ids['Axial T2']}",
                "levels_tilted": list(LEVELS[3:]),
            }
        )
    return StudyResult(
        task.study_id, task.split, plan.coordinates, n_written, faults, series_info, plan.solution
    )
