"""The egress allow-list as a pure function: outputs built here (Pillow, hand-made chunks), never by the worker, each
either allowed as it is or refused with the name of the part that may not leave. No ImageMagick, no servers."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from helpers import hostile as h
from helpers.images import (
    COM,
    exif_segment,
    insert_segments,
    iptc_segment,
    jpeg_bytes,
    png_bytes,
    png_chunk,
    segment,
    smooth_rgb,
    xmp_segment,
)
from PIL import Image as PILImage

from worker.consumer.settlement import Action, decide
from worker.errors import OutputRefused, TransientError
from worker.imaging import egress, icc

W, H = 64, 48
RGB = smooth_rgb(W, H)
OURS = icc.canonical("p3")
THEIRS = h.display_p3_profile()  # a P3 profile that is not the worker's own bytes


def refusal(data: bytes, fmt: str, size: tuple[int, int] = (W, H)) -> str | None:
    return egress.refusal(data, fmt, size)


def iccp(profile: bytes) -> bytes:
    return png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(profile))


def after_ihdr(png: bytes, *chunks: bytes) -> bytes:
    return h.png_insert(png, *chunks)


def before_iend(png: bytes, *chunks: bytes) -> bytes:
    return png[:-12] + b"".join(chunks) + png[-12:]


# -- PNG -------------------------------------------------------------------------------------------------------------
def png_palette_with_alpha() -> bytes:
    im = PILImage.fromarray(RGB).quantize(16)
    im.info["transparency"] = 0
    buf = io.BytesIO()
    im.save(buf, "PNG", transparency=0)
    return buf.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        png_bytes(RGB),
        png_bytes(RGB[..., 0].copy()),
        png_bytes(np.dstack([RGB, RGB[..., :1]])),
        png_palette_with_alpha(),
        after_ihdr(png_bytes(RGB), iccp(OURS)),
    ],
    ids=["rgb", "grey", "rgba", "palette+tRNS", "our-iccp"],
)
def test_png_made_of_allowed_chunks_passes(data):
    assert refusal(data, "png") is None
    assert egress.release(data, "png", (W, H)) == data


@pytest.mark.parametrize(
    ("chunk", "named"),
    [
        (png_chunk(b"tEXt", b"Author\0" + h.CANARY), "tEXt"),
        (png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(h.CANARY)), "zTXt"),
        (png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + h.CANARY), "iTXt"),
        (png_chunk(b"eXIf", h.gps_exif()), "eXIf"),
        (png_chunk(b"gAMA", struct.pack(">I", 45455)), "gAMA"),
        (png_chunk(b"cHRM", bytes(32)), "cHRM"),
        (png_chunk(b"sRGB", b"\0"), "sRGB"),
        (png_chunk(b"pHYs", bytes(9)), "pHYs"),
        (png_chunk(b"bKGD", bytes(6)), "bKGD"),
        (png_chunk(b"tIME", bytes(7)), "tIME"),
        (png_chunk(b"zzZz", h.CANARY), "zzZz"),
        (png_chunk(b"acTL", bytes(8)), "acTL"),
        (iccp(THEIRS), "iCCP"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_png_with_any_other_chunk_is_refused_by_name(chunk, named):
    for data in (after_ihdr(png_bytes(RGB), chunk), before_iend(png_bytes(RGB), chunk)):
        problem = refusal(data, "png")
        assert problem is not None
        assert named in problem, problem


def test_png_refusals_of_shape_and_trailers():
    png = png_bytes(RGB)
    assert "after the end" in refusal(png + png_bytes(RGB[:8, :8]), "png")  # a second image after IEND
    assert "after the end" in refusal(png + b"x", "png")
    assert "IHDR declares 64x48" in refusal(png, "png", (48, 64))
    assert "16 bits" in refusal(h.png16_astronaut(), "png", (512, 512))
    assert "truncated" in refusal(png[:-20], "png")
    assert "signature" in refusal(b"GIF89a" + png, "png")
    assert "repeated" in refusal(after_ihdr(png, iccp(OURS), iccp(OURS)), "png")
    # An iCCP that is our profile followed by more data, or a zlib bomb, is not our profile.
    padded = png_chunk(b"iCCP", b"icc\0\0" + zlib.compress(OURS + h.CANARY))
    assert "iCCP" in refusal(after_ihdr(png, padded), "png")
    bomb = png_chunk(b"iCCP", b"icc\0\0" + h.deflate_repeated(1 << 30))
    assert "iCCP" in refusal(after_ihdr(png, bomb), "png")


# -- JPEG ------------------------------------------------------------------------------------------------------------
def jpeg(**params) -> bytes:
    return jpeg_bytes(RGB, 90, **params)


@pytest.mark.parametrize(
    "data",
    [
        jpeg(),
        jpeg(progressive=True),
        jpeg(restart_marker_blocks=2),
        jpeg_bytes(RGB[..., 0].copy(), 90),
        jpeg(icc_profile=OURS),
        insert_segments(jpeg(), [segment(0xEE, b"Adobe\0\x64\0\0\0\0\x01")]),
    ],
    ids=["baseline", "progressive", "restarts", "grey", "our-icc", "adobe"],
)
def test_jpeg_made_of_coding_segments_passes(data):
    assert refusal(data, "jpeg") is None


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (segment(COM, h.CANARY), "0xFE"),
        (exif_segment(h.gps_exif()), "0xE1"),
        (xmp_segment(h.CANARY.decode()), "0xE1"),
        (iptc_segment(h.CANARY), "0xED"),
        (h.mpf_segment(1000, 1000, 1000), "0xE2"),  # APP2, but an MPF index, not ICC_PROFILE
        (segment(0xE3, h.CANARY), "0xE3"),
        (segment(0xEF, h.CANARY), "0xEF"),
        (segment(0xE0, b"JFXX\0\x10" + bytes(20)), "0xE0"),  # a JFIF extension thumbnail
    ],
    ids=["com", "exif", "xmp", "iptc", "mpf", "app3", "app15", "jfxx"],
)
def test_jpeg_with_metadata_segments_is_refused(extra, named):
    assert refusal(insert_segments(jpeg(), [extra]), "jpeg") == f"segment {named} is not allowed"


def test_jpeg_refusals_of_profiles_trailers_and_shape():
    base = jpeg()
    assert "ICC_PROFILE" in refusal(jpeg(icc_profile=THEIRS), "jpeg")
    assert "after the end" in refusal(base + jpeg(), "jpeg")  # an appended (MPF-style) second image
    assert "after the end" in refusal(base + h.CANARY, "jpeg")
    assert "between segments" in refusal(base[:2] + b"\xff\xff" + base[2:], "jpeg")  # fill bytes could carry a count
    assert "the frame is 64x48" in refusal(base, "jpeg", (48, 64))
    assert "no EOI (truncated)" in refusal(base[: len(base) // 2], "jpeg")
    thumb = bytes(3 * 2 * 2)
    jfif_with_thumb = segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\x02\x02" + thumb)
    no_jfif = base[:2] + base[2 + 2 + struct.unpack(">H", base[4:6])[0] :]
    assert "thumbnail" in refusal(insert_segments(no_jfif, [jfif_with_thumb]), "jpeg")
    twelve_bit = bytearray(base)
    sof = base.index(b"\xff\xc0")
    twelve_bit[sof + 4] = 12
    assert "12 bits" in refusal(bytes(twelve_bit), "jpeg")


def test_the_face_jpeg_in_a_profile_is_refused():
    data, _ = h.jpeg_icc_carrying_face()
    assert "ICC_PROFILE" in refusal(data, "jpeg", (512, 512))


# -- WebP ------------------------------------------------------------------------------------------------------------
def webp_with(*chunks: tuple[bytes, bytes], flags: int = 0, simple: bytes | None = None) -> bytes:
    (image,) = h.riff_chunks(simple or h.webp_bytes(RGB))
    return h.webp_from_chunks(h.vp8x(W, H, flags), *(h.riff_chunk(k, p) for k, p in chunks), h.riff_chunk(*image))


@pytest.mark.parametrize(
    "data",
    [
        h.webp_bytes(RGB),
        h.webp_bytes(RGB, lossless=True),
        h.webp_bytes(np.dstack([RGB, RGB[..., :1]])),
        webp_with((b"ICCP", OURS), flags=h.VP8X_ICC),
    ],
    ids=["vp8", "vp8l", "alpha", "our-iccp"],
)
def test_webp_made_of_allowed_chunks_passes(data):
    assert refusal(data, "webp") is None


def test_webp_refusals():
    assert "EXIF" in refusal(webp_with((b"EXIF", h.gps_exif()), flags=h.VP8X_EXIF), "webp")
    assert "do not match" in refusal(webp_with((b"EXIF", h.gps_exif())), "webp")
    assert "do not match" in refusal(webp_with((b"XMP ", h.CANARY)), "webp")
    assert "do not match" in refusal(webp_with((b"ZZZZ", h.CANARY)), "webp")
    assert "not the worker's own" in refusal(webp_with((b"ICCP", THEIRS), flags=h.VP8X_ICC), "webp")
    assert "animation" in refusal(webp_with(flags=h.VP8X_ANIM), "webp")
    assert "RIFF declares" in refusal(h.webp_bytes(RGB) + b"\0\0", "webp")  # a trailer past the RIFF size
    assert "bitstream is not 64x49" in refusal(webp_with(), "webp", (W, H + 1))
    assert "bitstream is not 66x48" in refusal(h.webp_bytes(RGB), "webp", (W + 2, H))
    assert "ANIM ANMF" in refusal(h.webp_animated(), "webp", (512, 512))


# -- release: the error and what it does to a message ---------------------------------------------------------------
def test_a_refusal_is_an_output_refused_error_that_retries():
    data = after_ihdr(png_bytes(RGB), png_chunk(b"tEXt", b"Author\0" + h.CANARY))
    with pytest.raises(OutputRefused) as caught:
        egress.release(data, "png", (W, H))
    assert caught.value.reason == "output_refused"
    assert "'tEXt' chunk is not allowed" in str(caught.value)
    assert isinstance(caught.value, TransientError)  # our bug, not the photo's: never dead-lettered as bad input
    assert decide(caught.value) == (Action.RETRY, "output_refused")


def test_unknown_formats_and_garbage_are_refused():
    assert "not an output format" in refusal(png_bytes(RGB), "heic")
    for fmt in egress.FORMATS:
        assert refusal(b"", fmt) is not None
        assert refusal(b"\0" * 64, fmt) is not None
