"""DICOM folder -> one metadata row per instance, plus a quarantine table.

Header-only reads (``stop_before_pixels`` + ``specific_tags``) in a process pool, chunked
by study. A file that cannot be used becomes a quarantine row, never a failed run. Its
``error_type`` is one of:

``bad_path``                    not ``{train|test}_images/{study}/{series}/{instance}.dcm``, numeric ids
``not_dicom``                   no DICOM preamble and no readable dataset
``read_error``                  pydicom failed on the header (message says how)
``truncated``                   the file ends before its pixel data does
``no_pixel_data``               the header ends without a PixelData element
``missing_tags``                a required geometry / pixel-layout tag is absent
``bad_geometry``                a geometry tag has the wrong multiplicity, a non-numeric or degenerate value
``unsupported_pixel_layout``    several frames, colour samples, odd bit depths, float pixels
``unsupported_transfer_syntax`` compressed with a syntax no installed decoder handles

Only the tags listed in ``_HEADER_TAGS`` are ever parsed, so no patient-identifying tag
(name, id, birth date, address, UIDs, ...) can reach an output.
"""

from __future__ import annotations

import functools
import math
import os
import re
import struct
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import polars as pl
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from lss_pipeline.core import atomic
from lss_pipeline.core.constants import SERIES_CSV, TEST_IMAGES, TEST_SERIES_CSV, TRAIN_IMAGES
from lss_pipeline.core.labels import read_series_file

QUARANTINE_STAGE = "dicom_metadata"
METADATA_FILE = "dicom_metadata.parquet"
QUARANTINE_FILE = "quarantine.parquet"

SPLIT_DIRS: dict[str, str] = {TRAIN_IMAGES: "train", TEST_IMAGES: "test"}
SERIES_FILES: dict[str, str] = {"train": SERIES_CSV, "test": TEST_SERIES_CSV}

METADATA_SCHEMA: dict[str, pl.DataType] = {
    "study_id": pl.Int64,
    "series_id": pl.Int64,
    "instance_number": pl.Int64,
    "split": pl.Utf8,
    "series_description": pl.Utf8,
    "path": pl.Utf8,
    "instance_number_tag": pl.Int64,
    "rows": pl.Int32,
    "columns": pl.Int32,
    "pixel_spacing_row": pl.Float64,
    "pixel_spacing_col": pl.Float64,
    "slice_thickness": pl.Float64,
    "spacing_between_slices": pl.Float64,
    "ipp_x": pl.Float64,
    "ipp_y": pl.Float64,
    "ipp_z": pl.Float64,
    "iop_row_x": pl.Float64,
    "iop_row_y": pl.Float64,
    "iop_row_z": pl.Float64,
    "iop_col_x": pl.Float64,
    "iop_col_y": pl.Float64,
    "iop_col_z": pl.Float64,
    "normal_x": pl.Float64,
    "normal_y": pl.Float64,
    "normal_z": pl.Float64,
    "slice_position": pl.Float64,
    "transfer_syntax_uid": pl.Utf8,
    "photometric_interpretation": pl.Utf8,
    "modality": pl.Utf8,
    "bits_allocated": pl.Int32,
    "bits_stored": pl.Int32,
    "samples_per_pixel": pl.Int32,
    "file_size_bytes": pl.Int64,
}
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "path": pl.Utf8,
    "stage": pl.Utf8,
    "error_type": pl.Utf8,
    "message": pl.Utf8,
}
_DESCRIPTION_SCHEMA: dict[str, pl.DataType] = {
    "split": pl.Utf8, "study_id": pl.Int64, "series_id": pl.Int64, "series_description": pl.Utf8,
}
# Columns a worker fills (split and series_description are added by the parent).
_WORKER_COLUMNS: tuple[str, ...] = tuple(
    c for c in METADATA_SCHEMA if c not in ("split", "series_description")
)

