"""A study folder read on its own: series types from the DICOMs, bad files skipped, clear errors."""

import shutil

import pytest

from lss_pipeline.core.predict.study import NotAStudyError, normalise_description, scan_study_folder


def copy_study(tiny_set, tmp_path, name=None):
    source = sorted(p for p in tiny_set.settings.paths.test_images.iterdir() if p.is_dir())[0]
    target = tmp_path / (name or source.name)
    shutil.copytree(source, target)
    return target


def test_series_types_come_from_the_dicoms(tiny_set, tmp_path):
    folder = copy_study(tiny_set, tmp_path)
    scan = scan_study_folder(folder)
    assert scan.study_id == int(folder.name)
    assert sorted(scan.descriptions.values()) == ["Axial T2", "Sagittal T1", "Sagittal T2/STIR"]
    assert scan.missing_types() == [] and scan.quarantine.height == 0
    assert {p.split("/")[0] for p in scan.metadata["path"]} == {str(s) for s in scan.descriptions}


def test_a_non_dicom_file_is_skipped_and_named(tiny_set, tmp_path):
    folder = copy_study(tiny_set, tmp_path)
    series = sorted(p for p in folder.iterdir())[0]
    (series / "999.dcm").write_text("exported notes, not an image\n")
    (series / "README.txt").write_text("hello\n")
    scan = scan_study_folder(folder)
    assert sorted(scan.quarantine["path"].to_list()) == [
        f"{series.name}/999.dcm",
        f"{series.name}/README.txt",
    ]
    assert set(scan.quarantine["error_type"]) == {"not_dicom", "bad_path"}
    assert scan.metadata.height > 0 and scan.missing_types() == []


def test_a_missing_series_type_is_reported(tiny_set, tmp_path):
    folder = copy_study(tiny_set, tmp_path)
    scan = scan_study_folder(folder)
    t1 = next(s for s, d in scan.descriptions.items() if d == "Sagittal T1")
    shutil.rmtree(folder / str(t1))
    assert scan_study_folder(folder).missing_types() == ["Sagittal T1"]


def test_a_csv_description_wins_over_the_tag(tiny_set, tmp_path):
    folder = copy_study(tiny_set, tmp_path)
    scan = scan_study_folder(folder)
    axial = next(s for s, d in scan.descriptions.items() if d == "Axial T2")
    relabelled = scan_study_folder(folder, series_descriptions={axial: "Sagittal T1"})
    assert relabelled.descriptions[axial] == "Sagittal T1"


def test_folders_that_are_not_a_study(tmp_path):
    with pytest.raises(NotAStudyError, match="not a folder"):
        scan_study_folder(tmp_path / "missing", study_id=1)
    (tmp_path / "123" / "7").mkdir(parents=True)
    (tmp_path / "123" / "7" / "1.dcm").write_bytes(b"")
    (tmp_path / "123" / "notes.txt").write_text("x")
    with pytest.raises(NotAStudyError, match=r"no readable DICOM.*1 unusable file.*7/1.dcm.*notes.txt"):
        scan_study_folder(tmp_path / "123")
    (tmp_path / "patient").mkdir()
    with pytest.raises(NotAStudyError, match="not a study id"):
        scan_study_folder(tmp_path / "patient")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Sagittal T2/STIR", "Sagittal T2/STIR"),
        ("SAG T2 STIR", "Sagittal T2/STIR"),
        ("sag_t1_tse", "Sagittal T1"),
        ("AX T2 FSE", "Axial T2"),
        ("t2_tse_tra", "Axial T2"),
        ("localizer", None),
        (None, None),
    ],
)
def test_free_text_descriptions(text, expected):
    assert normalise_description(text) == expected
