"""Publishing labels: never an empty table over a good one; labels + stats together, one writer at a time."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import polars as pl
import pytest

from lss_pipeline.core import atomic
from lss_pipeline.core.constants import COORDINATES_CSV_HEADER, SERIES_CSV_HEADER, TRAIN_CSV_HEADER
from lss_pipeline.core.labels import store
from lss_pipeline.core.paths import Paths


def write_raw(
    raw: Path, n_studies: int, *, coordinates: bool = True, series: bool = True, blank: bool = False
):
    raw.mkdir(parents=True, exist_ok=True)
    severity = "" if blank else "Normal/Mild"
    train = [",".join(TRAIN_CSV_HEADER)] + [
        ",".join([str(100 + s), "Moderate" if not blank else ""] + [severity] * 24) for s in range(n_studies)
    ]
    coords = [",".join(COORDINATES_CSV_HEADER)] + (
        [f"{100 + s},{7000 + s},3,Spinal Canal Stenosis,L1/L2,10,20" for s in range(n_studies)]
        if coordinates
        else []
    )
    described = [",".join(SERIES_CSV_HEADER)] + (
        [f"{100 + s},{7000 + s},Sagittal T2/STIR" for s in range(n_studies)] if series else []
    )
    for path, lines in ((raw / "train.csv", train), (raw / "train_label_coordinates.csv", coords),
                        (raw / "train_series_descriptions.csv", described)):  # fmt: skip
        path.write_text("\r\n".join(lines) + "\r\n")
    return raw


@pytest.fixture()
def paths(tmp_path) -> Paths:
    return Paths(data_dir=tmp_path / "data", raw_dir=tmp_path / "raw")


@pytest.fixture()
def published(paths) -> Paths:
    """A good 30-study table already published."""
    write_raw(paths.raw_dir, 30)
    store.ingest_labels(paths)
    return paths


def _published_studies(paths: Paths) -> int:
    return pl.read_parquet(paths.labels)["study_id"].n_unique()


def test_ingest_publishes_labels_and_stats_together(published):
    assert _published_studies(published) == 30
    assert json.loads(published.labels_stats.read_text())["n_studies"] == 30
    assert sorted(p.name for p in published.processed_dir.iterdir()) == [
        "labels.parquet",
        "labels_stats.json",
    ]


@pytest.mark.parametrize(
    "kwargs, says",
    [
        ({"n_studies": 0}, "train.csv has a header and 0 study rows"),
        (
            {"n_studies": 30, "coordinates": False},
            "train_label_coordinates.csv has a header and 0 coordinate rows",
        ),
        ({"n_studies": 30, "series": False}, "train_series_descriptions.csv has a header and 0 series rows"),
        ({"n_studies": 30, "blank": True}, "every label cell is blank"),
        ({"n_studies": 2}, "train.csv has 2 studies where the published table has 30"),
    ],
)
def test_header_only_or_near_empty_inputs_never_replace_a_good_table(published, kwargs, says):
    before = (published.labels.read_bytes(), published.labels_stats.read_bytes())
    write_raw(published.raw_dir, **kwargs)
    with pytest.raises(store.EmptyLabelsError) as info:
        store.ingest_labels(published)
    message = str(info.value)
    assert says in message and "labels.parquet (30 studies) is left as it is" in message, message
    assert "allow_empty" in message
    assert (published.labels.read_bytes(), published.labels_stats.read_bytes()) == before


def test_allow_empty_publishes_on_purpose(published):
    write_raw(published.raw_dir, 0)
    labels, stats, _ = store.ingest_labels(published, allow_empty=True)
    assert labels.height == 0 and pl.read_parquet(published.labels).height == 0
    assert json.loads(published.labels_stats.read_text())["n_studies"] == 0


def test_stale_temp_files_of_a_killed_write_are_removed(published):
    stale = [
        published.processed_dir / ".labels.parquet.k1ll3d00.tmp.parquet",
        published.processed_dir / ".labels_stats.json.k1ll3d00.tmp.json",
    ]
    for path in stale:
        path.write_bytes(b"half a file")
    other = published.processed_dir / ".dicom_metadata.parquet.abcdefgh.tmp.parquet"  # another asset's
    other.write_bytes(b"not ours")
    store.ingest_labels(published)
    assert not any(p.exists() for p in stale) and other.exists()


def test_a_failing_write_leaves_both_files_as_they_were(published, monkeypatch):
    before = (published.labels.read_bytes(), published.labels_stats.read_bytes())
    real_write_together = atomic.write_together

    def stats_write_fails(writers):
        def broken(tmp: Path) -> None:
            raise OSError("disk full")

        return real_write_together({**writers, published.labels_stats: broken})

    monkeypatch.setattr(atomic, "write_together", stats_write_fails)
    write_raw(published.raw_dir, 31)
    with pytest.raises(OSError, match="disk full"):
        store.ingest_labels(published)
    assert (published.labels.read_bytes(), published.labels_stats.read_bytes()) == before
    assert sorted(p.name for p in published.processed_dir.iterdir()) == [
        "labels.parquet",
        "labels_stats.json",
    ]


def test_writers_of_one_data_folder_take_turns(published, monkeypatch):
    """A second run waits while the first is between its two files; the pair is never mixed."""
    first_inside, release_first = threading.Event(), threading.Event()
    real_write_together = atomic.write_together
    calls = []

    def slow_first(writers):
        calls.append(1)
        if len(calls) == 1:
            first_inside.set()
            assert release_first.wait(10)
        return real_write_together(writers)

    monkeypatch.setattr(atomic, "write_together", slow_first)
    write_raw(published.raw_dir, 40)
    labels_a, stats_a = store.build_labels(published)
    write_raw(published.raw_dir, 50)
    labels_b, stats_b = store.build_labels(published)
    first = threading.Thread(target=store.publish_labels, args=(labels_a, stats_a, published))
    second = threading.Thread(target=store.publish_labels, args=(labels_b, stats_b, published))
    first.start()
    assert first_inside.wait(10)
    second.start()
    second.join(0.5)
    assert second.is_alive() and len(calls) == 1  # blocked on the lock, not writing
    release_first.set()
    first.join(10)
    second.join(10)
    assert _published_studies(published) == 50
    assert json.loads(published.labels_stats.read_text())["n_studies"] == 50


def test_a_held_lock_times_out_with_a_clear_message(published, monkeypatch):
    from filelock import FileLock

    monkeypatch.setattr(store, "LOCK_TIMEOUT_S", 0.2)
    with FileLock(published.writer_lock(store.LOCK_NAME)):
        with pytest.raises(TimeoutError, match="another run has been writing the labels tables"):
            store.ingest_labels(published)


def test_unwritable_output_folder_fails_before_reading_labels(paths, monkeypatch):
    write_raw(paths.raw_dir, 5)
    paths.data_dir.mkdir(parents=True)
    paths.processed_dir.write_text("a file where the output folder should be")
    monkeypatch.setattr(
        store, "build_labels", lambda p: pytest.fail("read labels before checking the output")
    )
    with pytest.raises(PermissionError, match=f"cannot write to {paths.processed_dir}"):
        store.ingest_labels(paths)


def test_no_dataset_at_all_says_what_to_do(paths):
    with pytest.raises(FileNotFoundError, match="No RSNA dataset at .*lss-pipeline synth"):
        store.ingest_labels(paths)


def test_reading_before_publishing_names_the_asset(paths):
    with pytest.raises(FileNotFoundError, match="materialize the `labels` asset first"):
        store.read_labels(paths)
