"""Folder scan: every file is a row or a quarantine row with the right reason; no PHI; pool == one process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian

from lss_pipeline.core import synth
from lss_pipeline.core.dicom.layout import list_image_files
from lss_pipeline.core.dicom.scan import scan_dicom_folder, scan_files
from lss_pipeline.core.dicom.schema import ERROR_TYPES, METADATA_SCHEMA, QUARANTINE_SCHEMA

from .fakes import FAKE_PHI, paths_for, write_mr

PYDICOM_TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"

# Planted files of the small raw folder: relative path -> expected quarantine error_type (None = row).
EXPECTED = {
    "train_images/100/200/1.dcm": None,
    "train_images/100/200/2.dcm": None,
    "train_images/100/200/3.dcm": None,
    "train_images/100/201/1.dcm": None,  # RLE copy of pydicom's MR_small
    "test_images/300/400/1.dcm": None,
    "train_images/100/200/4.dcm": "not_dicom",
    "train_images/100/200/5.dcm": "truncated",
    "train_images/100/200/6.dcm": "missing_tags",
    "train_images/100/200/7.dcm": "bad_geometry",
    "train_images/100/200/8.dcm": "unsupported_pixel_layout",
    "train_images/100/200/9.dcm": "no_pixel_data",
    "train_images/100/200/10.dcm": "empty",
    "train_images/100/200/11.dcm": "truncated",  # cut at 400 bytes, inside the header
    "train_images/abc/200/1.dcm": "bad_path",
    "train_images/100/200/notes.txt": "bad_path",
}


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    series = raw / "train_images/100/200"
    for i in (1, 2, 3):
        write_mr(series / f"{i}.dcm", instance=i, ipp=(10.0 + 4 * i, -20.0, 30.0))
    (raw / "train_images/100/201").mkdir(parents=True)
    shutil.copy(get_testdata_file("MR_small_RLE.dcm"), raw / "train_images/100/201/1.dcm")
    write_mr(raw / "test_images/300/400/1.dcm", iop=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0))
    (series / "4.dcm").write_bytes(b"this is not a DICOM file\n" * 40)
    truncated = write_mr(series / "5.dcm").read_bytes()
    (series / "5.dcm").write_bytes(truncated[:-50])
    write_mr(series / "6.dcm", drop=("ImagePositionPatient",))
    write_mr(series / "7.dcm", iop=(1.0, 0.0, 0.0, 1.0, 0.0, 0.0))  # row == col: no normal
    write_mr(series / "8.dcm", NumberOfFrames=2, pixels=np.zeros((2, 12, 10), np.uint16))
    write_mr(series / "9.dcm", drop=("PixelData",))
    (series / "10.dcm").write_bytes(b"")
    (series / "11.dcm").write_bytes(write_mr(series / "11.dcm").read_bytes()[:400])
    write_mr(raw / "train_images/abc/200/1.dcm")
    (series / "notes.txt").write_text("stray file")
    (series / ".hidden.dcm").write_text("hidden files are not scanned")
    (raw / "train_series_descriptions.csv").write_text(
        "study_id,series_id,series_description\r\n100,200,Sagittal T1\r\n100,201,Axial T2\r\n"
    )
    (raw / "test_series_descriptions.csv").write_text(
        "study_id,series_id,series_description\n300,400,Axial T2\n"
    )
    return raw


@pytest.fixture(scope="module")
def scanned(raw_dir):
    calls: list[tuple[int, int]] = []
    metadata, quarantine = scan_dicom_folder(
        paths_for(raw_dir), workers=2, progress=lambda done, total: calls.append((done, total))
    )
    return metadata, quarantine, calls


def test_every_file_is_a_row_or_a_quarantine_row(scanned):
    metadata, quarantine, calls = scanned
    assert dict(metadata.schema) == METADATA_SCHEMA
    assert dict(quarantine.schema) == QUARANTINE_SCHEMA
    assert sorted(metadata["path"]) == sorted(p for p, e in EXPECTED.items() if e is None)
    got = dict(zip(quarantine["path"], quarantine["error_type"]))
    assert got == {p: e for p, e in EXPECTED.items() if e is not None}
    assert set(quarantine["stage"]) == {"dicom_metadata"}
    assert all(len(m) > 10 for m in quarantine["message"])
    assert calls and calls[-1] == (len(EXPECTED), len(EXPECTED))


def test_geometry_and_ids(scanned, raw_dir):
    metadata, _, _ = scanned
    row = metadata.filter(pl.col("path") == "train_images/100/200/2.dcm").row(0, named=True)
    ids = (row["study_id"], row["series_id"], row["instance_number"], row["instance_number_tag"])
    assert ids == (100, 200, 2, 2)
    assert row["split"] == "train" and row["series_description"] == "Sagittal T1"
    assert (row["rows"], row["columns"]) == (12, 10)
    assert (row["pixel_spacing_row"], row["pixel_spacing_col"]) == (0.5, 0.8)
    assert (row["ipp_x"], row["ipp_y"], row["ipp_z"]) == (18.0, -20.0, 30.0)
    # row (0,1,0) x col (0,0,-1) = (-1,0,0): a sagittal slice; position along it = -ipp_x
    assert (row["normal_x"], row["normal_y"], row["normal_z"]) == (-1.0, 0.0, 0.0)
    assert row["slice_position"] == -18.0
    assert (row["slice_thickness"], row["spacing_between_slices"]) == (4.0, 4.4)
    assert row["transfer_syntax_uid"] == ExplicitVRLittleEndian
    assert (row["bits_allocated"], row["bits_stored"], row["samples_per_pixel"]) == (16, 12, 1)
    assert row["modality"] == "MR" and row["photometric_interpretation"] == "MONOCHROME2"
    assert row["file_size_bytes"] == (raw_dir / row["path"]).stat().st_size
    test_row = metadata.filter(pl.col("split") == "test").row(0, named=True)
    assert test_row["series_description"] == "Axial T2" and test_row["normal_z"] == 1.0
    rle = metadata.filter(pl.col("series_id") == 201).row(0, named=True)
    assert rle["transfer_syntax_uid"] == pydicom.uid.RLELossless and rle["series_description"] == "Axial T2"


def test_no_phi_in_outputs(scanned, tmp_path):
    metadata, quarantine, _ = scanned
    phi_columns = {"patient_name", "patient_id", "patient_birth_date", "patient_address", "other_patient_ids"}
    for df in (metadata, quarantine):
        assert not phi_columns & {c.lower() for c in df.columns}
        other = [c for c in df.columns if c != "transfer_syntax_uid"]
        assert not any(c.split("_")[-1] == "uid" or "patient" in c for c in other)
    metadata.write_parquet(tmp_path / "m.parquet")
    quarantine.write_parquet(tmp_path / "q.parquet")
    blob = (tmp_path / "m.parquet").read_bytes() + (tmp_path / "q.parquet").read_bytes()
    dump = json.dumps(metadata.to_dicts() + quarantine.to_dicts(), default=str)
    for value in FAKE_PHI.values():
        assert value not in dump
        assert value.encode() not in blob


def test_pool_and_single_process_agree(scanned, raw_dir):
    metadata, quarantine, _ = scanned
    single_md, single_q = scan_dicom_folder(paths_for(raw_dir), workers=1)
    assert single_md.equals(metadata) and single_q.equals(quarantine)


def test_empty_folder_gives_empty_tables(tmp_path):
    metadata, quarantine = scan_dicom_folder(paths_for(tmp_path))
    assert metadata.height == 0 and quarantine.height == 0
    assert dict(metadata.schema) == METADATA_SCHEMA


# ----------------------------------------------------------------------------- pydicom's test files


@pytest.fixture(scope="module")
def pydicom_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("pydicom_raw")
    names = sorted(PYDICOM_TEST_FILES.glob("*.dcm"))
    assert len(names) > 50, "pydicom's bundled test files are missing"
    folder = root / "train_images/1/2"
    folder.mkdir(parents=True)
    rel_of: dict[str, str] = {}
    for i, src in enumerate(names, start=1):
        shutil.copy(src, folder / f"{i}.dcm")
        rel_of[src.name] = f"train_images/1/2/{i}.dcm"
    return root, rel_of


def test_pydicom_test_files_never_crash(pydicom_files):
    root, rel_of = pydicom_files
    metadata, quarantine = scan_files(rel_of.values(), root, workers=2)
    row_paths, bad_paths = list(metadata["path"]), list(quarantine["path"])
    assert sorted(row_paths + bad_paths) == sorted(rel_of.values())  # each file exactly once
    assert set(quarantine["error_type"]) <= set(ERROR_TYPES)
    assert all(m for m in quarantine["message"])
    reason = dict(zip(quarantine["path"], quarantine["error_type"]))
    for name in (
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "CT_small.dcm",
    ):
        assert rel_of[name] in row_paths, (name, reason.get(rel_of[name]))
    expected_reasons = {
        "MR_truncated.dcm": "truncated",
        "rtplan.dcm": "missing_tags",
        "rtdose.dcm": "unsupported_pixel_layout",  # 15 frames
        "no_meta.dcm": "not_dicom",
    }
    for name, error_type in expected_reasons.items():
        assert reason[rel_of[name]] == error_type, name
    small = metadata.filter(pl.col("path") == rel_of["MR_small.dcm"]).row(0, named=True)
    ref = pydicom.dcmread(get_testdata_file("MR_small.dcm"), stop_before_pixels=True)
    assert (small["rows"], small["columns"]) == (ref.Rows, ref.Columns)
    assert [small["ipp_x"], small["ipp_y"], small["ipp_z"]] == [float(v) for v in ref.ImagePositionPatient]
    assert [small["pixel_spacing_row"], small["pixel_spacing_col"]] == [float(v) for v in ref.PixelSpacing]


# ----------------------------------------------------------------------------- synthetic set with faults


@pytest.fixture(scope="module")
def synth_faults(tmp_path_factory):
    raw = tmp_path_factory.mktemp("synth") / "raw"
    synth.generate_dataset(
        raw,
        n_studies=3,
        seed=5,
        faults=True,
        n_test_studies=1,
        workers=1,
        rows=64,
        sagittal_slices=7,
        axial_slices_per_level=2,
    )
    return raw, synth.read_manifest(raw)


def test_synthetic_faults_are_quarantined_and_the_rest_is_sane(synth_faults):
    raw, manifest = synth_faults
    expected_type = {"non_dicom_file": "not_dicom", "truncated_dicom": "truncated"}
    planted = {f["path"]: expected_type[f["kind"]] for f in manifest["faults"] if f["kind"] in expected_type}
    assert set(planted.values()) == set(expected_type.values()), manifest["faults"]
    metadata, quarantine = scan_dicom_folder(paths_for(raw), workers=2)
    assert dict(zip(quarantine["path"], quarantine["error_type"])) == planted
    assert metadata.height + quarantine.height == len(list_image_files(paths_for(raw)))

    assert metadata["series_description"].null_count() == 0
    assert set(metadata["split"]) == {"train", "test"}
    assert (metadata["rows"] == 64).all() and (metadata["columns"] == 64).all()
    assert (metadata["pixel_spacing_row"] > 0).all() and (metadata["pixel_spacing_col"] > 0).all()
    assert (metadata["modality"] == "MR").all()
    assert (metadata["photometric_interpretation"] == "MONOCHROME2").all()
    assert (metadata["bits_allocated"] == 16).all()
    normal_norm = (metadata["normal_x"] ** 2 + metadata["normal_y"] ** 2 + metadata["normal_z"] ** 2).sqrt()
    assert ((normal_norm - 1).abs() < 1e-4).all()
    sagittal = metadata.filter(pl.col("series_description").str.starts_with("Sagittal"))
    axial = metadata.filter(pl.col("series_description") == "Axial T2")
    assert (sagittal["normal_x"].abs() > 0.9).all() and (axial["normal_z"].abs() > 0.7).all()
    # slices of one series lie at distinct positions along its normal
    per_series = metadata.group_by("series_id").agg(
        pl.len(), pl.col("slice_position").n_unique().alias("n_pos")
    )
    assert (per_series["len"] == per_series["n_pos"]).all()
    missing_spacing = [f["path"] for f in manifest["faults"] if f["kind"] == "missing_spacing_tags"]
    assert missing_spacing, manifest["faults"]
    for series_path in missing_spacing:
        rows = metadata.filter(pl.col("path").str.starts_with(series_path + "/"))
        assert rows.height > 0 and rows["slice_thickness"].null_count() == rows.height

    one = pydicom.dcmread(raw / metadata["path"][0], stop_before_pixels=True)
    dump = json.dumps(metadata.to_dicts(), default=str)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "SOPInstanceUID"):
        if keyword in one and str(one.get(keyword)):
            assert str(one.get(keyword)) not in dump, keyword


def test_linked_study_folders_are_read_and_link_loops_end(tmp_path):
    """A study kept on another disk and linked into train_images/ is scanned (os.walk skipped it
    silently); a link back to an ancestor folder does not loop."""
    raw = tmp_path / "raw"
    write_mr(raw / "train_images" / "100" / "200" / "1.dcm")
    elsewhere = tmp_path / "other_disk" / "101"
    write_mr(elsewhere / "201" / "1.dcm")
    (raw / "train_images" / "101").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "201" / "loop").symlink_to(raw / "train_images", target_is_directory=True)
    paths = paths_for(raw)
    assert list_image_files(paths) == ["train_images/100/200/1.dcm", "train_images/101/201/1.dcm"]
    metadata, quarantine = scan_dicom_folder(paths, workers=1)
    assert sorted(metadata["study_id"].to_list()) == [100, 101] and quarantine.is_empty()


def test_one_instance_under_two_names_is_kept_once(tmp_path):
    """1.dcm and 01.dcm (a merged export) are one instance: 1.dcm stays, 01.dcm is quarantined, so labels
    and crops never meet two rows for one instance number."""
    raw = tmp_path / "raw"
    series = raw / "train_images" / "100" / "200"
    write_mr(series / "1.dcm")
    shutil.copy(series / "1.dcm", series / "01.dcm")
    write_mr(series / "2.dcm", instance=2)
    metadata, quarantine = scan_dicom_folder(paths_for(raw), workers=1)
    assert metadata["path"].to_list() == ["train_images/100/200/1.dcm", "train_images/100/200/2.dcm"]
    assert quarantine.select("path", "error_type").rows() == [
        ("train_images/100/200/01.dcm", "duplicate_instance")
    ]
    assert "train_images/100/200/1.dcm, which is kept" in quarantine["message"][0]
