"""The container reader (pure, no ImageMagick): what it refuses, what it reads, and what it hands the decoder."""

from __future__ import annotations

import io
import re
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import exif as xf
from helpers import icc as test_icc
from helpers.images import (
    COM,
    exif_segment,
    ihdr,
    insert_segments,
    jpeg_bytes,
    jpeg_segments,
    png_bytes,
    png_chunk,
    png_chunks,
    png_from_chunks,
    segment,
    smooth_rgb,
)
from PIL import Image as PILImage

from worker.errors import CorruptImage, ImageTooComplex, ImageTooLarge, MetadataTooLarge, UnsupportedImage
from worker.imaging import egress
from worker.imaging.container import Limits, inspect
from worker.imaging.container.formats import BY_CODER, FORMATS

LIMITS = Limits(max_pixels=50_000_000, max_side=20_000, max_metadata_bytes=8 * 2**20, max_jpeg_scans=64)
RGB = smooth_rgb(64, 48)


def deflate_zeros(n: int) -> bytes:
    z = zlib.compressobj(9)
    return b"".join(z.compress(b"\0" * 2**20) for _ in range(n // 2**20)) + z.compress(b"\0" * (n % 2**20)) + z.flush()


def with_chunks(png: bytes, *chunks: bytes) -> bytes:
    return png[:33] + b"".join(chunks) + png[33:]  # right after IHDR


# -- PNG -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "chunk",
    [
        png_chunk(b"zTXt", b"Comment\0\0" + deflate_zeros(1 << 30)),
        png_chunk(b"zTXt", b"Raw profile type exif\0\0" + deflate_zeros(64 << 20)),
        png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\1\0\0\0" + deflate_zeros(64 << 20)),
        png_chunk(b"iCCP", b"icc\0\0" + deflate_zeros(64 << 20)),
        png_chunk(b"tEXt", b"Comment\0" + b"x" * (9 << 20)),
    ],
    ids=["ztxt-1gib", "raw-profile-exif", "itxt-xmp", "iccp", "plain-text-9mib"],
)
def test_metadata_bombs_are_refused_quickly_without_inflating_them(chunk):
    data = with_chunks(png_bytes(RGB), chunk)
    start = time.process_time()
    with pytest.raises(MetadataTooLarge, match="MAX_METADATA_BYTES"):
        inspect(data, LIMITS)
    assert time.process_time() - start < 5  # generous: what matters is that it is not minutes (or gigabytes)


def test_png_clean_copy_keeps_only_pixel_chunks_and_reads_colour_and_orientation():
    profile = test_icc.display_p3()
    chunks = [
        png_chunk(b"tEXt", b"Author\0SECRET"),
        png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"SECRET")),
        png_chunk(b"eXIf", xf.orientation_only(6)),
        png_chunk(b"iCCP", b"icc\0\0" + zlib.compress(profile)),
        png_chunk(b"gAMA", struct.pack(">I", 45455)),
        png_chunk(b"sRGB", b"\0"),
    ]
    found = inspect(with_chunks(png_bytes(RGB), *chunks), LIMITS)
    assert [k for k, _ in png_chunks(found.decoder_input)] == [b"IHDR", b"IDAT", b"IEND"]
    assert (found.width, found.height, found.orientation) == (64, 48, 6)
    assert found.icc == profile
    assert found.gamma == pytest.approx(0.45455)
    assert found.srgb
    assert np.array_equal(np.asarray(PILImage.open(io.BytesIO(found.decoder_input))), RGB)  # the same pixels


def test_png_refusals():
    with pytest.raises(ImageTooLarge, match="MAX_PIXELS"):
        inspect(
            png_from_chunks(ihdr(100_000, 100_000), png_chunk(b"IDAT", zlib.compress(b"\0")), png_chunk(b"IEND", b"")),
            LIMITS,
        )
    apng = with_chunks(png_bytes(RGB), png_chunk(b"acTL", struct.pack(">II", 2, 0)))
    with pytest.raises(UnsupportedImage, match="animated"):
        inspect(apng, LIMITS)
    with pytest.raises(CorruptImage, match="critical"):
        inspect(with_chunks(png_bytes(RGB), png_chunk(b"QUUX", b"")), LIMITS)
    with pytest.raises(CorruptImage, match="truncated"):
        inspect(png_bytes(RGB)[:-20], LIMITS)


# -- JPEG ----------------------------------------------------------------------------------------------------------
def test_jpeg_clean_copy_drops_every_app_and_comment_segment_and_trailing_images():
    profile = test_icc.display_p3()
    half = len(profile) // 2
    icc_parts = [
        segment(0xE2, b"ICC_PROFILE\0" + bytes([i + 1, 2]) + p) for i, p in enumerate((profile[:half], profile[half:]))
    ]
    data = insert_segments(
        jpeg_bytes(RGB, 90),
        [
            exif_segment(xf.orientation_only(8)),
            segment(COM, b"SECRET"),
            segment(0xED, b"Photoshop 3.0\0SECRET"),
            *icc_parts,
        ],
    )
    data += jpeg_bytes(smooth_rgb(16, 16), 80)  # an MPF-style second image after EOI
    found = inspect(data, LIMITS)
    markers = [m for m, _ in jpeg_segments(found.decoder_input)]
    assert not [m for m in markers if 0xE1 <= m <= 0xEF or m == COM]
    assert b"SECRET" not in found.decoder_input
    assert found.decoder_input.count(b"\xff\xd8") == 1
    assert found.decoder_input.endswith(b"\xff\xd9")
    assert found.icc == profile
    assert (found.width, found.height, found.orientation) == (64, 48, 8)
    assert np.array_equal(
        np.asarray(PILImage.open(io.BytesIO(found.decoder_input))), np.asarray(PILImage.open(io.BytesIO(data)))
    )


