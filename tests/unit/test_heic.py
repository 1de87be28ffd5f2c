"""HEIC input: a real HEIF file (encoded here with pillow-heif, a test-only dependency) through the container reader,
ImageMagick 6's libheif decoder and the blur; out comes a JPEG under the same key. Hostile files are refused by the
container reader before any decoder runs."""

from __future__ import annotations

import io
import os
import struct
import time

import numpy as np
import pytest
from helpers import icc as test_icc
from helpers.images import correlation, highpass, luma, mean_abs_diff, pil_array, smooth_rgb, to_stored
from PIL import Image as PILImage

from worker.blur import blur_photo
from worker.errors import CorruptImage, ImageTooComplex, ImageTooLarge, MetadataTooLarge, UnsupportedImage
from worker.imaging import codec, icc
from worker.imaging.container import Limits, inspect
from worker.imaging.pixels import export_rgb

try:
    import pillow_heif
except ImportError:  # a dev dependency: CI installs it, so there its absence is a failure
    if os.environ.get("CI", "").lower() == "true":
        raise
    pytest.skip(
        "pillow-heif (a dev dependency that writes the HEIC test files) is not installed", allow_module_level=True
    )
LIMITS = Limits(max_pixels=50_000_000, max_side=20_000, max_metadata_bytes=8 * 2**20, max_jpeg_scans=64)
SRGB = ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06))


def heic(arr: np.ndarray, **params) -> bytes:
    out = io.BytesIO()
    pillow_heif.from_pillow(PILImage.fromarray(arr)).save(out, quality=params.pop("quality", 92), **params)
    return out.getvalue()


def heic_all(*arrays: np.ndarray) -> bytes:
    """One file, several top-level images; the first is the primary."""
    heif = pillow_heif.from_pillow(PILImage.fromarray(arrays[0]))
    for arr in arrays[1:]:
        heif.add_from_pillow(PILImage.fromarray(arr))
    out = io.BytesIO()
    heif.save(out, quality=92)
    return out.getvalue()


def set_ispe(data: bytes, width: int, height: int, which: int = 0) -> bytes:
    pos = -1
    for _ in range(which + 1):
        pos = data.index(b"ispe", pos + 1)
    return data[: pos + 8] + struct.pack(">II", width, height) + data[pos + 16 :]


@pytest.fixture(scope="module")
def astronaut(skimage_data) -> np.ndarray:
    return pil_array((skimage_data / "astronaut.png").read_bytes())


@pytest.fixture(scope="module")
def astronaut_heic(astronaut) -> bytes:
    return heic(astronaut)


def decoded(data: bytes, settings) -> np.ndarray:
    header = codec.read_header(data, settings.image)
    with codec.decode(data, header) as photo:
        return export_rgb(photo.image)


# -- what works ----------------------------------------------------------------------------------------------------
def test_astronaut_heic_comes_out_as_a_jpeg_with_the_face_blurred(astronaut, astronaut_heic, detector, settings):
    result = blur_photo(astronaut_heic, detector, settings)
    assert result.content_type == "image/jpeg"
    assert result.data.startswith(b"\xff\xd8\xff")
    out = pil_array(result.data)
    assert out.shape == astronaut.shape
    face = max(result.faces, key=lambda f: f.score)
    assert face.score > 0.5
    assert 60 < face.w < 160
    sigma = face.w / 16
    g_in, g_out = highpass(luma(astronaut), sigma), highpass(luma(out), sigma)
    x0, y0, x1, y1 = int(face.x), int(face.y), int(face.x + face.w), int(face.y + face.h)
    inside = correlation(g_in[y0:y1, x0:x1], g_out[y0:y1, x0:x1])
    assert inside <= 0.35, f"face detail survives (correlation {inside:.2f})"
    # Away from the face (the bottom third: the suit, the flag), the picture is kept through HEIC and JPEG.
    assert correlation(luma(astronaut)[380:], luma(out)[380:]) > 0.97
    assert mean_abs_diff(astronaut[380:], out[380:]) < 6


def test_decoded_heic_matches_the_picture(astronaut, astronaut_heic, settings):
    assert mean_abs_diff(decoded(astronaut_heic, settings), astronaut) < 4  # Y'CbCr made RGB, lossy HEVC


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_irot_imir_are_applied_once(orientation, settings):
    upright = smooth_rgb(96, 64, seed=orientation)
    upright[:8, :8] = (255, 0, 0)  # a corner marker: a mirror or a turn moves it
    ex = PILImage.Exif()
    ex[0x0112] = orientation
    data = heic(to_stored(upright, orientation), exif=ex.tobytes(), quality=95)
    assert b"irot" in data or b"imir" in data  # HEIF orientation lives in the container, not in EXIF
    out = decoded(data, settings)
    assert out.shape == upright.shape
    assert mean_abs_diff(out, upright) < 4


