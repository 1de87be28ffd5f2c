"""The test helpers are references: check them against Pillow / zlib before trusting them."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from helpers import exif as xf
from helpers.images import (
    COM,
    correlation,
    gaussian_blur,
    highpass,
    insert_segments,
    iptc_segment,
    jpeg_bytes,
    jpeg_segments,
    png_bomb,
    png_chunks,
    png_ihdr,
    png_rgb16,
    png_rgb16_decode,
    segment,
    smooth_rgb,
    xmp_segment,
)
from PIL import ExifTags
from PIL import Image as PILImage


def test_exif_builder_is_read_by_pillow_including_gps_and_the_ifd1_thumbnail():
    thumb = jpeg_bytes(smooth_rgb(16, 12), 80)
    tiff = xf.tiff(
        ifd0=[(xf.TAG_MAKE, xf.ASCII, "ACME"), (xf.TAG_ORIENTATION, xf.SHORT, 6)],
        exif_ifd=[(xf.TAG_DATETIME_ORIGINAL, xf.ASCII, "2024:01:02 03:04:05")],
        gps_ifd=[(xf.GPS_LAT_REF, xf.ASCII, "N"), (xf.GPS_LAT, xf.RATIONAL, [(48, 1), (51, 1), (2940, 100)])],
        thumbnail=thumb,
    )
    exif = PILImage.Exif()
    exif.load(b"Exif\0\0" + tiff)
    assert exif[xf.TAG_MAKE] == "ACME"
    assert exif[xf.TAG_ORIENTATION] == 6
    assert exif.get_ifd(ExifTags.IFD.Exif)[xf.TAG_DATETIME_ORIGINAL] == "2024:01:02 03:04:05"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    assert gps[xf.GPS_LAT_REF] == "N"
    assert [float(v) for v in gps[xf.GPS_LAT]] == [48.0, 51.0, 29.4]
    ifd1 = exif.get_ifd(ExifTags.IFD.IFD1)
    offset, length = ifd1[xf.TAG_THUMB_OFFSET], ifd1[xf.TAG_THUMB_LENGTH]
    assert tiff[offset : offset + length] == thumb


def test_jpeg_segment_surgery_round_trips():
    base = jpeg_bytes(smooth_rgb(32, 24), 90)
    data = insert_segments(base, [segment(COM, b"hello"), xmp_segment("me"), iptc_segment(b"caption")])
    segments = jpeg_segments(data)
    assert segments[0] == (COM, b"hello")
    assert segments[1][1].startswith(b"http://ns.adobe.com/xap/1.0/\0")
    assert segments[2][1].startswith(b"Photoshop 3.0\0" + b"8BIM" + struct.pack(">H", 0x0404))
    with PILImage.open(io.BytesIO(data)) as im:
        im.load()
        assert im.info["comment"] == b"hello"
        assert im.size == (32, 24)


def test_png_rgb16_round_trip():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    data = png_rgb16(arr)
    assert png_ihdr(data) == (7, 5, 16, 2)
    assert np.array_equal(png_rgb16_decode(data), arr)
    with PILImage.open(io.BytesIO(data)) as im:  # a valid PNG for another decoder too
        assert im.size == (7, 5)
        im.load()


def test_png_bomb_is_valid_and_all_zero():
    data = png_bomb(1000, 700)
    assert png_ihdr(data) == (1000, 700, 8, 0)
    raw = zlib.decompress(b"".join(body for kind, body in png_chunks(data) if kind == b"IDAT"))
    assert len(raw) == 700 * 1001
    assert not any(raw)
    with PILImage.open(io.BytesIO(data)) as im:
        assert np.asarray(im).max() == 0


def test_measures():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(64, 64)), rng.normal(size=(64, 64))
    assert correlation(a, a) == pytest.approx(1.0)
    assert correlation(a, -a) == pytest.approx(-1.0)
    assert abs(correlation(a, b)) < 0.1
    assert np.allclose(gaussian_blur(np.full((20, 30), 7.0), 3.0), 7.0)
    assert np.abs(highpass(np.full((20, 30), 7.0), 3.0)).max() < 1e-9
    assert highpass(a, 2.0).std() > 0.5 * a.std()  # white noise is mostly high frequency
