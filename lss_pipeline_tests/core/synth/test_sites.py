"""Site variety: every variant decodes, its geometry tags agree, and every label lands on its structure.

Studies are written one per task (one per site; every other site made to flip every series and
number its instances the other way round) and re-planned, so each label can be checked against the
phantom it was drawn from, through the file's own ImagePositionPatient / ImageOrientationPatient /
PixelSpacing.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from lss_pipeline.core.constants import TRAIN_IMAGES
from lss_pipeline.core.synth import SITE_PROFILES, generate_dataset, read_manifest
from lss_pipeline.core.synth.anatomy import CSF, FAT
from lss_pipeline.core.synth.dicom_writer import TRANSFER_SYNTAXES
from lss_pipeline.core.synth.grades import CELLS
from lss_pipeline.core.synth.measures import canal_ap_mm
from lss_pipeline.core.synth.options import SynthOptions
from lss_pipeline.core.synth.phantom import Phantom
from lss_pipeline.core.synth.plane import SlicePlane
from lss_pipeline.core.synth.sites import site_of
from lss_pipeline.core.synth.study import StudyPlan, StudyTask, plan_study, render_study

# Small images (rows 96 -> 72..120 px), exact clicks, no faults.
OPTIONS = SynthOptions(rows=96, annotation_jitter_mm=0.0, label_noise=0.0, blank_rate=0.0)
EXPECTED_TISSUE = {"scs": CSF, "nfs": FAT, "sbs": CSF}


def _tasks(root: Path) -> list[StudyTask]:
    """One study per site; every other site stores every series flipped, its order the other way round."""
    tasks = []
    rng = np.random.default_rng(42)
    descriptions = ("Sagittal T1", "Sagittal T2/STIR", "Axial T2")
    for k, site in enumerate(SITE_PROFILES):
        profile = site if k % 2 == 0 else replace(site, flip_rate=1.0, reverse_rate=1 - site.reverse_rate)
        study_id = 1_000_000 + k
        true = [int(v) for v in rng.integers(0, 3, len(CELLS))]  # all grades, spread over the cells
        ids = {desc: study_id * 10 + n for n, desc in enumerate(descriptions, start=1)}
        entropy = (0, study_id, 7919)
        tasks.append(
            StudyTask(study_id, "train", ids, 0, entropy, true, true, [], OPTIONS, str(root), profile)
        )
    return tasks


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> list[tuple[StudyTask, StudyPlan, list[tuple], list[dict]]]:
    root = tmp_path_factory.mktemp("sites")
    out = []
    for task in _tasks(root):
        result = render_study(task)
        out.append((task, plan_study(task), result.coordinates, result.series))
    return out


def _file(task: StudyTask, series_id: int, number: int) -> Path:
    return Path(task.root) / TRAIN_IMAGES / str(task.study_id) / str(series_id) / f"{number}.dcm"


def _plane(ds: pydicom.Dataset) -> SlicePlane:
    iop = [float(v) for v in ds.ImageOrientationPatient]
    ipp = [float(v) for v in ds.ImagePositionPatient]
    spacing = [float(v) for v in ds.PixelSpacing]
    return SlicePlane(
        (ipp[0], ipp[1], ipp[2]),
        (iop[0], iop[1], iop[2]),
        (iop[3], iop[4], iop[5]),
        int(ds.Rows),
        int(ds.Columns),
        (spacing[0], spacing[1]),
        float(ds.SliceThickness),
    )


def _in_foramen_fat(g, condition: str, level: str, point: np.ndarray) -> bool:
    """Whether ``point`` lies inside the fat ellipsoid the phantom paints for this foramen."""
    side = condition.split()[0].lower()
    d = g.to_local(point) - g.foramen_center_local(side, level)
    f, sc = g.foramen_size, g.scale(condition, level)
    return bool((d[0] / 4.2) ** 2 + (d[1] / (5.3 * f * sc)) ** 2 + (d[2] / (8.0 * f * sc)) ** 2 <= 1)


def _local_threshold(ds: pydicom.Dataset, plane: SlicePlane, x: float, y: float) -> float:
    """70 % of the bright end within 15 mm of the point: the coil bias makes a global threshold miss
    the canal at the edge of the field of view."""
    img = ds.pixel_array.astype(float)
    r, c = int(round(15 / plane.pixel_spacing[0])), int(round(15 / plane.pixel_spacing[1]))
    yi, xi = int(round(y)), int(round(x))
    return 0.7 * float(np.percentile(img[max(yi - r, 0) : yi + r + 1, max(xi - c, 0) : xi + c + 1], 98))


def test_every_variant_appears(written):
    series = [s for *_, info in written for s in info]
    assert {s["transfer_syntax"] for s in series} == set(TRANSFER_SYNTAXES)
    assert {s["axial_layout"] for s in series if "axial_layout" in s} == {
        "per_level",
        "per_level_overlap",
        "contiguous",
        "two_stacks",
    }
    assert {s["flip"] for s in series} == {"none", "rows", "columns", "both"}
    assert {s["reversed_order"] for s in series} == {True, False}
    assert max(s["oblique_deg"] for s in series) > 10
    assert any(s["pixel_spacing"][0] != s["pixel_spacing"][1] for s in series)
    assert len({(s["rows"], s["columns"]) for s in series}) >= 6
    assert any(s["rows"] != s["columns"] for s in series)


def test_every_file_decodes_and_its_geometry_tags_agree(written):
    for task, plan, _, _ in written:
        uid = TRANSFER_SYNTAXES[task.site.transfer_syntax][0]
        for desc, layout in plan.series.items():
            normal_positions: dict[int, list[tuple[float, int]]] = {}
            for plane, number, stack in zip(layout.planes, layout.numbers, layout.stacks):
                ds = pydicom.dcmread(_file(task, task.series_ids[desc], number))
                assert ds.file_meta.TransferSyntaxUID == uid
                pixels = ds.pixel_array
                assert pixels.shape == (ds.Rows, ds.Columns) == (plane.rows, plane.cols)
                assert pixels.dtype == (np.uint8 if ds.BitsAllocated == 8 else np.uint16)
                assert int(pixels.max()) < 2 ** int(ds.BitsStored) and pixels.std() > 0
                assert ds.InstanceNumber == number
                tagged = _plane(ds)
                row, col = np.asarray(tagged.row_dir), np.asarray(tagged.col_dir)
                assert abs(np.linalg.norm(row) - 1) < 1e-6 and abs(np.linalg.norm(col) - 1) < 1e-6
                assert abs(row @ col) < 1e-6
                assert np.allclose(tagged.ipp, plane.ipp, atol=1e-5)
                assert np.allclose(tagged.pixel_spacing, plane.pixel_spacing, atol=1e-6)
                assert float(ds.SliceLocation) == pytest.approx(
                    float(np.dot(plane.ipp, plane.normal)), abs=1e-5
                )
                normal_positions.setdefault(stack, []).append(
                    (float(np.dot(tagged.ipp, tagged.normal)), float(ds.SpacingBetweenSlices))
                )
            for (
                positions
            ) in normal_positions.values():  # one stack = parallel planes, SpacingBetweenSlices apart
                gaps = np.diff(sorted(p for p, _ in positions))
                assert np.allclose(gaps, positions[0][1], atol=1e-4), (task.site.name, desc)


def test_axial_stacks_overlap_where_the_site_says(written):
    for task, plan, _, info in written:
        layout = plan.series["Axial T2"]
        protocol = next(s for s in info if s["series_description"] == "Axial T2")
        assert len(set(layout.stacks)) == protocol["stacks"]
        if protocol["axial_layout"] not in ("per_level_overlap", "two_stacks"):
            continue
        # Along the spine, consecutive stacks cover overlapping ranges at the canal.
        down = plan.geometry.rotation @ np.array([0.0, 0.0, -1.0])
        extent = {}
        for plane, stack in zip(layout.planes, layout.stacks):
            centre = plane.point((plane.cols - 1) / 2, (plane.rows - 1) / 2)
            lo, hi = extent.get(stack, (np.inf, -np.inf))
            extent[stack] = (min(lo, centre @ down), max(hi, centre @ down))
        ranges = sorted(extent.values())
        assert all(a[1] > b[0] for a, b in zip(ranges, ranges[1:])), (task.site.name, ranges)


def test_every_label_lands_on_its_structure(written):
    """Through the file's own tags, each labelled point is in the tissue it grades (canal and recess
    CSF, foraminal fat), and on sagittal T2 the canal measured there follows the true grade."""
    checked = {"scs": 0, "nfs": 0, "sbs": 0}
    overpainted = 0
    canal: list[tuple[float, float]] = []
    for task, plan, coordinates, _ in written:
        phantom = Phantom(plan.geometry, voxel_mm=OPTIONS.voxel_mm)
        severity = {(cond, level): task.true[j] for j, (cond, _, _, level) in enumerate(CELLS)}
        category = {cond: cat for cond, cat, _, _ in CELLS}
        for _, series_id, number, cond, level, x, y in coordinates:
            cat = category[cond]
            ds = pydicom.dcmread(_file(task, series_id, number))
            plane = _plane(ds)
            assert 0 <= x < plane.cols and 0 <= y < plane.rows
            point = plane.point(x, y)
            tissue = phantom.tissue_at(point)
            if (
                tissue != EXPECTED_TISSUE[cat]
                and cat == "nfs"
                and _in_foramen_fat(plan.geometry, cond, level, point)
            ):
                overpainted += 1  # the lateral recess' bed is painted over the medial edge of a wide foramen
            else:
                assert tissue == EXPECTED_TISSUE[cat], (task.site.name, cond, level, tissue)
            checked[cat] += 1
            if cat == "scs":
                expected = plan.geometry.canal_ap * plan.geometry.scale(cond, level)
                measured = canal_ap_mm(
                    ds.pixel_array, x, y, plane.pixel_spacing, _local_threshold(ds, plane, x, y)
                )
                assert abs(measured - expected) <= 2.5 * plane.pixel_spacing[1] + 1.0, (
                    task.site.name,
                    level,
                    severity[(cond, level)],
                )
                canal.append((expected, measured))
    # Every cell has a point but for the real file's rare label without one (0.3 %).
    assert all(checked[cat] >= n * 8 - 2 for cat, n in (("scs", 5), ("nfs", 10), ("sbs", 10))), checked
    assert overpainted <= 1
    expected, measured = np.array(canal).T
    assert np.corrcoef(expected, measured)[0, 1] > 0.85


def test_sites_in_a_dataset_deterministic_and_listed(tmp_path):
    kwargs = dict(n_studies=3, seed=4, n_test_studies=1, sites=4, rows=32, workers=1)
    generate_dataset(tmp_path / "a", **kwargs)
    generate_dataset(tmp_path / "b", **kwargs)

    def digest(root: Path) -> str:
        h = hashlib.sha256()
        for p in sorted(root.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(root)).encode() + p.read_bytes())
        return h.hexdigest()

    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    manifest = read_manifest(tmp_path / "a")
    assert manifest["sites"] == 4 and manifest["correlated_grades"] is True
    series = manifest["series"]
    assert len(series) == 4 * 3
    assert {s["site"] for s in series} == {p.name for p in SITE_PROFILES[:4]}  # round robin, test study too
    for s in series:
        files = sorted((tmp_path / "a").glob(f"*_images/{s['study_id']}/{s['series_id']}/*.dcm"))
        assert len(files) == s["slices"]
        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        assert ds.file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES[s["transfer_syntax"]][0]
        assert ds.InstitutionName == f"Synthetic {s['site']}"


def test_site_count_is_checked(tmp_path):
    assert site_of(9, 8) is SITE_PROFILES[1]
    with pytest.raises(ValueError, match="sites must be between 1 and 8"):
        generate_dataset(tmp_path / "x", n_studies=1, sites=9, rows=32, workers=1)
    assert not (tmp_path / "x").exists()
