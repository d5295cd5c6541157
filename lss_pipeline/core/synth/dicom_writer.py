"""Encode one synthetic MR slice as a real DICOM file (pydicom).

Explicit VR Little Endian by default; a site may export Implicit VR, RLE, JPEG-LS, JPEG 2000
(lossless or lossy) or 8-bit JPEG baseline (see ``TRANSFER_SYNTAXES``). UIDs are derived from
the seed and ids (no clock, no randomness), so the same seed gives the same bytes. Fake PHI is
planted on purpose so downstream code can prove it drops it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    JPEGLSNearLossless,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

from lss_pipeline.core.synth.plane import SlicePlane

# Per-sequence acquisition tags, roughly like the real sites' protocols.
SEQUENCE_TAGS: dict[str, dict[str, object]] = {
    "Sagittal T1": {"RepetitionTime": 500.0, "EchoTime": 9.0, "ScanningSequence": "SE"},
    "Sagittal T2/STIR": {"RepetitionTime": 3500.0, "EchoTime": 100.0, "ScanningSequence": "SE"},
    "Axial T2": {"RepetitionTime": 4000.0, "EchoTime": 105.0, "ScanningSequence": "SE"},
}

# Name -> (transfer syntax, keyword arguments of pydicom's Dataset.compress, lossy). pydicom 3
# encodes RLE itself, JPEG-LS with pyjpegls and JPEG 2000 with pylibjpeg-openjpeg; it has no JPEG
# baseline encoder, so that one is written with Pillow (8-bit, the only depth baseline allows).
TRANSFER_SYNTAXES: dict[str, tuple[UID, dict, bool]] = {
    "explicit_le": (ExplicitVRLittleEndian, {}, False),
    "implicit_le": (ImplicitVRLittleEndian, {}, False),
    "rle": (RLELossless, {}, False),
    "jpegls_lossless": (JPEGLSLossless, {}, False),
    "jpegls_near": (JPEGLSNearLossless, {"jls_error": 2}, True),
    "jpeg2000_lossless": (JPEG2000Lossless, {}, False),
    "jpeg2000": (JPEG2000, {"j2k_cr": [6]}, True),
    "jpeg_baseline": (JPEGBaseline8Bit, {}, True),
}
JPEG_BASELINE_QUALITY = 92
LOSSY_METHOD = {JPEGLSNearLossless: "ISO_14495_1", JPEG2000: "ISO_15444_1", JPEGBaseline8Bit: "ISO_10918_1"}

FAKE_FIRST = ("Ada", "Bram", "Chen", "Dora", "Emil", "Fay", "Gus", "Hana", "Ivo", "Jun")
FAKE_LAST = ("Fictus", "Placebo", "Synthman", "Noname", "Mockley", "Phantomsen")


def deterministic_uid(seed: int, *parts: object) -> UID:
    return generate_uid(entropy_srcs=["lss-pipeline-synth", str(seed), *(str(p) for p in parts)])


@dataclass(frozen=True)
class StudyTags:
    study_id: int
    seed: int
    site: str  # e.g. "Site 3": InstitutionName is "Synthetic Site 3"

    @property
    def study_uid(self) -> str:
        return deterministic_uid(self.seed, "study", self.study_id)

    @property
    def frame_uid(self) -> str:
        return deterministic_uid(self.seed, "frame", self.study_id)

    def fake_phi(self) -> dict[str, str]:
        """Planted, obviously fake patient identity (PatientName, PatientID, birth date, address)."""
        n = self.study_id
        return {
            "PatientName": f"{FAKE_LAST[n % len(FAKE_LAST)]}^{FAKE_FIRST[(n // 7) % len(FAKE_FIRST)]}",
            "PatientID": f"SYNTH{n:010d}",
            "PatientBirthDate": f"19{40 + n % 50:02d}{1 + n % 12:02d}{1 + n % 28:02d}",
            "PatientAddress": f"{1 + n % 99} Fake Street, Nowhere {n % 9000 + 1000}",
            "PatientSex": "F" if n % 2 else "M",
        }


def encode_instance(
    pixels: np.ndarray,
    plane: SlicePlane,
    study: StudyTags,
    series_id: int,
    series_number: int,
    series_description: str,
    instance_number: int,
    bits_stored: int = 12,
    with_spacing_tags: bool = True,
    spacing_between_slices: float | None = None,
    transfer_syntax: str = "explicit_le",
) -> bytes:
    """The bytes of one MR DICOM file holding ``pixels`` (uint16, rows × cols) in ``transfer_syntax``
    (a key of TRANSFER_SYNTAXES; ``jpeg_baseline`` keeps the top 8 of the 12 bits)."""
    if pixels.dtype != np.uint16 or pixels.shape != (plane.rows, plane.cols):
        raise ValueError(
            f"pixels must be uint16 {plane.rows}x{plane.cols}, got {pixels.dtype} {pixels.shape}"
        )
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(f"unknown transfer syntax {transfer_syntax!r}; known: {sorted(TRANSFER_SYNTAXES)}")
    uid, compress_kwargs, lossy = TRANSFER_SYNTAXES[transfer_syntax]
    if uid == JPEGBaseline8Bit:
        pixels = (pixels >> (bits_stored - 8)).astype(np.uint8)
        bits_stored = 8
    sop_uid = deterministic_uid(study.seed, "sop", study.study_id, series_id, instance_number)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = deterministic_uid(study.seed, "series", study.study_id, series_id)
    ds.FrameOfReferenceUID = study.frame_uid
    ds.Modality = "MR"
    ds.Manufacturer = "lss_pipeline synthetic phantom"
    ds.InstitutionName = f"Synthetic {study.site}"
    ds.StudyDate = "20200101"
    ds.StudyID = str(study.study_id % 100000)
    for key, value in study.fake_phi().items():
        setattr(ds, key, value)
    ds.BodyPartExamined = "LSPINE"
    ds.SeriesDescription = series_description
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.MRAcquisitionType = "2D"
    for key, tag_value in SEQUENCE_TAGS[series_description].items():
        setattr(ds, key, tag_value)
    ds.ImagePositionPatient = [round(v, 6) for v in plane.ipp]
    ds.ImageOrientationPatient = [round(v, 8) for v in (*plane.row_dir, *plane.col_dir)]
    ds.PixelSpacing = [round(plane.pixel_spacing[0], 6), round(plane.pixel_spacing[1], 6)]
    ds.SliceLocation = round(float(np.dot(plane.ipp, plane.normal)), 6)
    if with_spacing_tags:
        ds.SliceThickness = round(plane.thickness, 4)
        ds.SpacingBetweenSlices = round(spacing_between_slices or plane.thickness, 4)
    ds.Rows, ds.Columns = plane.rows, plane.cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8 if pixels.dtype == np.uint8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    peak = max(int(pixels.max()), 1)
    ds.WindowCenter = peak // 2
    ds.WindowWidth = peak
    if uid == JPEGBaseline8Bit:
        ds.PixelData = encapsulate([_jpeg_baseline(pixels)])
        ds["PixelData"].VR = "OB"
        meta.TransferSyntaxUID = uid
    else:
        ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
        if uid.is_compressed:
            ds.compress(uid, generate_instance_uid=False, **compress_kwargs)
        else:
            meta.TransferSyntaxUID = uid
    if lossy:
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = LOSSY_METHOD[uid]

    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _jpeg_baseline(pixels: np.ndarray) -> bytes:
    """One 8-bit greyscale JPEG baseline frame (Pillow; deterministic for the same pixels)."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(out, format="JPEG", quality=JPEG_BASELINE_QUALITY)
    return out.getvalue()
