"""Bad-input tally: malformed inputs through the core ingest functions, each outcome classified.

A small synthetic raw set is built, then copied once per case; each case breaks one thing (a
label CSV, a DICOM file, a folder, the output) and runs what the ``dicom_metadata`` and
``labels`` assets run (``core.dicom.store.ingest_dicom_folder``, ``core.labels.store.ingest_labels``),
plus the label checks' core functions where the fault can only show there. Outcomes:

- **clear error**: a ValueError/OSError (what the assets turn into a Dagster failure) whose message
  names the file and, for a fault in one, the row and column; nothing was written or replaced.
- **handled**: the run went on and dealt with it correctly: the file quarantined with the right
  reason, the quirk counted in the stats, the row flagged by a check, or the input read as meant.
- **silent**: accepted wrongly (published as if nothing were wrong, or output half-written).
- **unclear**: an error that does not say where, a wrong quarantine reason, or another exception
  type (a traceback in the UI).

    .venv/bin/python benchmarks/bad_inputs.py                 # prints the table and the tally
    .venv/bin/python benchmarks/bad_inputs.py --keep /tmp/bad  # keep the case folders
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pydicom
from pydicom.encaps import encapsulate

from lss_pipeline.core import synth
from lss_pipeline.core.constants import TRAIN_CSV_HEADER
from lss_pipeline.core.dicom import store as dicom_store
from lss_pipeline.core.dicom.layout import list_image_files
from lss_pipeline.core.labels import anatomy, consistency
from lss_pipeline.core.labels import store as labels_store
from lss_pipeline.core.markdown import markdown_rows
from lss_pipeline.core.paths import Paths

CLEAR, HANDLED, SILENT, UNCLEAR = "clear error", "handled", "silent", "unclear"
OUTCOMES = (CLEAR, HANDLED, SILENT, UNCLEAR)
USER_ERRORS = (ValueError, OSError)  # what the ingest assets show as a failure with its message
NOTE_CHARS = 150


# ----------------------------------------------------------------------------- inputs to break


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def write_rows(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


def edit_rows(path: Path, edit: Callable[[list[list[str]]], list[list[str]] | None]) -> None:
    rows = read_rows(path)
    write_rows(path, edit(rows) or rows)


def set_cell(path: Path, data_row: int, column: str, value: str) -> None:
    def edit(rows: list[list[str]]) -> None:
        rows[data_row][rows[0].index(column)] = value

    edit_rows(path, edit)


def drop_last_field(path: Path, data_row: int) -> None:
    def edit(rows: list[list[str]]) -> None:
        rows[data_row].pop()

    edit_rows(path, edit)


def header_only(path: Path) -> None:
    edit_rows(path, lambda rows: rows[:1])


def first_train_image(paths: Paths) -> str:
    """The first train image in path order (the one the DICOM cases break), relative to the raw folder."""
    return next(rel for rel in list_image_files(paths) if rel.startswith(f"{paths.train_images.name}/"))


def a_dicom(paths: Paths) -> Path:
    return paths.raw_dir / first_train_image(paths)


def broken_link(paths: Paths) -> None:
    path = a_dicom(paths)
    path.unlink()
    path.symlink_to(paths.raw_dir / "gone.dcm")


def edit_dicom(paths: Paths, edit: Callable[[pydicom.Dataset], None]) -> None:
    path = a_dicom(paths)
    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(path)


def garble(paths: Paths, tag: int) -> None:
    """Overwrite a DS element's value bytes with letters (pydicom will not write a non-number)."""
    path = a_dicom(paths)
    data = bytearray(path.read_bytes())
    marker = tag.to_bytes(4, "big")
    head = marker[1::-1] + marker[:1:-1] + b"DS"  # group, element little-endian, explicit VR
    at = data.index(head)
    length = int.from_bytes(data[at + 6 : at + 8], "little")
    value = slice(at + 8, at + 8 + length)
    data[value] = bytes(c if c == ord("\\") else ord("x") for c in data[value])  # keep the 3 values
    path.write_bytes(bytes(data))


def unsupported_syntax(ds: pydicom.Dataset) -> None:
    """Pixels encapsulated under MPEG-2, which no installed decoder handles."""
    ds.file_meta.TransferSyntaxUID = pydicom.uid.MPEG2MPML
    ds.PixelData = encapsulate([ds.PixelData])
    ds["PixelData"].VR = "OB"


