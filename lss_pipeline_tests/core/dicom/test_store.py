"""Publishing the DICOM tables: fail fast, never nothing over something, both tables together."""

from __future__ import annotations

import polars as pl
import pytest

from lss_pipeline.core.dicom import store
from lss_pipeline.core.labels.tables import LabelValidationError
from lss_pipeline.core.paths import Paths

from .fakes import FAKE_PHI, write_mr

N_GOOD = 20


def add_images(paths: Paths, n: int, first_series: int = 200) -> None:
    for i in range(n):
        write_mr(paths.train_images / "100" / str(first_series) / f"{i + 1}.dcm", instance=i + 1)


@pytest.fixture()
def paths(tmp_path) -> Paths:
    return Paths(data_dir=tmp_path / "data", raw_dir=tmp_path / "raw")


@pytest.fixture()
def published(paths) -> Paths:
    add_images(paths, N_GOOD)
    (paths.train_images / "100" / "200" / "99.dcm").write_bytes(b"")
    store.ingest_dicom_folder(paths, workers=1)
    return paths


def _tables(paths: Paths) -> tuple[bytes, bytes]:
    return paths.dicom_metadata.read_bytes(), paths.quarantine.read_bytes()


def test_publishes_both_tables_and_reads_them_back(published):
    metadata, quarantine = store.read_metadata(published)
    assert metadata.height == N_GOOD and quarantine["error_type"].to_list() == ["empty"]
    assert sorted(p.name for p in published.processed_dir.iterdir()) == [
        "dicom_metadata.parquet",
        "quarantine.parquet",
    ]
    blob = b"".join(_tables(published))
    assert not any(value.encode() in blob for value in FAKE_PHI.values())


def test_missing_image_folders_fail_before_the_scan_and_keep_the_tables(published, monkeypatch):
    before = _tables(published)
    for folder in (published.train_images,):
        for path in sorted(folder.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        folder.rmdir()
    published.train_csv.write_text("study_id\n")  # the raw folder is still an RSNA folder
    monkeypatch.setattr(store, "scan_dicom_folder", lambda *a, **k: pytest.fail("scanned nothing"))
    with pytest.raises(store.NoImagesError) as info:
        store.ingest_dicom_folder(published)
    message = str(info.value)
    assert "no image files" in message and "train_images/ is missing, test_images/ is missing" in message
    assert f"({N_GOOD} instances) is left as it is" in message and "allow_empty" in message
    assert _tables(published) == before


def test_all_files_unreadable_keeps_the_tables(published):
    before = _tables(published)
    for path in published.train_images.rglob("*.dcm"):
        path.write_bytes(b"x" * 10)
    with pytest.raises(store.NoImagesError, match=r"0 of 21 image files .* readable .*'not_dicom': 21"):
        store.ingest_dicom_folder(published, workers=1)
    assert _tables(published) == before


def test_a_near_empty_scan_does_not_replace_a_full_table(published):
    for path in published.train_images.rglob("*.dcm"):
        path.unlink()
    add_images(published, 1, first_series=201)
    with pytest.raises(store.NoImagesError, match=f"1 readable instances .* published table has {N_GOOD}"):
        store.ingest_dicom_folder(published, workers=1)


def test_allow_empty_publishes_and_the_quarantine_check_does_not_pass_at_zero_of_zero(paths):
    paths.raw_dir.mkdir(parents=True)
    paths.train_csv.write_text("study_id\n")
    result = store.ingest_dicom_folder(paths, allow_empty=True)
    assert result.metadata.height == 0 and paths.dicom_metadata.is_file()
    facts = store.quarantine_share(*store.read_metadata(paths), max_share=0.05)
    assert facts["passed"] is False and facts["files"] == 0 and "0 of 0" in facts["description"]


def test_quarantine_share_against_the_bound():
    metadata = pl.DataFrame({"path": [f"{i}" for i in range(19)]})
    quarantine = pl.DataFrame({"path": ["x"], "error_type": ["truncated"]})
    assert store.quarantine_share(metadata, quarantine, 0.05)["passed"]  # 1 of 20 = 5 %
    assert not store.quarantine_share(metadata.head(9), quarantine, 0.05)["passed"]  # 1 of 10


def test_a_bad_series_csv_fails_before_the_scan(paths, monkeypatch):
    add_images(paths, 2)
    paths.series_csv.write_text("study_id,series_id,series_description\n100,200,Sagittal T3\n")
    monkeypatch.setattr(store, "scan_dicom_folder", lambda *a, **k: pytest.fail("scanned before the CSV"))
    with pytest.raises(LabelValidationError, match="data row 1 .* 'series_description'"):
        store.ingest_dicom_folder(paths)


def test_an_unwritable_output_folder_fails_before_the_scan(paths, monkeypatch):
    add_images(paths, 2)
    paths.data_dir.mkdir(parents=True)
    paths.processed_dir.write_text("a file where the output folder should be")
    monkeypatch.setattr(store, "scan_dicom_folder", lambda *a, **k: pytest.fail("scanned before checking"))
    with pytest.raises(PermissionError, match=f"cannot write to {paths.processed_dir}"):
        store.ingest_dicom_folder(paths)


def test_stale_temp_files_are_removed(published):
    stale = published.processed_dir / ".quarantine.parquet.k1ll3d00.tmp.parquet"
    stale.write_bytes(b"half")
    store.ingest_dicom_folder(published, workers=1)
    assert not stale.exists()


def test_reading_before_publishing_names_the_asset(paths):
    with pytest.raises(FileNotFoundError, match="materialize the `dicom_metadata` asset first"):
        store.read_metadata(paths)


def test_publish_checks_the_schema(published):
    metadata, quarantine = store.read_metadata(published)
    with pytest.raises(ValueError, match="schema"):
        store.publish_metadata(metadata.drop("path"), quarantine, published)


def test_a_header_only_series_csv_fails_before_the_scan(paths, monkeypatch):
    """test_series_descriptions.csv with a header and no rows left every test image undescribed."""
    add_images(paths, 2)
    write_mr(paths.test_images / "300" / "400" / "1.dcm")
    paths.series_csv.write_text("study_id,series_id,series_description\n100,200,Sagittal T1\n")
    paths.test_series_csv.write_text("study_id,series_id,series_description\n")
    monkeypatch.setattr(store, "scan_dicom_folder", lambda *a, **k: pytest.fail("scanned before the CSV"))
    expected = r"test_series_descriptions.csv has a header and 0 series rows while test_images/ holds 1 image"
    with pytest.raises(store.NoImagesError, match=expected):
        store.ingest_dicom_folder(paths)
    monkeypatch.undo()
    result = store.ingest_dicom_folder(paths, workers=1, allow_empty=True)  # on purpose: published
    assert result.metadata.filter(pl.col("split") == "test")["series_description"].is_null().all()