# The only tags ever parsed (tag -> (keyword, VR)). Keep PHI out of this table.
_HEADER_TAGS: dict[int, tuple[str, str]] = {
    0x00080060: ("Modality", "CS"),
    0x00180050: ("SliceThickness", "DS"),
    0x00180088: ("SpacingBetweenSlices", "DS"),
    0x00200013: ("InstanceNumber", "IS"),
    0x00200032: ("ImagePositionPatient", "DS"),
    0x00200037: ("ImageOrientationPatient", "DS"),
    0x00280002: ("SamplesPerPixel", "US"),
    0x00280004: ("PhotometricInterpretation", "CS"),
    0x00280008: ("NumberOfFrames", "IS"),
    0x00280010: ("Rows", "US"),
    0x00280011: ("Columns", "US"),
    0x00280030: ("PixelSpacing", "DS"),
    0x00280100: ("BitsAllocated", "US"),
    0x00280101: ("BitsStored", "US"),
}
_SPECIFIC_TAGS: list[int] = list(_HEADER_TAGS)
_REQUIRED_TAGS: tuple[str, ...] = (
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PixelSpacing",
    "ImagePositionPatient",
    "ImageOrientationPatient",
)
_PIXEL_DATA_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
_LONG_HEADER_VRS = frozenset({b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UN", b"UC", b"UR", b"UT"})
# Explicit VRs with a 2-byte length; anything else sends the file to dcmread.
_VRS = frozenset(v.encode() for v in (
    "AE AS AT CS DA DS DT FL FD IS LO LT PN SH SL SS ST SV TM UI UL US UV"
).split())
_ITEM_TAG = (0xFFFE, 0xE000)
_SEQ_DELIM_TAG = (0xFFFE, 0xE0DD)
_UNDEFINED_LENGTH = 0xFFFFFFFF
_MAX_FRAGMENTS = 1_000_000
_ITEM = 0xFFFEE000
_ITEM_DELIM = 0xFFFEE00D
_SEQ_DELIM = 0xFFFEE0DD
_MAX_DEPTH = 16
_READ_AHEAD = 8192
_US_LE, _US_BE = struct.Struct("<H"), struct.Struct(">H")

_DIGITS = re.compile(r"[0-9]+")

ProgressFn = Callable[[int, int], None]


class QuarantineError(Exception):
    """A file that cannot be used; carries the quarantine error_type."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


# ----------------------------------------------------------------------------- paths


def parse_image_path(rel_path: str) -> tuple[str, int, int, int]:
    """``train_images/1/2/3.dcm`` -> (``train``, 1, 2, 3); raises QuarantineError("bad_path")."""
    parts = rel_path.split("/")
    if len(parts) != 4 or parts[0] not in SPLIT_DIRS:
        raise QuarantineError(
            "bad_path",
            f"expected {{{'|'.join(SPLIT_DIRS)}}}/{{study_id}}/{{series_id}}/{{instance_number}}.dcm, "
            f"got {rel_path!r}",
        )
    split_dir, study, series, name = parts
    stem, dot, ext = name.rpartition(".")
    if not dot or ext.lower() != "dcm":
        raise QuarantineError("bad_path", f"file name {name!r} does not end in .dcm")
    for what, value in (("study_id", study), ("series_id", series), ("instance_number", stem)):
        if not _DIGITS.fullmatch(value):
            raise QuarantineError("bad_path", f"{what} {value!r} in the path is not a non-negative integer")
    return SPLIT_DIRS[split_dir], int(study), int(series), int(stem)


def list_image_files(raw_dir: str | os.PathLike) -> list[str]:
    """Non-hidden files under ``train_images/`` and ``test_images/``.

    Sorted POSIX paths relative to raw_dir.
    """
    raw = Path(raw_dir)
    found: list[str] = []
    for split_dir in SPLIT_DIRS:
        top = raw / split_dir
        if not top.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel_dir = Path(dirpath).relative_to(raw).as_posix()
            found.extend(f"{rel_dir}/{f}" for f in filenames if not f.startswith("."))
    found.sort()
    return found


# ----------------------------------------------------------------------------- one file


def _transfer_syntax(ds: pydicom.Dataset) -> UID:
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if ts:
        return UID(str(ts))
    # No file meta: name the syntax pydicom guessed from the encoding.
    implicit, little = ds.original_encoding
    if not little:
        return pydicom.uid.ExplicitVRBigEndian
    return pydicom.uid.ImplicitVRLittleEndian if implicit else pydicom.uid.ExplicitVRLittleEndian


def _raw_header(elements: Mapping[int, object], little_endian: bool) -> dict[str, int | list[str]]:
    """Values of ``_HEADER_TAGS`` parsed from the raw bytes (much cheaper than pydicom's conversion).

    US tags become ints; string tags become lists of stripped strings. Empty values are left out.
    """
    header: dict[str, int | list[str]] = {}
    us_unpack = _US_LE.unpack_from if little_endian else _US_BE.unpack_from
    for tag, elem in elements.items():
        keyword, vr = _HEADER_TAGS[tag]
        value = elem if elem is None or isinstance(elem, bytes) else elem.value
        if value is None:
            continue
        if isinstance(value, bytes):
            if vr == "US":
                if len(value) < 2:
                    continue
                header[keyword] = us_unpack(value)[0]
                continue
            text = value.decode("latin-1").strip(" \x00")
            if text:
                header[keyword] = [v.strip(" \x00") for v in text.split("\\")]
        elif vr == "US":
            header[keyword] = int(value)
        else:  # already converted by pydicom (e.g. a deflated dataset)
            values = list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
            if values and str(values[0]).strip():
                header[keyword] = [str(v).strip() for v in values]
    return header


def _numbers(header: dict, keyword: str, count: int) -> list[float]:
    values = header[keyword]
    if len(values) != count:
        raise QuarantineError(
            "bad_geometry",
            f"{keyword} has {len(values)} values, expected {count}: {values}"
        )
    try:
        out = [float(v) for v in values]
    except ValueError as exc:
        raise QuarantineError("bad_geometry", f"{keyword} is not numeric: {values}") from exc
    if not math.isfinite(sum(out)):  # nan and inf propagate through the sum
        raise QuarantineError("bad_geometry", f"{keyword} is not finite: {values}")
    return out


def _optional_number(header: dict, keyword: str) -> float | None:
    """First value of a DS/IS tag, None when absent or unparseable (these tags are optional)."""
    values = header.get(keyword)
    try:
        value = float(values[0]) if values else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _expected_pixel_bytes(rows: int, columns: int, frames: int, samples: int, bits_allocated: int) -> int:
    n_values = rows * columns * frames * samples
    return (n_values + 7) // 8 if bits_allocated == 1 else n_values * (bits_allocated // 8)


def _check_pixel_data(
    read_at: Callable[[int, int], bytes], file_size: int, pixel_offset: int, implicit: bool, little: bool,
    encapsulated: bool, expected: int,
) -> None:
    """Cheap truncation check from where the header read stopped (no pixel decoding)."""
    endian = "<" if little else ">"
    head = read_at(pixel_offset, 12)
    if len(head) < 8:
        raise QuarantineError("truncated", f"file ends inside the pixel data header (byte {pixel_offset})")
    group, element = struct.unpack(endian + "HH", head[:4])
    name = _PIXEL_DATA_TAGS.get((group << 16) | element, f"({group:04X},{element:04X})")
    if implicit:
        (length,) = struct.unpack(endian + "L", head[4:8])
        value_start = pixel_offset + 8
    elif head[4:6] in _LONG_HEADER_VRS:
        if len(head) < 12:
            raise QuarantineError("truncated", f"file ends inside the {name} element header")
        (length,) = struct.unpack(endian + "L", head[8:12])
        value_start = pixel_offset + 12
    else:
        (length,) = struct.unpack(endian + "H", head[6:8])
        value_start = pixel_offset + 8

    if length != _UNDEFINED_LENGTH:
        available = file_size - value_start
        if available < length:
            raise QuarantineError(
                "truncated", f"{name} needs {length} bytes from offset {value_start}, file has {available}"
            )
        if not encapsulated and length < expected:
            raise QuarantineError(
                "unsupported_pixel_layout",
                f"{name} holds {length} bytes, rows*columns*samples*frames*bits/8 needs {expected}",
            )
        return

    # Encapsulated: walk item headers (seek, no decoding) to the sequence delimiter.
    pos = value_start
    for _ in range(_MAX_FRAGMENTS):
        item = read_at(pos, 8)
        if len(item) < 8:
            raise QuarantineError("truncated", f"encapsulated {name} ends at byte {pos}, no delimiter")
        tag = struct.unpack("<HH", item[:4])
        (item_length,) = struct.unpack("<L", item[4:])
        if tag == _SEQ_DELIM_TAG:
            return
        if tag != _ITEM_TAG or item_length == _UNDEFINED_LENGTH:
            raise QuarantineError("read_error", f"encapsulated {name}: unexpected tag {tag} at byte {pos}")
        pos += 8 + item_length
        if pos > file_size:
            raise QuarantineError("truncated", f"encapsulated {name} runs past the file end ({file_size} B)")
    raise QuarantineError("unsupported_pixel_layout", f"encapsulated {name}: over {_MAX_FRAGMENTS} fragments")


def _has_decoder(ts: UID) -> bool:
    try:
        return bool(pydicom.pixels.get_decoder(ts).is_available)
    except NotImplementedError:
        return False


class _Unusual(Exception):
    """The fast walker met something it leaves to pydicom."""


class _HeaderWalker:
    """Walks a Part-10 file's elements up to PixelData on a read-ahead buffer.

    No pydicom objects: a struct unpack per element, a seek past every value it does not
    need. Undefined-length sequences are skipped item by item, as pydicom does; anything
    odd (bad VR, undefined-length UN, running past the end) raises ``_Unusual``.
    """

    __slots__ = ("fd", "size", "buf", "base", "implicit", "explicit_head", "implicit_head", "ulong")

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.size = fd, size
        self.buf, self.base = os.pread(fd, _READ_AHEAD, 0), 0
        self.set_encoding(implicit=False, little=True)

    def set_encoding(self, implicit: bool, little: bool) -> None:
        endian = "<" if little else ">"
        self.implicit = implicit
        self.explicit_head = struct.Struct(endian + "HH2sH")
        self.implicit_head = struct.Struct(endian + "HHL")
        self.ulong = struct.Struct(endian + "L")

    def bytes_at(self, pos: int, n: int) -> bytes:
        off = pos - self.base
        if off < 0 or off + n > len(self.buf):
            self.buf, self.base, off = os.pread(self.fd, max(n, _READ_AHEAD), pos), pos, 0
        return self.buf[off:off + n]

    def element(self, pos: int) -> tuple[int, bytes | None, int, int]:
        """(tag, VR or None, value length, value start) of the element header at pos."""
        buf, off = self.buf, pos - self.base
        if off < 0 or off + 12 > len(buf):
            self.buf, self.base, buf, off = (chunk := os.pread(self.fd, _READ_AHEAD, pos)), pos, chunk, 0
        available = len(buf) - off
        if available < 8:
            raise _Unusual("element header cut short")
        if self.implicit:
            group, elem, length = self.implicit_head.unpack_from(buf, off)
            return (group << 16) | elem, None, length, pos + 8
        group, elem, vr, short_length = self.explicit_head.unpack_from(buf, off)
        if group == 0xFFFE:  # item and delimiter tags carry no VR
            return (group << 16) | elem, None, self.ulong.unpack_from(buf, off + 4)[0], pos + 8
        if vr in _LONG_HEADER_VRS:
            if available < 12:
                raise _Unusual("element header cut short")
            return (group << 16) | elem, vr, self.ulong.unpack_from(buf, off + 8)[0], pos + 12
        if not (vr.isalpha() and vr.isupper()):
            raise _Unusual(f"bad VR {vr!r}")
        return (group << 16) | elem, vr, short_length, pos + 8

    def walk(self, pos: int, elements: dict[int, bytes] | None, depth: int = 0) -> int:
        """From pos to PixelData (depth 0, returns its offset) or an item delimiter (returns past it).

        The hot loop of the scan: element headers are unpacked straight from the buffer.
        """
        size, implicit = self.size, self.implicit
        explicit_unpack, implicit_unpack = self.explicit_head.unpack_from, self.implicit_head.unpack_from
        ulong_unpack = self.ulong.unpack_from
        buf, base = self.buf, self.base
        while True:
            if pos >= size:
                if depth == 0 and pos == size:
                    return pos  # no pixel data
                raise _Unusual("element runs past the end of the file")
            off = pos - base
            if off < 0 or off + 12 > len(buf):
                self.buf, self.base = buf, base = os.pread(self.fd, _READ_AHEAD, pos), pos
                off = 0
                if len(buf) < 8:
                    raise _Unusual("element header cut short")
            if implicit:
                group, elem, length = implicit_unpack(buf, off)
                vr, start = None, pos + 8
            else:
                group, elem, vr, length = explicit_unpack(buf, off)
                if group == 0xFFFE:  # item and delimiter tags carry no VR
                    vr, length, start = None, ulong_unpack(buf, off + 4)[0], pos + 8
                elif vr in _LONG_HEADER_VRS:
                    if len(buf) - off < 12:
                        raise _Unusual("element header cut short")
                    length, start = ulong_unpack(buf, off + 8)[0], pos + 12
                elif vr in _VRS:
                    start = pos + 8
                else:
                    raise _Unusual(f"bad VR {vr!r}")
            tag = (group << 16) | elem
            if depth == 0 and tag in _PIXEL_DATA_TAGS:
                return pos
            if tag == _ITEM_DELIM:
                return start
            if length == _UNDEFINED_LENGTH:
                if vr == b"UN" or depth >= _MAX_DEPTH:
                    raise _Unusual("undefined-length UN or deep nesting")
                pos = self.skip_sequence(start, depth + 1)
                buf, base = self.buf, self.base
                continue
            pos = start + length
            if elements is not None and tag in _HEADER_TAGS:
                if start - base + length <= len(buf):
                    elements[tag] = buf[start - base:pos - base]
                else:
                    value = self.bytes_at(start, length)
                    buf, base = self.buf, self.base
                    if len(value) < length:
                        raise _Unusual("value cut short")
                    elements[tag] = value

    def skip_sequence(self, pos: int, depth: int) -> int:
        while True:
            tag, _, length, start = self.element(pos)
            if tag == _SEQ_DELIM:
                return start
            if tag != _ITEM:
                raise _Unusual(f"tag {tag:08X} inside a sequence")
            pos = self.walk(start, None, depth) if length == _UNDEFINED_LENGTH else start + length
            if pos > self.size:
                raise _Unusual("item runs past the end of the file")


@functools.lru_cache(maxsize=64)
def _syntax_flags(ts: str) -> tuple[bool, bool, bool]:
    """(compressed, deflated, has a decoder) of a transfer syntax; cached, UID properties are slow."""
    uid = UID(ts)
    compressed = uid.is_transfer_syntax and uid.is_compressed
    return compressed, uid.is_transfer_syntax and uid.is_deflated, compressed and _has_decoder(uid)


@functools.lru_cache(maxsize=64)
def _walkable_syntax(transfer_syntax: str) -> tuple[UID, bool, bool] | None:
    """(UID, implicit VR, little endian) for a syntax the walker reads; None for deflate/unknown."""
    ts = UID(transfer_syntax)
    if not ts.is_transfer_syntax or ts.is_deflated:
        return None
    return ts, ts.is_implicit_VR, ts.is_little_endian


def _fast_header(walker: _HeaderWalker) -> tuple[UID, bool, bool, dict[int, bytes], int] | None:
    """(transfer syntax, implicit VR, little endian, raw values of _HEADER_TAGS, PixelData offset).

    A pure-struct walk, several times cheaper than ``dcmread``. Returns None for anything
    unusual (no 'DICM', deflate, unknown syntax, odd encoding, any error); the caller then
    falls back to ``dcmread``, which reads or classifies the file.
    """
    try:
        if walker.buf[128:132] != b"DICM":
            return None
        pos, transfer_syntax = 132, None
        while True:  # group 2 is always explicit VR little endian
            tag, vr, length, start = walker.element(pos)
            if tag >> 16 != 0x0002:
                break
            if length == _UNDEFINED_LENGTH:
                return None
            if tag == 0x00020010:
                transfer_syntax = walker.bytes_at(start, length).decode("ascii").strip(" \x00")
            pos = start + length
        encoding = _walkable_syntax(transfer_syntax) if transfer_syntax else None
        if encoding is None:
            return None
        ts, implicit, little = encoding
        walker.set_encoding(implicit, little)
        elements: dict[int, bytes] = {}
        pixel_offset = walker.walk(pos, elements)
        return ts, implicit, little, elements, pixel_offset
    except Exception:  # noqa: BLE001 - the dcmread fallback names the problem
        return None


def _read_dataset(fp) -> pydicom.Dataset:
    try:
        try:
            return pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=_SPECIFIC_TAGS)
        except InvalidDicomError as exc:
            # Legacy files without preamble: accept only if an image header parses.
            fp.seek(0)
            try:
                ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=_SPECIFIC_TAGS, force=True)
            except Exception:
                ds = None
            if ds is None or not all(t in ds for t in (0x00280010, 0x00280011, 0x00280100)):
                raise QuarantineError(
                    "not_dicom", f"no DICOM preamble/'DICM' prefix and no image header: {exc}"
                ) from exc
            return ds
    except QuarantineError:
        raise
    except EOFError as exc:
        raise QuarantineError("truncated", f"file ends inside the header: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on malformed headers
        raise QuarantineError("read_error", f"{type(exc).__name__}: {exc}") from exc


def read_header_row(path: str | os.PathLike, rel_path: str, *, fast: bool = True) -> tuple:
    """One file's worker columns (``_WORKER_COLUMNS`` order); raises QuarantineError.

    ``fast=False`` always goes through ``dcmread`` (used by tests to check both paths agree).
    """
    _, study_id, series_id, instance_number = parse_image_path(rel_path)
    # A bare descriptor and pread: no file object, no seeks on the hot path.
    fd = os.open(path, os.O_RDONLY)
    try:
        file_size = os.fstat(fd).st_size
        walker = _HeaderWalker(fd, file_size)
        parsed = _fast_header(walker) if fast else None
        if parsed is not None:
            ts, implicit_vr, little_endian, elements, header_end = parsed
        else:
            with open(fd, "rb", closefd=False) as fp:
                ds = _read_dataset(fp)
                header_end = fp.tell()  # dcmread leaves the file at the PixelData element
            try:
                ts = _transfer_syntax(ds)
                implicit_vr, little_endian = ds.original_encoding
            except Exception as exc:  # noqa: BLE001
                raise QuarantineError("read_error", f"cannot tell the transfer syntax: {exc}") from exc
            elements = {tag: ds.get_item(tag) for tag in _HEADER_TAGS if tag in ds}
        header = _raw_header(elements, little_endian)
        missing = [k for k in _REQUIRED_TAGS if k not in header]
        if missing:
            raise QuarantineError("missing_tags", "missing required tags: " + ", ".join(missing))

        rows, columns = header["Rows"], header["Columns"]
        bits_allocated, bits_stored = header["BitsAllocated"], header["BitsStored"]
        samples = header["SamplesPerPixel"]
        photometric = header["PhotometricInterpretation"][0]
        try:
            frames = int(header.get("NumberOfFrames", ["1"])[0])
        except ValueError as exc:
            raise QuarantineError(
                "bad_geometry", f"NumberOfFrames is not an integer: {header['NumberOfFrames']}"
            ) from exc
        if rows <= 0 or columns <= 0:
            raise QuarantineError("bad_geometry", f"image size {rows}x{columns}")
        if frames != 1 or samples != 1 or bits_allocated not in (8, 16, 32) \
                or photometric not in ("MONOCHROME1", "MONOCHROME2") or not 0 < bits_stored <= bits_allocated:
            raise QuarantineError(
                "unsupported_pixel_layout",
                f"frames={frames}, samples_per_pixel={samples}, bits_allocated={bits_allocated}, "
                f"bits_stored={bits_stored}, photometric={photometric} "
                "(want one greyscale frame of 8/16/32 bits)",
            )

        spacing = _numbers(header, "PixelSpacing", 2)
        if min(spacing) <= 0:
            raise QuarantineError("bad_geometry", f"PixelSpacing {spacing} is not positive")
        ipp = _numbers(header, "ImagePositionPatient", 3)
        rx, ry, rz, cx, cy, cz = iop = _numbers(header, "ImageOrientationPatient", 6)
        normal = (ry * cz - rz * cy, rz * cx - rx * cz, rx * cy - ry * cx)
        if math.hypot(*normal) < 1e-3:
            raise QuarantineError("bad_geometry", f"ImageOrientationPatient {iop} is degenerate")

        if header_end >= file_size:
            raise QuarantineError("no_pixel_data", "the header ends without a PixelData element")
        compressed, deflated, decodable = _syntax_flags(str(ts))
        if compressed and not decodable:
            raise QuarantineError("unsupported_transfer_syntax", f"no installed decoder for {ts} ({ts.name})")
        # Deflated: positions refer to the inflated stream, and pydicom has read it whole.
        if not deflated:
            expected = _expected_pixel_bytes(rows, columns, frames, samples, bits_allocated)
            _check_pixel_data(
                walker.bytes_at, file_size, header_end, implicit_vr, little_endian, compressed, expected
            )
    finally:
        os.close(fd)

    instance_tag = _optional_number(header, "InstanceNumber")
    modality = header.get("Modality")
    return (
        study_id,
        series_id,
        instance_number,
        rel_path,
        int(instance_tag) if instance_tag is not None and instance_tag.is_integer() else None,
        rows,
        columns,
        spacing[0],
        spacing[1],
        _optional_number(header, "SliceThickness"),
        _optional_number(header, "SpacingBetweenSlices"),
        *ipp,
        *iop,
        *normal,
        ipp[0] * normal[0] + ipp[1] * normal[1] + ipp[2] * normal[2],
        str(ts),
        photometric,
        modality[0] if modality else None,
        bits_allocated,
        bits_stored,
        samples,
        file_size,
    )


def _scan_chunk(root: str, rel_paths: Sequence[str]) -> tuple[list[tuple], list[tuple]]:
    """Worker: rows and (path, error_type, message) quarantine tuples for one chunk."""
    rows: list[tuple] = []
    bad: list[tuple] = []
    with warnings.catch_warnings():
        # pydicom warns on every odd value; the quarantine table is the record.
        warnings.simplefilter("ignore")
        for rel in rel_paths:
            try:
                rows.append(read_header_row(os.path.join(root, rel), rel))
            except QuarantineError as exc:
                bad.append((rel, exc.error_type, exc.message))
            except Exception as exc:  # noqa: BLE001 - one bad file must never fail the run
                bad.append((rel, "read_error", f"{type(exc).__name__}: {exc}"))
    return rows, bad


# ----------------------------------------------------------------------------- many files


def _chunks_by_study(rel_paths: Sequence[str], workers: int) -> list[list[str]]:
    """Whole studies per chunk, merged up to a size that gives each worker several chunks."""
    by_study: dict[str, list[str]] = {}
    for rel in rel_paths:
        parts = rel.split("/")
        by_study.setdefault("/".join(parts[:2]), []).append(rel)
    target = max(16, min(1024, len(rel_paths) // max(1, workers * 4)))
    chunks: list[list[str]] = []
    current: list[str] = []
    for files in by_study.values():
        current.extend(files)
        if len(current) >= target:
            chunks.append(current)
            current = []
    if current:
        chunks.append(current)
    return chunks


def scan_files(
    rel_paths: Iterable[str],
    root: str | os.PathLike,
    *,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read the headers of ``root/rel_path`` for each path (relative to root, or absolute under it).

    Returns (metadata, quarantine) with METADATA_SCHEMA (series_description left null) and
    QUARANTINE_SCHEMA. ``workers`` <= 1 reads in this process; None uses os.cpu_count().
    ``progress(done_files, total_files)`` is called after each chunk.
    """
    root_path = Path(root)
    rel_paths = sorted(
        Path(p).relative_to(root_path).as_posix() if Path(p).is_absolute() else Path(p).as_posix()
        for p in rel_paths
    )
    root = str(root_path)
    workers = os.cpu_count() or 1 if workers is None else workers
    total = len(rel_paths)
    chunks = _chunks_by_study(rel_paths, workers)
    rows: list[tuple] = []
    bad: list[tuple] = []
    done = 0
    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            chunk_rows, chunk_bad = _scan_chunk(root, chunk)
            rows.extend(chunk_rows)
            bad.extend(chunk_bad)
            done += len(chunk)
            if progress:
                progress(done, total)
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
            futures = {pool.submit(_scan_chunk, root, chunk): len(chunk) for chunk in chunks}
            for future in as_completed(futures):
                chunk_rows, chunk_bad = future.result()
                rows.extend(chunk_rows)
                bad.extend(chunk_bad)
                done += futures[future]
                if progress:
                    progress(done, total)

    worker_schema = {c: METADATA_SCHEMA[c] for c in _WORKER_COLUMNS}
    metadata = pl.DataFrame(rows, schema=worker_schema, orient="row")
    split = pl.col("path").str.split("/").list.first().replace_strict(SPLIT_DIRS, default=None)
    metadata = (
        metadata.with_columns(split.alias("split"), pl.lit(None, pl.Utf8).alias("series_description"))
        .select(list(METADATA_SCHEMA))
        .sort("split", "study_id", "series_id", "instance_number")
    )
    quarantine = pl.DataFrame(
        [(p, QUARANTINE_STAGE, t, m) for p, t, m in bad], schema=QUARANTINE_SCHEMA, orient="row"
    ).sort("path")
    return metadata, quarantine


def read_series_descriptions(raw_dir: str | os.PathLike) -> pl.DataFrame:
    """(split, study_id, series_id, series_description) from the series CSVs that exist.

    Validated like the label tables (``LabelValidationError`` names file, row and column).
    """
    rows = []
    for split, name in SERIES_FILES.items():
        path = Path(raw_dir) / name
        if path.is_file():
            rows.extend((split, st, se, d) for (st, se), d in read_series_file(path).items())
    return pl.DataFrame(rows, schema=_DESCRIPTION_SCHEMA, orient="row")


def scan_dicom_folder(
    raw_dir: str | os.PathLike,
    *,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Scan ``raw_dir/train_images`` and ``raw_dir/test_images``; return (metadata, quarantine)."""
    raw_dir = Path(raw_dir)
    metadata, quarantine = scan_files(list_image_files(raw_dir), raw_dir, workers=workers, progress=progress)
    descriptions = read_series_descriptions(raw_dir).rename({"series_description": "_description"})
    metadata = (
        metadata.join(descriptions, on=["split", "study_id", "series_id"], how="left")
        .with_columns(pl.col("_description").alias("series_description"))
        .select(list(METADATA_SCHEMA))
    )
    return metadata, quarantine


def write_metadata(
    metadata: pl.DataFrame, quarantine: pl.DataFrame, out_dir: str | os.PathLike
) -> tuple[Path, Path]:
    """Write ``dicom_metadata.parquet`` and ``quarantine.parquet`` atomically into out_dir."""
    for name, df, schema in (
        ("metadata", metadata, METADATA_SCHEMA),
        ("quarantine", quarantine, QUARANTINE_SCHEMA),
    ):
        if dict(df.schema) != schema:
            raise ValueError(f"{name} table does not have the contract schema: {dict(df.schema)}")
    out_dir = Path(out_dir)
    return (
        atomic.write_parquet(metadata, out_dir / METADATA_FILE),
        atomic.write_parquet(quarantine, out_dir / QUARANTINE_FILE),
    )


# ----------------------------------------------------------------------------- pixels


def read_pixels(path: str | os.PathLike) -> np.ndarray:
    """Decoded pixels as float32, rescaled (slope/intercept), MONOCHROME1 inverted.

    Compressed transfer syntaxes decode through the installed pylibjpeg / pyjpegls plugins.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array.astype(np.float32)
    # Rescale only applies to single-sample images; pydicom leaves it to the caller.
    slope = ds.get("RescaleSlope")
    intercept = ds.get("RescaleIntercept")
    if slope not in (None, "") and float(slope) != 1.0:
        pixels *= np.float32(float(slope))
    if intercept not in (None, "") and float(intercept) != 0.0:
        pixels += np.float32(float(intercept))
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1" and pixels.size:
        # Bright is low in MONOCHROME1: mirror within the value range.
        pixels = pixels.max() + pixels.min() - pixels
    return pixels
