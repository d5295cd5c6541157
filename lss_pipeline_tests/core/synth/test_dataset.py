"""The synthetic RSNA folder: exact layout and strings, readable DICOMs, determinism, faults, labels."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from lss_pipeline.core.constants import (
    COORDINATES_CSV,
    COORDINATES_CSV_HEADER,
    REAL_CLASS_SHARES,
    SERIES_CSV,
    SERIES_CSV_HEADER,
    SERIES_DESCRIPTIONS,
    SEVERITIES,
    SUBMISSION_CSV,
    SUBMISSION_CSV_HEADER,
    TEST_SERIES_CSV,
    TRAIN_CSV,
    TRAIN_CSV_HEADER,
)
from lss_pipeline.core.synth import (
    FAULT_KINDS,
    MANIFEST,
    generate_dataset,
    read_manifest,
    read_train_truth,
    sample_labels,
)
from lss_pipeline.core.synth.grades import CELLS
from lss_pipeline_tests.real_labels import REAL_LABELS

SMALL = dict(rows=64, sagittal_slices=9, axial_slices_per_level=3, workers=1)
HEADERS = {
    TRAIN_CSV: TRAIN_CSV_HEADER,
    COORDINATES_CSV: COORDINATES_CSV_HEADER,
    SERIES_CSV: SERIES_CSV_HEADER,
    TEST_SERIES_CSV: SERIES_CSV_HEADER,
    SUBMISSION_CSV: SUBMISSION_CSV_HEADER,
}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "raw"
    generate_dataset(out, n_studies=5, seed=3, n_test_studies=1, rows=96, workers=1)
    return out


@pytest.fixture(scope="module", params=[0, 8], ids=["plain", "8 sites"])
def faulty(tmp_path_factory, request) -> Path:
    out = tmp_path_factory.mktemp("synth_faults") / "raw"
    generate_dataset(out, n_studies=9, seed=5, faults=True, n_test_studies=1, sites=request.param, **SMALL)
    return out


def test_headers_and_strings_are_exact(clean):
    for name, header in HEADERS.items():
        first = (clean / name).read_bytes().split(b"\r\n")[0].decode()
        assert first == ",".join(header), name
    for row in _rows(clean / SERIES_CSV):
        assert row["series_description"] in SERIES_DESCRIPTIONS
    coords = _rows(clean / COORDINATES_CSV)
    assert {r["condition"] for r in coords} <= {c for c, *_ in CELLS}
    assert {r["level"] for r in coords} <= {lv for *_, lv in CELLS}
    for row in _rows(clean / TRAIN_CSV):
        assert set(list(row.values())[1:]) <= {"Normal/Mild", "Moderate", "Severe", ""}
    ids = [int(r["study_id"]) for r in _rows(clean / TRAIN_CSV)]
    assert ids == sorted(ids) and all(10**6 <= i < 10**10 for i in ids)
    sub = _rows(clean / SUBMISSION_CSV)
    assert len(sub) == 25 and sub[0]["normal_mild"] == repr(1 / 3)


def test_headers_match_the_real_kaggle_files(clean):
    if not REAL_LABELS.is_dir():
        pytest.skip(f"{REAL_LABELS} absent: real label files not available here")
    for name in HEADERS:
        real = (REAL_LABELS / name).read_bytes().splitlines()[0]
        ours = (clean / name).read_bytes().splitlines()[0]
        assert ours == real, name


def test_the_train_truth_is_train_csv_before_annotator_noise_and_blanks(clean, tmp_path):
    truth = {r["row_id"]: r for r in read_train_truth(clean)}
    train = _rows(clean / TRAIN_CSV)
    assert len(truth) == 25 * len(train)
    for row in train:
        for column, written in list(row.items())[1:]:
            true = truth[f"{row['study_id']}_{column}"]
            assert true["study_id"] == row["study_id"] and true["severity"] in SEVERITIES
            if written:  # noise moves a grade by one class at most
                assert abs(SEVERITIES.index(written) - SEVERITIES.index(true["severity"])) <= 1
    # Without noise and blanks, train.csv is the truth, cell for cell.
    exact = tmp_path / "exact"
    generate_dataset(exact, n_studies=3, seed=4, n_test_studies=0, label_noise=0.0, blank_rate=0.0, **SMALL)
    exact_truth = {r["row_id"]: r["severity"] for r in read_train_truth(exact)}
    for row in _rows(exact / TRAIN_CSV):
        for column, written in list(row.items())[1:]:
            assert exact_truth[f"{row['study_id']}_{column}"] == written


def test_every_dicom_reads_back_with_the_required_tags(clean):
    files = sorted((clean / "train_images").rglob("*.dcm")) + sorted((clean / "test_images").rglob("*.dcm"))
    assert len(files) == 6 * (2 * 17 + 5 * 5)
    for path in files:
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert (ds.Modality, ds.PhotometricInterpretation, ds.BitsAllocated, ds.BitsStored) == (
            "MR",
            "MONOCHROME2",
            16,
            12,
        )
        assert ds.pixel_array.shape == (96, 96) and ds.pixel_array.dtype == np.uint16
        assert int(path.stem) == ds.InstanceNumber
        assert (
            str(ds.PatientName) and ds.PatientID and ds.PatientBirthDate and ds.PatientAddress
        )  # planted fake PHI
        for tag in (
            "ImagePositionPatient",
            "ImageOrientationPatient",
            "PixelSpacing",
            "SliceThickness",
            "SpacingBetweenSlices",
            "SeriesDescription",
            "StudyInstanceUID",
            "SOPInstanceUID",
        ):
            assert tag in ds, (path, tag)
        iop = [float(v) for v in ds.ImageOrientationPatient]
        if ds.SeriesDescription.startswith("Sagittal"):
            assert iop == [0, 1, 0, 0, 0, -1]
        else:
            assert iop[:3] == [1, 0, 0] and abs(iop[3]) < 1e-9 and iop[4] > 0.9


def test_coordinates_sit_on_the_structure_they_grade(clean):
    """At a Normal/Mild point the graded structure is open: CSF (T2) or fat (T1) is bright there."""
    labels = {int(r["study_id"]): r for r in _rows(clean / TRAIN_CSV)}
    checked = 0
    for r in _rows(clean / COORDINATES_CSV):
        stem = r["condition"].lower().replace(" ", "_") + "_" + r["level"].lower().replace("/", "_")
        if labels[int(r["study_id"])][stem] != "Normal/Mild":
            continue
        img = pydicom.dcmread(
            clean / "train_images" / r["study_id"] / r["series_id"] / f"{r['instance_number']}.dcm"
        ).pixel_array.astype(float)
        x, y = float(r["x"]), float(r["y"])
        assert 0 <= x < 96 and 0 <= y < 96
        patch = img[int(round(y)) - 1 : int(round(y)) + 2, int(round(x)) - 1 : int(round(x)) + 2]
        assert patch.max() > 1.6 * np.median(img), r
        checked += 1
    assert checked > 40


def test_same_seed_same_bytes(tmp_path):
    digests = []
    for name in ("a", "b"):
        generate_dataset(tmp_path / name, n_studies=2, seed=11, n_test_studies=1, **SMALL)
        h = hashlib.sha256()
        for p in sorted((tmp_path / name).rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(tmp_path / name)).encode() + p.read_bytes())
        digests.append(h.hexdigest())
    assert digests[0] == digests[1]
    generate_dataset(tmp_path / "c", n_studies=2, seed=12, n_test_studies=1, **SMALL)
    assert (tmp_path / "c" / TRAIN_CSV).read_bytes() != (tmp_path / "a" / TRAIN_CSV).read_bytes()


def test_refuses_to_overwrite_without_asking(clean):
    with pytest.raises(FileExistsError):
        generate_dataset(clean, n_studies=1, **SMALL)


def test_every_fault_is_planted_and_recorded(faulty):
    manifest = read_manifest(faulty)
    assert json.loads((faulty / MANIFEST).read_text())["faults_enabled"] is True
    by_kind = {}
    for f in manifest["faults"]:
        by_kind.setdefault(f["kind"], []).append(f)
    assert set(by_kind) == set(FAULT_KINDS)
    for f in by_kind["missing_series"]:
        assert not (faulty / f["path"]).exists()
        assert any(r["series_id"] == str(f["series_id"]) for r in _rows(faulty / SERIES_CSV))
    for f in by_kind["non_dicom_file"]:
        with pytest.raises(pydicom.errors.InvalidDicomError):
            pydicom.dcmread(faulty / f["path"])
    for f in by_kind["truncated_dicom"]:
        with pytest.raises(Exception):  # noqa: B017 - the error depends on the transfer syntax
            _ = pydicom.dcmread(faulty / f["path"]).pixel_array
    for f in by_kind["coordinate_off_image"]:
        instance = (
            faulty / "train_images" / str(f["study_id"]) / str(f["series_id"]) / f"{f['instance_number']}.dcm"
        )
        assert f["x"] > pydicom.dcmread(instance, stop_before_pixels=True).Columns + 100
    for f in by_kind["non_contiguous_instances"]:
        numbers = sorted(int(p.stem) for p in (faulty / f["path"]).glob("*.dcm"))
        assert numbers != list(range(1, len(numbers) + 1))
    for f in by_kind["axial_two_stacks"]:
        iops = {
            tuple(
                round(float(v), 4)
                for v in pydicom.dcmread(p, stop_before_pixels=True).ImageOrientationPatient
            )
            for p in (faulty / f["path"]).glob("*.dcm")
            if p.stat().st_size > 1000
        }
        assert len(iops) >= 2
    for f in by_kind["lr_foraminal_same_instance"]:
        rows = [
            r
            for r in _rows(faulty / COORDINATES_CSV)
            if r["study_id"] == str(f["study_id"])
            and r["level"] == f["level"]
            and "Foraminal" in r["condition"]
        ]
        assert len({r["instance_number"] for r in rows}) == 1 and len(rows) == 2
    for f in by_kind["missing_spacing_tags"]:
        ds = pydicom.dcmread(next((faulty / f["path"]).glob("*.dcm")), stop_before_pixels=True)
        assert "SliceThickness" not in ds and "SpacingBetweenSlices" not in ds


def test_class_shares_and_blanks_follow_the_real_data():
    true, written = sample_labels(np.random.default_rng(0), 4000)
    for cat, shares in REAL_CLASS_SHARES.items():
        cols = [j for j, c in enumerate(CELLS) if c[1] == cat]
        counts = np.array([(true[:, cols] == k).sum() for k in range(3)], dtype=float)
        assert np.allclose(counts / counts.sum(), shares, atol=0.01), cat
    blank = (written < 0).mean()
    assert 0.012 < blank < 0.03
    kept = written >= 0
    assert 0.02 < (written[kept] != true[kept]).mean() < 0.06  # label noise