def test_jpeg_refusals():
    base = jpeg_bytes(RGB, 90)
    with pytest.raises(MetadataTooLarge):
        inspect(insert_segments(base, [segment(COM, b"c" * 65_000)] * 160), LIMITS)
    sof = next(i for i in range(len(base)) if base[i] == 0xFF and base[i + 1] in (0xC0, 0xC2))
    huge = base[: sof + 5] + struct.pack(">HH", 65000, 65000) + base[sof + 9 :]
    with pytest.raises(ImageTooLarge):
        inspect(huge, LIMITS)
    # A progressive JPEG whose scans repeat until there are 65: a full pass over the image each.
    buf = io.BytesIO()
    PILImage.fromarray(RGB).save(buf, "JPEG", progressive=True)
    prog = buf.getvalue()
    first_sos = prog.index(b"\xff\xda")
    scans = prog[first_sos:-2]
    many = prog[:first_sos] + scans * (65 // prog.count(b"\xff\xda") + 1) + b"\xff\xd9"
    with pytest.raises(ImageTooComplex, match="MAX_JPEG_SCANS"):
        inspect(many, LIMITS)
    assert inspect(prog, LIMITS).width == 64  # an ordinary progressive JPEG is fine


# -- WebP ----------------------------------------------------------------------------------------------------------
def riff(*chunks: tuple[bytes, bytes]) -> bytes:
    body = b"".join(k + struct.pack("<I", len(b)) + b + b"\0" * (len(b) & 1) for k, b in chunks)
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def test_webp_metadata_is_dropped_and_animation_refused():
    buf = io.BytesIO()
    PILImage.fromarray(RGB).save(
        buf, "WEBP", exif=b"Exif\0\0" + xf.orientation_only(3), icc_profile=test_icc.display_p3()
    )
    found = inspect(buf.getvalue(), LIMITS)
    assert (found.width, found.height, found.orientation) == (64, 48, 3)
    assert found.icc == test_icc.display_p3()
    assert b"EXIF" not in found.decoder_input
    assert b"ICCP" not in found.decoder_input
    assert np.asarray(PILImage.open(io.BytesIO(found.decoder_input))).shape == (48, 64, 3)
    vp8x_animated = bytes([0x02, 0, 0, 0]) + (63).to_bytes(3, "little") + (47).to_bytes(3, "little")
    with pytest.raises(UnsupportedImage, match="animated"):
        inspect(riff((b"VP8X", vp8x_animated), (b"ANIM", b"\0" * 6)), LIMITS)
    huge = bytes([0, 0, 0, 0]) + (16382).to_bytes(3, "little") + (16382).to_bytes(3, "little")
    with pytest.raises(ImageTooLarge):
        inspect(riff((b"VP8X", huge), (b"VP8L", b"\x2f" + b"\0" * 10)), LIMITS)
    with pytest.raises(MetadataTooLarge):
        inspect(riff((b"VP8X", bytes(10)), (b"XMP ", b"x" * (9 << 20))), LIMITS)


# -- the format table ----------------------------------------------------------------------------------------------
def test_each_format_of_the_table_is_recognised_by_its_own_magic_only():
    pil = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
    for fmt in FORMATS:
        if fmt.coder not in pil:
            continue  # HEIC: test_heic.py (pillow-heif encodes it)
        buf = io.BytesIO()
        PILImage.fromarray(RGB).save(buf, pil[fmt.coder])
        assert [f.coder for f in FORMATS if f.magic(buf.getvalue())] == [fmt.coder]
        assert inspect(buf.getvalue(), LIMITS).coder == fmt.coder


def test_the_table_is_consistent_and_egress_checks_every_output():
    coders = [f.coder for f in FORMATS]
    assert len(set(coders)) == len(coders)
    suffixes = [s for f in FORMATS for s in f.suffixes]
    assert len(set(suffixes)) == len(suffixes)
    assert all(s.startswith(".") and s == s.lower() for s in suffixes)
    for fmt in FORMATS:
        # A read-only format is written as another format of the table; the others as themselves.
        assert fmt.output in coders
        assert (fmt.output != fmt.coder) == fmt.read_only
        assert fmt.content_type == BY_CODER[fmt.output].content_type
    assert {f.output for f in FORMATS} == set(egress.FORMATS)


def test_the_policy_grants_exactly_the_coders_of_the_table():
    """policy.xml (the second wall) and the table name the same coders, with the same rights."""
    policy = (Path(__file__).resolve().parents[2] / "worker" / "imaging" / "policy" / "policy.xml").read_text()
    rights: dict[str, str] = {}
    for right, pattern in re.findall(r'domain="coder" rights="([a-z|]+)" pattern="([^"]+)"', policy):
        for name in pattern.strip("{}").split(","):
            rights[name] = right
    granted = {name: right for name, right in rights.items() if right != "none" and name not in {"RGB", "RGBA", "GRAY"}}
    expected = {name: "read" if f.read_only else "read|write" for f in FORMATS for name in f.policy_names}
    assert granted == expected
