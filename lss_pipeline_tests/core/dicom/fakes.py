"""Small DICOM files with planted fake PHI, written with pydicom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from lss_pipeline.core.paths import Paths

FAKE_PHI = {
    "PatientName": "Fake^Patient",
    "PatientID": "PHI-ID-0001",
    "PatientBirthDate": "19450101",
    "PatientAddress": "1 Fake Street",
    "OtherPatientIDs": "PHI-OTHER-7",
}


def paths_for(raw: Path, data: Path | None = None) -> Paths:
    return Paths(data_dir=data or raw.parent / "data", raw_dir=raw)


def write_mr(
    path: Path,
    *,
    size=(12, 10),
    instance=1,
    ipp=(10.0, -20.0, 30.0),
    iop=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
    spacing=(0.5, 0.8),
    photometric="MONOCHROME2",
    pixels: np.ndarray | None = None,
    drop: tuple[str, ...] = (),
    **extra,
) -> Path:
    """A small explicit-VR MR slice with planted fake PHI."""
    rows, columns = size
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    for key, value in FAKE_PHI.items():
        setattr(ds, key, value)
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "MR"
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = list(ipp)
    ds.ImageOrientationPatient = list(iop)
    ds.PixelSpacing = list(spacing)
    ds.SliceThickness = 4.0
    ds.SpacingBetweenSlices = 4.4
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for key, value in extra.items():
        setattr(ds, key, value)
    if pixels is None:
        pixels = (np.arange(rows * columns, dtype=np.uint16) % 4000).reshape(rows, columns)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    for key in drop:
        delattr(ds, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
