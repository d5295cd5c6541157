from __future__ import annotations

from pathlib import Path

from lss_pipeline.core import label_watch
from lss_pipeline.core.constants import COORDINATES_CSV, LABEL_FILES, SERIES_CSV, TRAIN_CSV
from lss_pipeline.core.label_watch import read_label_snapshot
from lss_pipeline.core.paths import Paths


def label_files(raw: Path) -> tuple[Path, ...]:
    return Paths(data_dir=raw.parent, raw_dir=raw).label_files


def snapshot(raw: Path, settle_seconds: float = 0) -> label_watch.LabelSnapshot:
    return read_label_snapshot(label_files(raw), settle_seconds=settle_seconds)


def write_labels(raw: Path, train_text: str = "study_id,x\n1,Normal/Mild\n") -> None:
    raw.mkdir(parents=True, exist_ok=True)
    (raw / TRAIN_CSV).write_text(train_text)
    (raw / COORDINATES_CSV).write_text(
        "study_id,series_id,instance_number,condition,level,x,y\n1,2,3,c,L1/L2,4,5\n"
    )
    (raw / SERIES_CSV).write_text("study_id,series_id,series_description\n1,2,Sagittal T1\n")


def test_hash_is_stable_and_content_based(tmp_path):
    write_labels(tmp_path / "a")
    write_labels(tmp_path / "b")
    snap_a = snapshot(tmp_path / "a")
    snap_b = snapshot(tmp_path / "b")
    assert snap_a.ok and snap_b.ok
    assert len(snap_a.labels_hash) == 64
    # Same names and contents in another folder, written at another time: same hash.
    assert snap_a.labels_hash == snap_b.labels_hash
    assert [f.name for f in snap_a.files] == list(LABEL_FILES)


def test_edit_changes_hash(tmp_path):
    write_labels(tmp_path)
    before = snapshot(tmp_path).labels_hash
    (tmp_path / COORDINATES_CSV).write_text((tmp_path / COORDINATES_CSV).read_text() + "1,2,4,c,L2/L3,6,7\n")
    after = snapshot(tmp_path).labels_hash
    assert before != after


def test_swapping_contents_between_files_changes_hash(tmp_path):
    write_labels(tmp_path)
    before = snapshot(tmp_path).labels_hash
    train = (tmp_path / TRAIN_CSV).read_text()
    series = (tmp_path / SERIES_CSV).read_text()
    (tmp_path / TRAIN_CSV).write_text(series)
    (tmp_path / SERIES_CSV).write_text(train)
    assert snapshot(tmp_path).labels_hash != before


def test_missing_file_names_it(tmp_path):
    write_labels(tmp_path)
    (tmp_path / SERIES_CSV).unlink()
    snap = snapshot(tmp_path)
    assert snap.status == "missing" and snap.labels_hash is None
    assert SERIES_CSV in snap.reason and str(tmp_path) in snap.reason


def test_file_growing_between_reads_is_unstable(tmp_path, monkeypatch):
    write_labels(tmp_path)

    def append_meanwhile(seconds: float) -> None:
        with (tmp_path / TRAIN_CSV).open("a") as handle:
            handle.write("2,Moderate\n")

    monkeypatch.setattr(label_watch, "_pause", append_meanwhile)
    snap = snapshot(tmp_path, settle_seconds=0.01)
    assert snap.status == "unstable" and snap.labels_hash is None
    assert TRAIN_CSV in snap.reason and "still being written" in snap.reason


def test_empty_file_is_unstable(tmp_path):
    write_labels(tmp_path)
    (tmp_path / TRAIN_CSV).write_text("")
    snap = snapshot(tmp_path)
    assert snap.status == "unstable" and TRAIN_CSV in snap.reason


def test_settle_pause_is_taken(tmp_path, monkeypatch):
    write_labels(tmp_path)
    pauses: list[float] = []
    monkeypatch.setattr(label_watch, "_pause", pauses.append)
    assert snapshot(tmp_path, settle_seconds=0.25).ok
    assert pauses == [0.25]
