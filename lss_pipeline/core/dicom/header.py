"""One DICOM file's header -> one metadata row, or a QuarantineError saying why not.

pydicom reads the header (``dcmread(stop_before_pixels=True, specific_tags=...)``); only the
tags in ``HEADER_TAGS`` are parsed, so no patient-identifying tag can reach an output. pydicom
stops quietly where a cut file ends, so the reads are watched (``_EndWatch``) to tell a file
cut short (``truncated``) from a complete one that lacks tags or pixel data. The PixelData
length is then checked against the file size without decoding anything.
"""

from __future__ import annotations

import functools
import math
import os
import struct
import warnings
from typing import IO, Any

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import UID

from lss_pipeline.core.dicom.layout import parse_image_path
from lss_pipeline.core.dicom.schema import QuarantineError

# The only tags ever parsed (tag -> (keyword, VR)). Keep PHI out of this table.
HEADER_TAGS: dict[int, tuple[str, str]] = {
    0x00080016: ("SOPClassUID", "UI"),
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
REQUIRED_TAGS: tuple[str, ...] = (
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
_SPECIFIC_TAGS = list(HEADER_TAGS)
_PIXEL_DATA_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
_LONG_LENGTH_VRS = frozenset({b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UN", b"UC", b"UR", b"UT"})
_UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM, _SEQUENCE_DELIMITER = 0xFFFEE000, 0xFFFEE0DD
_MAX_FRAGMENTS = 1_000_000


class _EndWatch:
    """A file wrapper that counts short reads, so a cut file can be told from a complete one.

    A complete dataset without PixelData ends with exactly one empty read (pydicom asking for
    the next element header at the end of the file). Anything else short means a cut.
    """

    def __init__(self, fp: IO[bytes]) -> None:
        self._fp = fp
        self.name = getattr(fp, "name", "<file>")
        self.short_reads = 0
        self.partial_read = False

    def read(self, size: int = -1) -> bytes:
        data = self._fp.read(size)
        if size is not None and 0 <= len(data) < size:
            self.short_reads += 1
            self.partial_read |= len(data) > 0
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._fp.seek(offset, whence)

    def tell(self) -> int:
        return self._fp.tell()

    def reset(self) -> None:
        self.short_reads, self.partial_read = 0, False

    def cut(self, stop: int, size: int) -> bool:
        """True when the reads that ended at ``stop`` met the end of a file of ``size`` bytes mid-element."""
        return stop > size or self.partial_read or self.short_reads > 1


def _read_dataset(fp: _EndWatch) -> pydicom.Dataset:
    try:
        try:
            return pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=_SPECIFIC_TAGS)
        except InvalidDicomError as exc:
            # Legacy files without preamble: accept only if an image header parses.
            fp.seek(0)
            fp.reset()
            try:
                ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=_SPECIFIC_TAGS, force=True)
            except Exception:  # noqa: BLE001 - any failure here means "not DICOM"
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
        if fp.short_reads:  # it failed on bytes that were not there: the file was cut
            raise QuarantineError(
                "truncated", f"file ends inside the header ({type(exc).__name__}: {exc})"
            ) from exc
        raise QuarantineError("read_error", f"{type(exc).__name__}: {exc}") from exc


def _transfer_syntax(ds: pydicom.Dataset) -> UID:
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if ts:
        return UID(str(ts))
    # No file meta: name the syntax pydicom guessed from the encoding.
    implicit, little = ds.original_encoding
    if not little:
        return pydicom.uid.ExplicitVRBigEndian
    return pydicom.uid.ImplicitVRLittleEndian if implicit else pydicom.uid.ExplicitVRLittleEndian


def _header_values(ds: pydicom.Dataset, little_endian: bool) -> dict[str, Any]:
    """``HEADER_TAGS`` values from the raw element bytes (no pydicom value conversion, which
    is slower and warns or raises on odd values). US tags become ints, others lists of strings."""
    header: dict[str, Any] = {}
    us = struct.Struct("<H" if little_endian else ">H")
    for tag, (keyword, vr) in HEADER_TAGS.items():
        if tag not in ds:
            continue
        elem = ds.get_item(tag)
        value = elem.value if elem is not None else None
        if value is None:
            continue
        if isinstance(value, bytes):
            if vr == "US":
                if len(value) >= 2:
                    header[keyword] = us.unpack_from(value)[0]
                continue
            text = value.decode("latin-1").strip(" \x00")
            if text:
                header[keyword] = [v.strip(" \x00") for v in text.split("\\")]
        elif vr == "US":
            header[keyword] = int(value)
        else:  # already converted by pydicom (e.g. a deflated dataset)
            values = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
            if values and str(values[0]).strip():
                header[keyword] = [str(v).strip() for v in values]
    return header


def _numbers(header: dict[str, Any], keyword: str, count: int) -> list[float]:
    values = header[keyword]
    if len(values) != count:
        raise QuarantineError(
            "bad_geometry", f"{keyword} has {len(values)} values, expected {count}: {values}"
        )
    try:
        out = [float(v) for v in values]
    except ValueError as exc:
        raise QuarantineError("bad_geometry", f"{keyword} is not numeric: {values}") from exc
    if not math.isfinite(sum(out)):  # nan and inf propagate through the sum
        raise QuarantineError("bad_geometry", f"{keyword} is not finite: {values}")
    return out


def _optional_number(header: dict[str, Any], keyword: str) -> float | None:
    """First value of a DS/IS tag, None when absent or unparseable (these tags are optional)."""
    values = header.get(keyword)
    try:
        value = float(values[0]) if values else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


@functools.lru_cache(maxsize=64)
def _syntax_flags(transfer_syntax: str) -> tuple[bool, bool, bool]:
    """(compressed, deflated, decodable) of a transfer syntax; cached, UID properties are slow."""
    uid = UID(transfer_syntax)
    compressed = uid.is_transfer_syntax and uid.is_compressed
    deflated = uid.is_transfer_syntax and uid.is_deflated
    try:
        decodable = compressed and bool(pydicom.pixels.get_decoder(uid).is_available)
    except NotImplementedError:
        decodable = False
    return compressed, deflated, decodable


def _is_image_storage(header: dict[str, Any], ds: pydicom.Dataset) -> bool:
    meta = getattr(ds, "file_meta", None)
    sop_class = header.get("SOPClassUID", [None])[0] or (
        meta.get("MediaStorageSOPClassUID") if meta else None
    )
    return bool(sop_class) and "Image Storage" in UID(str(sop_class)).name


def _pixel_data_at(fp: IO[bytes], pos: int, implicit: bool, little: bool) -> tuple[str, int, int] | None:
    """(name, value length, value start) of the pixel data element at ``pos``; None if there is none."""
    fp.seek(pos)
    head = fp.read(12)
    if len(head) < 8:
        return None
    endian = "<" if little else ">"
    group, element = struct.unpack(endian + "HH", head[:4])
    name = _PIXEL_DATA_TAGS.get((group << 16) | element)
    if name is None:
        return None
    if implicit:
        return name, struct.unpack(endian + "L", head[4:8])[0], pos + 8
    if head[4:6] in _LONG_LENGTH_VRS:
        if len(head) < 12:
            raise QuarantineError("truncated", f"file ends inside the {name} element header")
        return name, struct.unpack(endian + "L", head[8:12])[0], pos + 12
    return name, struct.unpack(endian + "H", head[6:8])[0], pos + 8


def _check_encapsulated(fp: IO[bytes], name: str, start: int, size: int) -> None:
    """Seek item by item to the sequence delimiter (no decoding); a cut file ends first."""
    pos = start
    for _ in range(_MAX_FRAGMENTS):
        fp.seek(pos)
        item = fp.read(8)
        if len(item) < 8:
            raise QuarantineError(
                "truncated", f"encapsulated {name} ends at byte {pos} without its delimiter"
            )
        group, element, length = struct.unpack("<HHL", item)
        tag = (group << 16) | element
        if tag == _SEQUENCE_DELIMITER:
            return
        if tag != _ITEM or length == _UNDEFINED_LENGTH:
            raise QuarantineError(
                "read_error", f"encapsulated {name}: unexpected tag {tag:08X} at byte {pos}"
            )
        pos += 8 + length
        if pos > size:
            raise QuarantineError("truncated", f"encapsulated {name} runs past the file end ({size} B)")
    raise QuarantineError("unsupported_pixel_layout", f"encapsulated {name}: over {_MAX_FRAGMENTS} fragments")


def _check_pixel_bytes(
    pixel: tuple[str, int, int], fp: IO[bytes], size: int, encapsulated: bool, expected: int
) -> None:
    name, length, start = pixel
    if length == _UNDEFINED_LENGTH:
        _check_encapsulated(fp, name, start, size)
        return
    if size - start < length:
        raise QuarantineError(
            "truncated", f"{name} needs {length} bytes from offset {start}, file has {size - start}"
        )
    if not encapsulated and length < expected:
        raise QuarantineError(
            "unsupported_pixel_layout",
            f"{name} holds {length} bytes, rows*columns*samples*frames*bits/8 needs {expected}",
        )


def _layout(header: dict[str, Any]) -> tuple[int, int, int, int, int, str, int]:
    """(rows, columns, bits allocated, bits stored, samples, photometric, frames), or quarantine."""
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
    if (
        frames != 1
        or samples != 1
        or bits_allocated not in (8, 16, 32)
        or photometric not in ("MONOCHROME1", "MONOCHROME2")
        or not 0 < bits_stored <= bits_allocated
    ):
        raise QuarantineError(
            "unsupported_pixel_layout",
            f"frames={frames}, samples_per_pixel={samples}, bits_allocated={bits_allocated}, "
            f"bits_stored={bits_stored}, photometric={photometric} "
            "(want one greyscale frame of 8/16/32 bits)",
        )
    return rows, columns, bits_allocated, bits_stored, samples, photometric, frames


def read_header_row(path: str | os.PathLike, rel_path: str) -> tuple:
    """One file's values in ``HEADER_COLUMNS`` order; raises QuarantineError."""
    _, study_id, series_id, instance_number = parse_image_path(rel_path)
    # pydicom warns on every odd value it converts; the quarantine table is the record.
    with open(path, "rb") as raw, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        size = os.fstat(raw.fileno()).st_size
        if size == 0:
            raise QuarantineError("empty", "the file has 0 bytes")
        watched = _EndWatch(raw)
        ds = _read_dataset(watched)
        stop = watched.tell()  # dcmread leaves the file at the PixelData element, if it has one
        try:
            ts = _transfer_syntax(ds)
            implicit, little = (bool(flag) for flag in ds.original_encoding)
        except Exception as exc:  # noqa: BLE001
            raise QuarantineError("read_error", f"cannot tell the transfer syntax: {exc}") from exc
        compressed, deflated, decodable = _syntax_flags(str(ts))
        header = _header_values(ds, little)
        # Deflated: positions refer to the inflated stream pydicom read whole; nothing to check here.
        pixel = None if deflated else _pixel_data_at(raw, min(stop, size), implicit, little)
        if pixel is None and not deflated and watched.cut(stop, size):
            raise QuarantineError("truncated", f"the file ends inside its header ({size} bytes)")

        missing = [k for k in REQUIRED_TAGS if k not in header]
        if missing:
            if pixel is None and not deflated and _is_image_storage(header, ds):
                # An image whose header stops before its image tags: cut on an element boundary.
                raise QuarantineError(
                    "truncated", f"image file ends at byte {size} before {', '.join(missing)} and PixelData"
                )
            raise QuarantineError("missing_tags", "missing required tags: " + ", ".join(missing))
        rows, columns, bits_allocated, bits_stored, samples, photometric, frames = _layout(header)
        spacing = _numbers(header, "PixelSpacing", 2)
        if min(spacing) <= 0:
            raise QuarantineError("bad_geometry", f"PixelSpacing {spacing} is not positive")
        ipp = _numbers(header, "ImagePositionPatient", 3)
        rx, ry, rz, cx, cy, cz = iop = _numbers(header, "ImageOrientationPatient", 6)
        normal = (ry * cz - rz * cy, rz * cx - rx * cz, rx * cy - ry * cx)
        if math.hypot(*normal) < 1e-3:
            raise QuarantineError("bad_geometry", f"ImageOrientationPatient {iop} is degenerate")

        if pixel is None and not deflated:
            raise QuarantineError(
                "no_pixel_data", f"the header ends at the end of the file ({size} B) without PixelData"
            )
        if compressed and not decodable:
            raise QuarantineError("unsupported_transfer_syntax", f"no installed decoder for {ts} ({ts.name})")
        if pixel is not None:
            n_values = rows * columns * frames * samples
            expected = (n_values + 7) // 8 if bits_allocated == 1 else n_values * (bits_allocated // 8)
            _check_pixel_bytes(pixel, raw, size, compressed, expected)

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
        size,
    )
