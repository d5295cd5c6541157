"""Pixel decoding for the crops: compressed syntaxes, rescale, MONOCHROME1."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from lss_pipeline.core.dicom.pixels import read_pixels

from .fakes import write_mr


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
    ],
)
def test_lossless_decoding_matches_uncompressed(name):
    reference = read_pixels(get_testdata_file("MR_small.dcm"))
    pixels = read_pixels(get_testdata_file(name))
    assert pixels.dtype == np.float32 and pixels.shape == (64, 64)
    np.testing.assert_array_equal(pixels, reference)


def test_jpeg_baseline_decodes_close_to_lossless_copy():
    # JPEG baseline (1.2.840.10008.1.2.4.50) against the RLE copy of the same image
    lossy = read_pixels(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    lossless = read_pixels(get_testdata_file("SC_rgb_rle.dcm"))
    assert lossy.shape == lossless.shape == (100, 100, 3)
    assert np.abs(lossy - lossless).mean() < 3.0


@pytest.mark.parametrize(
    "name, shape", [("JPEG2000.dcm", (1024, 256)), ("JPEGLSNearLossless_16.dcm", (50, 10))]
)
def test_lossy_jpeg2000_and_jpegls_decode(name, shape):
    pixels = read_pixels(get_testdata_file(name))
    assert pixels.shape == shape and pixels.dtype == np.float32 and np.ptp(pixels) > 0


@pytest.mark.parametrize(
    "uid, plugin",
    [
        (pydicom.uid.JPEGBaseline8Bit, "pylibjpeg"),
        (pydicom.uid.JPEG2000Lossless, "pylibjpeg"),
        (pydicom.uid.JPEG2000, "pylibjpeg"),
        (pydicom.uid.RLELossless, "pylibjpeg"),
        (pydicom.uid.JPEGLSLossless, "pyjpegls"),
        (pydicom.uid.JPEGLSNearLossless, "pyjpegls"),
    ],
)
def test_decoder_plugins_are_picked_up(uid, plugin):
    assert plugin in pydicom.pixels.get_decoder(uid).available_plugins


def test_rescale_and_monochrome1_inversion(tmp_path):
    raw = np.array([[0, 100], [200, 300]], dtype=np.uint16)
    path = write_mr(
        tmp_path / "m1.dcm",
        size=(2, 2),
        pixels=raw,
        photometric="MONOCHROME1",
        RescaleSlope=2.0,
        RescaleIntercept=-10.0,
    )
    rescaled = raw.astype(np.float32) * 2 - 10  # [-10, 190, 390, 590]
    expected = rescaled.max() + rescaled.min() - rescaled
    np.testing.assert_array_equal(read_pixels(path), expected)
    plain = write_mr(tmp_path / "m2.dcm", size=(2, 2), pixels=raw)
    np.testing.assert_array_equal(read_pixels(plain), raw.astype(np.float32))