def cut(paths: Paths, size: int | None = None, *, drop_tail: int = 0) -> None:
    path = a_dicom(paths)
    data = path.read_bytes()
    path.write_bytes(data[:size] if size is not None else data[: len(data) - drop_tail])


def move_image(paths: Paths, new_rel: Callable[[Path], Path]) -> None:
    path = a_dicom(paths)
    target = new_rel(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    path.rename(target)


def symlink_study(paths: Paths) -> None:
    """A study folder moved elsewhere and linked back (big data sets often live on another disk)."""
    study = sorted(p for p in paths.train_images.iterdir() if p.is_dir())[0]
    elsewhere = paths.raw_dir.parent / "elsewhere" / study.name
    elsewhere.parent.mkdir(parents=True)
    study.rename(elsewhere)
    study.symlink_to(elsewhere, target_is_directory=True)


def empty_series_folder(paths: Paths) -> None:
    """The series the first coordinate row points at, emptied."""
    study, series = read_rows(paths.coordinates_csv)[1][:2]
    folder = paths.train_images / study / series
    shutil.rmtree(folder)
    folder.mkdir()


def swap_xy_values(paths: Paths) -> None:
    """Every point's x and y exchanged (a tool that writes row, column)."""
    edit_rows(paths.coordinates_csv, lambda rows: [rows[0]] + [r[:5] + [r[6], r[5]] for r in rows[1:]])


def swap_descriptions(paths: Paths) -> None:
    """The first study's Sagittal T1 and Axial T2 series described the other way round."""

    def edit(rows: list[list[str]]) -> None:
        study = rows[1][0]
        swap = {"Sagittal T1": "Axial T2", "Axial T2": "Sagittal T1"}
        for r in rows[1:]:
            if r[0] == study and r[2] in swap:
                r[2] = swap[r[2]]

    edit_rows(paths.series_csv, edit)


def drop_study_series(paths: Paths) -> None:
    """The first study's rows left out of the series CSV (new images, CSV not updated)."""
    edit_rows(paths.series_csv, lambda rows: [r for r in rows if r[0] != rows[1][0]])


def canal_point_on_axial(paths: Paths) -> None:
    """The first spinal canal point moved to its study's Axial T2 series (same instance number)."""
    axial = {r[0]: r[1] for r in read_rows(paths.series_csv)[1:] if r[2] == "Axial T2"}

    def edit(rows: list[list[str]]) -> None:
        row = next(r for r in rows[1:] if r[3] == "Spinal Canal Stenosis")
        row[1] = axial[row[0]]

    edit_rows(paths.coordinates_csv, edit)


def zero_padded_copy(paths: Paths) -> None:
    """A second copy of an image named 01.dcm beside 1.dcm (a merged export): one instance twice."""
    path = a_dicom(paths)
    shutil.copy(path, path.with_name("0" + path.name))


def remove_image_folders(paths: Paths, *, recreate: bool) -> None:
    for folder in (paths.train_images, paths.test_images):
        shutil.rmtree(folder)
        if recreate:
            folder.mkdir()


def empty_every_image(paths: Paths) -> None:
    for rel in list_image_files(paths):
        (paths.raw_dir / rel).write_bytes(b"")


def keep_one_study(paths: Paths) -> None:
    studies = sorted(p for p in paths.train_images.iterdir() if p.is_dir())
    for study in studies[1:]:
        shutil.rmtree(study)
    shutil.rmtree(paths.test_images, ignore_errors=True)


def swap_levels(paths: Paths) -> None:
    """The first study's canal L1/L2 and L5/S1 points swapped (an annotator's slip)."""

    def edit(rows: list[list[str]]) -> None:
        study = rows[1][0]
        at = {r[4]: i for i, r in enumerate(rows) if r[0] == study and r[3] == "Spinal Canal Stenosis"}
        a, b = at["L1/L2"], at["L5/S1"]
        rows[a][5:7], rows[b][5:7] = rows[b][5:7], rows[a][5:7]

    edit_rows(paths.coordinates_csv, edit)


def left_foramen_on_right_slice(paths: Paths) -> None:
    def edit(rows: list[list[str]]) -> None:
        study = rows[1][0]
        right = next(r for r in rows if r[0] == study and r[3].startswith("Right Neural"))
        for r in rows:
            if r[0] == study and r[3].startswith("Left Neural") and r[4] == right[4]:
                r[2] = right[2]

    edit_rows(paths.coordinates_csv, edit)


# ----------------------------------------------------------------------------- what should happen


@dataclass
class Run:
    """What one case's ingest gave."""

    error: BaseException | None = None
    labels: pl.DataFrame | None = None
    stats: dict | None = None
    metadata: pl.DataFrame | None = None
    quarantine: pl.DataFrame | None = None


Judge = Callable[[Run, Paths, dict[str, Any]], tuple[str, str]]


def first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def clear_error(*tokens: str) -> Judge:
    """An error whose message holds every token (file name, 'data row N', the column)."""

    def judge(run: Run, paths: Paths, ctx: dict[str, Any]) -> tuple[str, str]:
        if run.error is None:
            return SILENT, "accepted"
        message = str(run.error)
        if not isinstance(run.error, USER_ERRORS):
            return UNCLEAR, f"{type(run.error).__name__}: {first_line(run.error)}"
        missing = [t for t in tokens if t not in message]
        if missing:
            return UNCLEAR, f"message lacks {missing}: {first_line(run.error)}"
        changed = [p.name for p, before in ctx["published"].items() if _bytes(p) != before]
        if changed:
            return SILENT, f"error, but {changed} changed"
        return CLEAR, first_line(run.error)

    return judge


def _bytes(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def quarantined(error_type: str) -> Judge:
    def judge(run: Run, paths: Paths, ctx: dict[str, Any]) -> tuple[str, str]:
        if run.error is not None:
            return (
                UNCLEAR,
                f"one bad file failed the run: {type(run.error).__name__}: {first_line(run.error)}",
            )
        assert run.quarantine is not None and run.metadata is not None
        rel = ctx["rel"]
        hit = run.quarantine.filter(pl.col("path") == rel)
        if hit.is_empty():
            in_meta = run.metadata.filter(pl.col("path") == rel).height
            return SILENT, f"{rel} not quarantined ({'in dicom_metadata' if in_meta else 'not seen'})"
        found = hit["error_type"][0]
        if found != error_type:
            return UNCLEAR, f"quarantined as {found}, expected {error_type}: {hit['message'][0][:80]}"
        return HANDLED, f"quarantined {found}: {hit['message'][0]}"

    return judge


def counted(stat: str, expected: int) -> Judge:
    def judge(run: Run, paths: Paths, ctx: dict[str, Any]) -> tuple[str, str]:
        if run.error is not None:
            return UNCLEAR, f"{type(run.error).__name__}: {first_line(run.error)}"
        assert run.stats is not None
        found = run.stats[stat]
        found_n = (
            len(found)
            if isinstance(found, list)
            else sum(found.values())
            if isinstance(found, dict)
            else found
        )
        if found_n != expected:
            return SILENT, f"stats[{stat!r}] = {found}, expected {expected}"
        return HANDLED, f"published; counted in labels_stats {stat} = {found}"

    return judge


def same_as_base() -> Judge:
    def judge(run: Run, paths: Paths, ctx: dict[str, Any]) -> tuple[str, str]:
        if run.error is not None:
            return UNCLEAR, f"{type(run.error).__name__}: {first_line(run.error)}"
        assert run.labels is not None
        if not run.labels.equals(ctx["base_labels"]):
            return SILENT, "read, but the table differs from the clean input's"
        return HANDLED, "read as meant: the same table as the clean input"

    return judge


def flagged(what: str, find: Callable[[pl.DataFrame, pl.DataFrame], pl.DataFrame]) -> Judge:
    """Accepted by ingest, and the label check's core function (on labels, dicom_metadata) lists it."""

    def judge(run: Run, paths: Paths, ctx: dict[str, Any]) -> tuple[str, str]:
        if run.error is not None:
            return UNCLEAR, f"{type(run.error).__name__}: {first_line(run.error)}"
        assert run.labels is not None and run.metadata is not None
        found = find(run.labels, run.metadata)
        if found.is_empty():
            return SILENT, f"published; {what} lists nothing"
        return HANDLED, f"published; {what} lists {found.height} row(s)"

    return judge


def ignored() -> Judge:
    def judge(run: Run, paths: Paths, ctx: dict[str, Any]) -> tuple[str, str]:
        if run.error is not None:
            return UNCLEAR, f"{type(run.error).__name__}: {first_line(run.error)}"
        assert run.metadata is not None and run.quarantine is not None
        seen = set(run.metadata["path"]) | set(run.quarantine["path"])
        if ctx["rel"] in seen:
            return SILENT, f"{ctx['rel']} was read as an image"
        if run.metadata.height != ctx["base_instances"]:
            return SILENT, f"{run.metadata.height} instances, expected {ctx['base_instances']}"
        return HANDLED, "hidden file skipped; every image read"

    return judge


def all_read() -> Judge:
    def judge(run: Run, paths: Paths, ctx: dict[str, Any]) -> tuple[str, str]:
        if run.error is not None:
            return UNCLEAR, f"{type(run.error).__name__}: {first_line(run.error)}"
        assert run.metadata is not None
        if run.metadata.height != ctx["base_instances"]:
            return SILENT, f"{run.metadata.height} instances read, expected {ctx['base_instances']}"
        return HANDLED, "every image read"

    return judge


def stale_temp(paths: Paths) -> Path:
    """A temp file as ``atomic.atomic_path`` names it, left by a killed write of labels.parquet."""
    return paths.labels.parent / f".{paths.labels.name}.killed.tmp{paths.labels.suffix}"


def plant_stale_temp(paths: Paths) -> None:
    stale_temp(paths).parent.mkdir(parents=True, exist_ok=True)
    stale_temp(paths).write_bytes(b"half")


def stale_temp_removed() -> Judge:
    def judge(run: Run, paths: Paths, ctx: dict[str, Any]) -> tuple[str, str]:
        if run.error is not None:
            return UNCLEAR, f"{type(run.error).__name__}: {first_line(run.error)}"
        if stale_temp(paths).exists():
            return SILENT, f"{stale_temp(paths).name} left behind"
        return HANDLED, "the killed write's temp file was removed by the next writer"

    return judge


def coordinate_problem(kind: str) -> Judge:
    return flagged(
        f"coordinates_point_at_instances ({kind})",
        lambda labels, metadata: consistency.coordinate_problems(labels, metadata).filter(
            pl.col("problem") == kind
        ),
    )


def missing_series() -> Judge:
    return flagged("studies_have_required_series", consistency.missing_series)


def implausible(reason: str) -> Judge:
    return flagged(
        f"labels_make_anatomical_sense ({reason})",
        lambda labels, metadata: anatomy.check_anatomy(labels, metadata).offenders.filter(
            pl.col("reason") == reason
        ),
    )


# ----------------------------------------------------------------------------- the cases


def _same(rel: str) -> str:
    return rel


@dataclass
class Case:
    name: str
    breaks: str  # the input, for the table
    step: str  # "labels", "dicom" or "both" (dicom then labels)
    mutate: Callable[[Paths], Any]
    judge: Judge
    publish_first: bool = False  # a good table is published before the bad input arrives
    # The broken file's path relative to the raw folder, from the first image's path.
    target: Callable[[str], str] = _same


T, C, S = "train.csv", "train_label_coordinates.csv", "train_series_descriptions.csv"
SCS_L1 = TRAIN_CSV_HEADER[1]


def cases() -> list[Case]:
    """The bad inputs: what breaks, which step runs, how it is broken, what should happen."""

    def train(p: Paths) -> Path:
        return p.train_csv

    def coords(p: Paths) -> Path:
        return p.coordinates_csv

    def series(p: Paths) -> Path:
        return p.series_csv

    def blocked_output(p: Paths) -> None:
        p.processed_dir.parent.mkdir(parents=True, exist_ok=True)
        p.processed_dir.write_text("")  # a file where the output folder should be

    def dicom_attr(name: str, value: Any) -> Callable[[Paths], None]:
        return lambda p: edit_dicom(p, lambda ds: setattr(ds, name, value))

    def dicom_del(name: str) -> Callable[[Paths], None]:
        return lambda p: edit_dicom(p, lambda ds: delattr(ds, name))

    image = "train_images/…/*.dcm"
    cell, rows = set_cell, edit_rows
    # fmt: off
    return [
        Case("header only", T, "labels", lambda p: header_only(train(p)), clear_error(T, "0 study rows")),
        Case("header only over a published table", T, "labels", lambda p: header_only(train(p)),
             clear_error(T, "0 study rows", "is left as it is"), publish_first=True),
        Case("zero bytes", T, "labels", lambda p: train(p).write_bytes(b""), clear_error(T, "empty file")),
        Case("file missing", T, "labels", lambda p: train(p).unlink(), clear_error(T, "missing")),
        Case("column renamed", T, "labels", lambda p: rows(train(p), lambda r: r[0].__setitem__(1, "scs")),
             clear_error(T, "line 1", "column 2")),
        Case("column missing", T, "labels", lambda p: rows(train(p), lambda r: [x[:-1] for x in r]),
             clear_error(T, "line 1", "columns")),
        Case("extra column", T, "labels", lambda p: rows(train(p), lambda r: [x + ["1"] for x in r]),
             clear_error(T, "line 1", "columns")),
        Case("unknown severity 'Mild'", T, "labels", lambda p: cell(train(p), 2, SCS_L1, "Mild"),
             clear_error(T, "data row 2", repr(SCS_L1))),
        Case("lower-case severity", T, "labels", lambda p: cell(train(p), 2, SCS_L1, "moderate"),
             clear_error(T, "data row 2", repr(SCS_L1))),
        Case("severity with a leading space", T, "labels", lambda p: cell(train(p), 3, SCS_L1, " Severe"),
             clear_error(T, "data row 3", repr(SCS_L1))),
        Case("non-numeric study id", T, "labels", lambda p: cell(train(p), 1, "study_id", "abc"),
             clear_error(T, "data row 1", "'study_id'")),
        Case("negative study id", T, "labels", lambda p: cell(train(p), 1, "study_id", "-5"),
             clear_error(T, "data row 1", "'study_id'")),
        Case("duplicate study row", T, "labels", lambda p: rows(train(p), lambda r: r + [r[1]]),
             clear_error(T, "duplicate study id")),
        Case("short row", T, "labels", lambda p: drop_last_field(train(p), 3),
             clear_error(T, "data row 3", "fields")),
        Case("unterminated quote", T, "labels", lambda p: cell(train(p), 2, SCS_L1, '"Moderate'),
             clear_error(T, "data row 2")),
        Case("every label blank", T, "labels",
             lambda p: rows(train(p), lambda r: [r[0]] + [[x[0]] + [""] * 25 for x in r[1:]]),
             clear_error(T, "every label cell is blank")),
        Case("not UTF-8 (Latin-1 byte)", T, "labels",
             lambda p: train(p).write_bytes(train(p).read_bytes() + b"12345,Mod\xe9r\xe9\n"),
             clear_error(T, "not UTF-8")),
        Case("UTF-8 BOM and CRLF", T, "labels",
             lambda p: train(p).write_bytes(b"\xef\xbb\xbf" + train(p).read_bytes()), same_as_base()),
        Case("blank lines between rows", T, "labels",
             lambda p: train(p).write_text(train(p).read_text().replace("\n", "\n\n")), same_as_base()),
        Case("shrinks the published table to 1 study", T, "labels",
             lambda p: rows(train(p), lambda r: r[:2]),
             clear_error(T, "1 studies where the published table has", "is left as it is"),
             publish_first=True),
        Case("CR-only line ends", T, "labels",
             lambda p: train(p).write_bytes(train(p).read_bytes().replace(b"\r\n", b"\r")), same_as_base()),
        Case("UTF-16 (Excel 'Unicode text')", T, "labels",
             lambda p: train(p).write_bytes(train(p).read_text().encode("utf-16")),
             clear_error(T, "not UTF-8")),
        Case("semicolon separated (Excel, EU locale)", T, "labels",
             lambda p: train(p).write_text(train(p).read_text().replace(",", ";")), clear_error(T, "line 1")),
        Case("study id with 20 digits", T, "labels",
             lambda p: cell(train(p), 1, "study_id", "1" * 20), clear_error(T, "data row 1", "'study_id'")),
        Case("study without coordinates or images", T, "both",
             lambda p: rows(train(p), lambda r: r + [["77"] + ["Normal/Mild"] * 25]), missing_series()),
        # --- coordinates
        Case("header only", C, "labels", lambda p: header_only(coords(p)),
             clear_error(C, "0 coordinate rows")),
        Case("x is nan", C, "labels", lambda p: cell(coords(p), 4, "x", "nan"),
             clear_error(C, "data row 4", "'x'")),
        Case("y is inf", C, "labels", lambda p: cell(coords(p), 4, "y", "inf"),
             clear_error(C, "data row 4", "'y'")),
        Case("x empty", C, "labels", lambda p: cell(coords(p), 5, "x", ""),
             clear_error(C, "data row 5", "'x'")),
        Case("decimal comma in x", C, "labels", lambda p: cell(coords(p), 5, "x", "12,5"),
             clear_error(C, "data row 5", "'x'")),
        Case("unknown condition", C, "labels", lambda p: cell(coords(p), 2, "condition", "Canal Stenosis"),
             clear_error(C, "data row 2", "'condition'")),
        Case("unknown level L6/S1", C, "labels", lambda p: cell(coords(p), 2, "level", "L6/S1"),
             clear_error(C, "data row 2", "'level'")),
        Case("instance number 3.0", C, "labels", lambda p: cell(coords(p), 2, "instance_number", "3.0"),
             clear_error(C, "data row 2", "'instance_number'")),
        Case("x and y columns swapped in header", C, "labels",
             lambda p: rows(coords(p), lambda r: r[0].__setitem__(slice(5, 7), ["y", "x"])),
             clear_error(C, "line 1", "column 6")),
        Case("identical duplicate row", C, "labels", lambda p: rows(coords(p), lambda r: r + [r[3]]),
             clear_error(C, "duplicate row")),
        Case("two points for one level", C, "labels",
             lambda p: rows(coords(p), lambda r: r + [r[3][:5] + ["1.5", "2.5"]]),
             counted("duplicate_coordinate_rows", 1)),
        Case("unknown study id", C, "labels", lambda p: rows(coords(p), lambda r: r + [["99"] + r[3][1:]]),
             counted("coordinates_study_not_in_train", 1)),
        Case("unknown series id", C, "labels", lambda p: cell(coords(p), 1, "series_id", "123"),
             counted("coordinates_series_not_in_series_file", 1)),
        Case("negative x", C, "both", lambda p: cell(coords(p), 1, "x", "-5.0"),
             coordinate_problem("point outside the image")),
        Case("x beyond the image", C, "both", lambda p: cell(coords(p), 1, "x", "1e6"),
             coordinate_problem("point outside the image")),
        Case("instance that does not exist", C, "both",
             lambda p: cell(coords(p), 1, "instance_number", "999"),
             coordinate_problem("instance not in dicom_metadata")),
        Case("canal point on the axial series", C, "labels", canal_point_on_axial,
             counted("labels_on_unexpected_series_description", 1)),
        Case("pandas index column", C, "labels",
             lambda p: rows(coords(p), lambda r: [[""] + r[0]] + [[str(i)] + x for i, x in enumerate(r[1:])]),
             clear_error(C, "line 1", "column 1")),
        Case("x and y exchanged in every row", C, "both", swap_xy_values, implausible("level_order")),
        Case("levels swapped (L1/L2 <-> L5/S1)", C, "both", swap_levels, implausible("level_order")),
        Case("left foramen on the right slice", C, "both", left_foramen_on_right_slice,
             implausible("lr_same_instance")),
        # --- series descriptions
        Case("header only", S, "labels", lambda p: header_only(series(p)), clear_error(S, "0 series rows")),
        Case("unknown description", S, "labels", lambda p: cell(series(p), 1, "series_description", "Sag T3"),
             clear_error(S, "data row 1", "'series_description'")),
        Case("duplicate study/series", S, "labels", lambda p: rows(series(p), lambda r: r + [r[1]]),
             clear_error(S, "duplicate study/series")),
        Case("file missing", S, "labels", lambda p: series(p).unlink(), clear_error(S, "missing")),
        Case("Sagittal T1 and Axial T2 swapped", S, "labels", swap_descriptions,
             counted("labels_on_unexpected_series_description", 20)),
        Case("a study's series left out", S, "both", drop_study_series, missing_series()),
        Case("malformed, before the DICOM scan", S, "dicom",
             lambda p: cell(series(p), 1, "series_description", "Sag T3"),
             clear_error(S, "data row 1", "'series_description'")),
        # --- DICOM files and folders
        Case("zero-byte file", image, "dicom", lambda p: a_dicom(p).write_bytes(b""), quarantined("empty")),
        Case("cut at 400 bytes", image, "dicom", lambda p: cut(p, 400), quarantined("truncated")),
        Case("cut at 132 bytes (after the preamble)", image, "dicom", lambda p: cut(p, 132),
             quarantined("truncated")),
        Case("cut inside the pixel data", image, "dicom", lambda p: cut(p, drop_tail=100),
             quarantined("truncated")),
        Case("not DICOM (text)", image, "dicom", lambda p: a_dicom(p).write_text("not an image\n"),
             quarantined("not_dicom")),
        Case("compressed, no decoder (MPEG-2)", image, "dicom", lambda p: edit_dicom(p, unsupported_syntax),
             quarantined("unsupported_transfer_syntax")),
        Case("PixelSpacing missing", image, "dicom", dicom_del("PixelSpacing"), quarantined("missing_tags")),
        Case("ImagePositionPatient not numeric", image, "dicom", lambda p: garble(p, 0x00200032),
             quarantined("bad_geometry")),
        Case("ImageOrientationPatient degenerate", image, "dicom",
             dicom_attr("ImageOrientationPatient", [1, 0, 0, 1, 0, 0]), quarantined("bad_geometry")),
        Case("PixelSpacing zero", image, "dicom", dicom_attr("PixelSpacing", [0, 0]),
             quarantined("bad_geometry")),
        Case("RGB samples", image, "dicom", dicom_attr("SamplesPerPixel", 3),
             quarantined("unsupported_pixel_layout")),
        Case("PixelData shorter than the matrix", image, "dicom",
             lambda p: edit_dicom(p, lambda ds: setattr(ds, "PixelData", ds.PixelData[:64])),
             quarantined("unsupported_pixel_layout")),
        Case("no PixelData", image, "dicom", dicom_del("PixelData"), quarantined("no_pixel_data")),
        Case("file name not .dcm", image, "dicom", lambda p: move_image(p, lambda f: f.with_suffix(".txt")),
             quarantined("bad_path"), target=lambda rel: rel[: -len(".dcm")] + ".txt"),
        Case("non-numeric series folder", image, "dicom",
             lambda p: move_image(p, lambda f: f.parent.parent / "localizer" / f.name),
             quarantined("bad_path"),
             target=lambda rel: "/".join([*rel.split("/")[:2], "localizer", rel.split("/")[3]])),
        Case("stray file in train_images/", image, "dicom",
             lambda p: (p.train_images / "notes.txt").write_text("x"), quarantined("bad_path"),
             target=lambda rel: "train_images/notes.txt"),
        Case("hidden file (.DS_Store)", image, "dicom",
             lambda p: (p.train_images / ".DS_Store").write_bytes(b"\0" * 8), ignored(),
             target=lambda rel: "train_images/.DS_Store"),
        Case("BitsStored above BitsAllocated", image, "dicom", dicom_attr("BitsStored", 20),
             quarantined("unsupported_pixel_layout")),
        Case("broken symlink", image, "dicom",
             broken_link, quarantined("read_error")),
        Case("study folder is a symlink", "train_images/<study>", "dicom", symlink_study, all_read()),
        Case("empty series folder", "train_images/<study>/<series>", "both", empty_series_folder,
             coordinate_problem("instance not in dicom_metadata")),
        Case("same instance twice (1.dcm, 01.dcm)", image, "dicom", zero_padded_copy,
             quarantined("duplicate_instance"), target=lambda rel: "/0".join(rel.rsplit("/", 1))),
        Case("header only", "test_series_descriptions.csv", "dicom", lambda p: header_only(p.test_series_csv),
             clear_error("test_series_descriptions.csv", "0 series rows")),
        Case("malformed", "test_series_descriptions.csv", "dicom",
             lambda p: cell(p.test_series_csv, 1, "series_id", "x"),
             clear_error("test_series_descriptions.csv", "data row 1", "'series_id'")),
        Case("image folders missing", "train_images/, test_images/", "dicom",
             lambda p: remove_image_folders(p, recreate=False),
             clear_error("train_images/ is missing", "test_images/ is missing")),
        Case("image folders empty", "train_images/, test_images/", "dicom",
             lambda p: remove_image_folders(p, recreate=True),
             clear_error("train_images/ is empty")),
        Case("every image unreadable", "train_images/", "dicom",
             empty_every_image,
             clear_error("0 of", "readable", "empty")),
        Case("one study left, over a published table", "train_images/", "dicom", keep_one_study,
             clear_error("readable instances", "under 10%", "is left as it is"), publish_first=True),
        Case("raw folder missing", "raw folder", "dicom", lambda p: shutil.rmtree(p.raw_dir),
             clear_error("No RSNA dataset", "raw")),
        # --- outputs
        Case("output folder not writable (dicom)", "processed/", "dicom", blocked_output,
             clear_error("cannot write", "processed")),
        Case("output folder not writable (labels)", "processed/", "labels", blocked_output,
             clear_error("cannot write", "processed")),
        Case("temp file of a killed write", "processed/", "labels", plant_stale_temp, stale_temp_removed()),
    ]
    # fmt: on


# ----------------------------------------------------------------------------- running


def run_step(step: str, paths: Paths) -> Run:
    run = Run()
    try:
        if step in ("dicom", "both"):
            result = dicom_store.ingest_dicom_folder(paths, workers=1)
            run.metadata, run.quarantine = result.metadata, result.quarantine
        if step in ("labels", "both"):
            run.labels, run.stats, _ = labels_store.ingest_labels(paths)
    except Exception as err:  # noqa: BLE001 - classifying every outcome is the point
        run.error = err
    return run


def run_case(case: Case, base_raw: Path, work: Path, base: dict[str, Any]) -> tuple[str, str]:
    raw, data = work / "raw", work / "data"
    shutil.copytree(base_raw, raw)
    paths = Paths(data_dir=data, raw_dir=raw)
    ctx: dict[str, Any] = {**base, "published": {}}
    if case.publish_first:
        run_step(case.step, paths)
    targets = (paths.dicom_metadata, paths.quarantine, paths.labels, paths.labels_stats)
    ctx["published"] = {t: _bytes(t) for t in targets}
    ctx["rel"] = case.target(first_train_image(paths))
    case.mutate(paths)
    outcome, note = case.judge(run_step(case.step, paths), paths, ctx)
    short = note.replace(str(work), "…")
    return outcome, short if len(short) <= NOTE_CHARS else short[: NOTE_CHARS - 1] + "…"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--studies", type=int, default=12, help="synthetic train studies (default 12)")
    parser.add_argument("--keep", type=Path, help="keep the case folders here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    root = args.keep or Path(tempfile.mkdtemp(prefix="lss_bad_inputs_"))
    try:
        base_raw = root / "base" / "raw"
        if not base_raw.is_dir():
            synth.generate_dataset(
                base_raw, n_studies=args.studies, seed=5, n_test_studies=1, workers=1, rows=48,
                sagittal_slices=5, axial_slices_per_level=1,
            )  # fmt: skip
        base_paths = Paths(data_dir=root / "base" / "data", raw_dir=base_raw)
        clean = run_step("both", base_paths)
        if clean.error is not None:
            raise SystemExit(f"the clean synthetic set does not ingest: {clean.error}")
        assert clean.labels is not None and clean.metadata is not None and clean.quarantine is not None
        if not clean.quarantine.is_empty():
            raise SystemExit(f"the clean synthetic set quarantines files: {clean.quarantine}")
        base = {"base_labels": clean.labels, "base_instances": clean.metadata.height}
        rows = []
        for i, case in enumerate(cases(), start=1):
            work = root / f"case_{i:02d}"
            shutil.rmtree(work, ignore_errors=True)
            outcome, note = run_case(case, base_raw, work, base)
            rows.append((i, case.breaks, case.name, outcome, note))
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(markdown_rows(("#", "input", "bad input", "outcome", "what happened"), rows))
    tally = Counter(r[3] for r in rows)
    print()
    print(markdown_rows(("tried", *OUTCOMES), [(len(rows), *(tally[o] for o in OUTCOMES))]))
    print(f"\n{time.perf_counter() - started:.1f} s")
    return 0 if tally[SILENT] == 0 and tally[UNCLEAR] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
