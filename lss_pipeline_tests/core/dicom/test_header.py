"""One file's header: quarantine reasons that say what is wrong, most of all for cut files."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from lss_pipeline.core.dicom.header import read_header_row
from lss_pipeline.core.dicom.schema import HEADER_COLUMNS, QuarantineError

from .fakes import write_mr

REL = "train_images/1/2/3.dcm"


def outcome(path: Path) -> str:
    try:
        read_header_row(path, REL)
    except QuarantineError as exc:
        return exc.error_type
    return "row"


def test_a_good_file_gives_every_header_column(tmp_path):
    row = read_header_row(write_mr(tmp_path / "a.dcm", instance=3), REL)
    assert len(row) == len(HEADER_COLUMNS)
    named = dict(zip(HEADER_COLUMNS, row))
    assert (named["study_id"], named["series_id"], named["instance_number"], named["path"]) == (1, 2, 3, REL)
    assert named["file_size_bytes"] == (tmp_path / "a.dcm").stat().st_size


def test_zero_byte_file_is_empty(tmp_path):
    (tmp_path / "empty.dcm").write_bytes(b"")
    with pytest.raises(QuarantineError, match="0 bytes") as info:
        read_header_row(tmp_path / "empty.dcm", REL)
    assert info.value.error_type == "empty"


def _element_ends(path: Path) -> dict[int, int]:
    """Byte offset where each top-level data element of the dataset ends -> its tag."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    ends = {}
    for tag in ds.keys():
        raw = ds.get_item(tag)
        ends[raw.value_tell + raw.length] = int(tag)
    return ends


def test_every_cut_of_a_file_is_truncated(tmp_path):
    """Cut anywhere after the 'DICM' prefix, a file is `truncated` (the issue's example: 400 bytes).

    The one exception is a cut on an element boundary after every required tag: the file is then
    a complete header without pixel data and says so (`no_pixel_data`).
    """
    full = write_mr(tmp_path / "full.dcm")
    data = full.read_bytes()
    header_only_ends = {end for end, tag in _element_ends(full).items() if tag >= 0x00280101}
    assert header_only_ends, "the fake file has elements after BitsStored"
    cut_file = tmp_path / "cut.dcm"
    outcomes = {}
    for cut in range(132, len(data)):
        cut_file.write_bytes(data[:cut])
        outcomes[cut] = outcome(cut_file)
    wrong = {cut: got for cut, got in outcomes.items() if cut not in header_only_ends and got != "truncated"}
    assert wrong == {}
    assert {outcomes[cut] for cut in header_only_ends} == {"no_pixel_data"}
    assert outcomes[400] == "truncated"
    assert outcome(full) == "row"


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "CT_small.dcm",
    ],
)
def test_cuts_of_other_encodings_are_truncated(tmp_path, name):
    data = Path(get_testdata_file(name)).read_bytes()
    cut_file = tmp_path / "cut.dcm"
    # Inside the file meta, inside the dataset header, inside the pixel data.
    ds = pydicom.dcmread(get_testdata_file(name), stop_before_pixels=True)
    last_value = ds.get_item(max(ds.keys())).value_tell  # the last element before PixelData
    for cut in (140, 400, last_value, last_value + 40, (last_value + len(data)) // 2):
        cut_file.write_bytes(data[:cut])
        assert outcome(cut_file) == "truncated", (name, cut)


def test_complete_non_image_without_tags_is_missing_tags(tmp_path):
    rtplan = tmp_path / "rtplan.dcm"
    rtplan.write_bytes(Path(get_testdata_file("rtplan.dcm")).read_bytes())
    assert outcome(rtplan) == "missing_tags"


def test_short_junk_is_not_dicom(tmp_path):
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not a dicom file\n" * 3)
    assert outcome(junk) == "not_dicom"
