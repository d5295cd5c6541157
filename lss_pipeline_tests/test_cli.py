"""`lss-pipeline synth` and `contact-sheet` end to end on a tiny dataset."""

from __future__ import annotations

import pydicom

from lss_pipeline.cli import main
from lss_pipeline.core.constants import TRAIN_CSV


def test_synth_then_contact_sheet(tmp_path, capsys):
    out = tmp_path / "raw"
    assert (
        main(
            [
                "synth",
                "--out",
                str(out),
                "--studies",
                "2",
                "--test-studies",
                "1",
                "--rows",
                "48",
                "--sagittal-slices",
                "7",
                "--axial-slices-per-level",
                "3",
                "--workers",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    assert "wrote 2 train + 1 test studies" in capsys.readouterr().out
    assert len((out / TRAIN_CSV).read_text().splitlines()) == 3
    files = list(out.rglob("*.dcm"))
    assert len(files) == 3 * (7 + 7 + 5 * 3)
    assert pydicom.dcmread(files[0]).Rows == 48
    png = tmp_path / "sheet.png"
    assert main(["contact-sheet", "--data", str(out), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
