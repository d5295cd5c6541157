"""Decoded pixels of one DICOM file, for the crops."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pydicom


def read_pixels(path: str | os.PathLike) -> np.ndarray:
    """Decoded pixels as float32, rescaled (slope/intercept), MONOCHROME1 inverted.

    Compressed transfer syntaxes decode through the installed pylibjpeg / pyjpegls plugins.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns on odd values; the quarantine table is the record
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