def test_orientation_honoured_end_to_end(astronaut, detector, settings):
    ex = PILImage.Exif()
    ex[0x0112] = 6
    result = blur_photo(heic(to_stored(astronaut[:, :384], 6), exif=ex.tobytes()), detector, settings)
    out = pil_array(result.data)
    assert out.shape == (512, 384, 3)
    assert result.faces
    assert correlation(luma(astronaut[380:, :384]), luma(out[380:])) > 0.97


def _output_profile(data: bytes) -> bytes | None:
    return PILImage.open(io.BytesIO(data)).info.get("icc_profile")


@pytest.mark.parametrize(
    ("profile", "written", "converted"),
    [
        (test_icc.rgb_profile("sRGB-like", SRGB, test_icc.curv(test_icc.srgb_table())), None, False),
        (test_icc.display_p3(), "p3", False),
        (test_icc.adobe_rgb(), "p3", True),
    ],
    ids=["srgb-like", "display-p3", "adobe-rgb"],
)
def test_icc_follows_the_workers_rule(profile, written, converted, settings):
    picture = smooth_rgb(96, 64)
    data = heic(picture, icc_profile=profile)
    assert inspect(data, LIMITS).icc == profile
    header = codec.read_header(data, settings.image)
    with codec.decode(data, header) as photo:
        pixels = export_rgb(photo.image)
        out = codec.encode(photo, settings.image)  # consumes the photo
    assert _output_profile(out) == (icc.canonical(written) if written else None)
    assert (mean_abs_diff(pixels, picture) > 4) == converted


def test_only_the_primary_image_is_output(astronaut, detector, settings):
    green = np.zeros((100, 150, 3), np.uint8)
    green[..., 1] = 255
    result = blur_photo(heic_all(astronaut, green), detector, settings)
    assert (result.width, result.height) == (512, 512)
    assert mean_abs_diff(pil_array(result.data)[380:], astronaut[380:]) < 6
    result = blur_photo(heic_all(green, astronaut), detector, settings)
    assert (result.width, result.height) == (150, 100)
    assert not result.faces
    assert mean_abs_diff(pil_array(result.data), green) < 6


def test_a_thumbnail_is_not_what_is_output(astronaut, settings):
    data = heic(astronaut, thumbnails=[96])
    assert data.count(b"ispe") == 2
    assert mean_abs_diff(decoded(data, settings), astronaut) < 4


def test_grid_image_is_read_at_its_output_size(astronaut, settings):
    data = heic(astronaut, tile_size=256)
    assert b"grid" in data
    assert (inspect(data, LIMITS).width, inspect(data, LIMITS).height) == (512, 512)
    assert mean_abs_diff(decoded(data, settings), astronaut) < 4


# -- hostile files ---------------------------------------------------------------------------------------------------
def _refused(data: bytes, error: type[Exception], reason: str, detector, settings) -> str:
    start = time.perf_counter()
    with pytest.raises(error) as caught:
        blur_photo(data, detector, settings)
    assert time.perf_counter() - start < 0.5
    assert caught.value.reason == reason
    return str(caught.value)


def test_ispe_pixel_bomb_is_refused_before_decoding(astronaut_heic, detector, settings):
    text = _refused(set_ispe(astronaut_heic, 100_000, 100_000), ImageTooLarge, "image_too_large", detector, settings)
    assert "100000x100000" in text


def test_grid_declaring_a_huge_output_is_refused(astronaut, detector, settings):
    data = heic(astronaut, tile_size=256)
    pos = data.index(b"idat") + 4
    grid = data[pos : pos + 8]
    bomb = data[:pos] + grid[:4] + struct.pack(">HH", 60_000, 60_000) + data[pos + 8 :]
    _refused(bomb, ImageTooLarge, "image_too_large", detector, settings)


def test_hevc_stream_larger_than_its_ispe_is_refused(astronaut_heic, detector, settings):
    text = _refused(set_ispe(astronaut_heic, 64, 64), ImageTooLarge, "image_too_large", detector, settings)
    assert "HEVC stream is 512x512" in text


def test_huge_xmp_item_is_refused(astronaut, detector, settings):
    data = heic(astronaut[:64, :64], xmp=b"<x:xmpmeta>" + b" " * (9 * 2**20) + b"</x:xmpmeta>")
    _refused(data, MetadataTooLarge, "metadata_too_large", detector, settings)


def test_huge_exif_item_is_refused(astronaut, detector, settings):
    data = heic(astronaut[:64, :64], exif=b"Exif\0\0" + b"MM\0*\0\0\0\x08\0\0" + bytes(9 * 2**20))
    _refused(data, MetadataTooLarge, "metadata_too_large", detector, settings)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_truncated_heic_is_corrupt(astronaut_heic, keep, detector, settings):
    _refused(astronaut_heic[: int(len(astronaut_heic) * keep)], CorruptImage, "corrupt_image", detector, settings)


def test_truncated_inside_the_meta_box_is_corrupt(astronaut_heic, detector, settings):
    _refused(astronaut_heic[:200], CorruptImage, "corrupt_image", detector, settings)


def test_transparent_heic_is_refused(astronaut, detector, settings):
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 128, np.uint8)])
    text = _refused(heic(rgba), UnsupportedImage, "unsupported_image", detector, settings)
    assert "alpha" in text


def test_image_sequence_is_refused(astronaut_heic, detector, settings):
    text = _refused(astronaut_heic + b"\0\0\0\x08moov", UnsupportedImage, "unsupported_image", detector, settings)
    assert "sequence" in text


def test_box_count_bomb_is_refused(astronaut_heic):
    with pytest.raises(ImageTooComplex):
        inspect(astronaut_heic + b"\0\0\0\x08free" * 5000, LIMITS)


def test_avif_is_refused_with_its_reason(detector, settings):
    data = b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf" + bytes(64)
    assert "AVIF" in _refused(data, UnsupportedImage, "unsupported_image", detector, settings)


def test_policy_reads_heic_and_never_writes_it(imaging_settings):
    from worker.imaging.magick import _c, policy_problems

    allowed = _c()[0].IsRightsAuthorized
    coder, read, write = 1, 1, 2
    assert allowed(coder, read, b"HEIC")
    assert not allowed(coder, write, b"HEIC")
    assert not allowed(coder, read, b"AVIF")
    assert not allowed(coder, write, b"AVIF")
    assert policy_problems(imaging_settings.image) == []


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def with_clap(data: bytes, width: int, height: int) -> bytes:
    """`data` (pillow-heif's layout: one image item, item 1 first in ipma, ipma version 0 with 8-bit indexes) with a
    clean-aperture crop to width x height added to the primary item; item offsets moved to match."""
    out = bytearray(data)
    ipco, ipma = out.index(b"ipco") - 4, out.index(b"ipma") - 4
    ipco_size, ipma_size = (struct.unpack_from(">I", out, p)[0] for p in (ipco, ipma))
    nprops = len(_children(bytes(out[ipco + 8 : ipco + ipco_size])))
    body = bytes(out[ipma + 8 : ipma + ipma_size])
    item, n = struct.unpack_from(">HB", body, 8)
    assert struct.unpack_from(">I", body, 4)[0] == 1
    ipma_new = _box(b"ipma", body[:4] + struct.pack(">IHB", 1, item, n + 1) + body[11 : 11 + n] + bytes([nprops + 1]))
    clap = _box(b"clap", struct.pack(">8I", width, 1, height, 1, 0, 1, 0, 1))
    ipco_new = _box(b"ipco", bytes(out[ipco + 8 : ipco + ipco_size]) + clap)
    delta = len(ipco_new) - ipco_size + len(ipma_new) - ipma_size
    out = out[:ipco] + ipco_new + out[ipco + ipco_size : ipma] + ipma_new + out[ipma + ipma_size :]
    for kind in (b"iprp", b"meta"):
        p = out.index(kind) - 4
        struct.pack_into(">I", out, p, struct.unpack_from(">I", out, p)[0] + delta)
    p = out.index(b"iloc") + 4
    assert out[p] == 0  # iloc version 0
    assert out[p + 4 : p + 6] == b"\x44\x40"  # 32-bit offsets, lengths and base offsets (left as they are)
    q, (count,) = p + 8, struct.unpack_from(">H", out, p + 6)
    for _ in range(count):
        (extents,) = struct.unpack_from(">H", out, q + 8)
        q += 10
        for _ in range(extents):
            struct.pack_into(">I", out, q, struct.unpack_from(">I", out, q)[0] + delta)
            q += 8
    return bytes(out)


def _children(body: bytes) -> list[bytes]:
    kinds, pos = [], 0
    while pos < len(body):
        kinds.append(body[pos + 4 : pos + 8])
        pos += struct.unpack_from(">I", body, pos)[0]
    return kinds


def test_clean_aperture_crop_is_what_comes_out(astronaut, detector, settings):
    data = with_clap(heic(astronaut), 500, 400)
    assert b"clap" in data
    result = blur_photo(data, detector, settings)
    assert (result.width, result.height) == (500, 400)  # libheif crops around the centre
    out = pil_array(result.data)
    assert mean_abs_diff(out[300:], astronaut[56 + 300 : 456, 6:506]) < 6
