"""Self-tests of the hostile corpus (tests/helpers/hostile.py): each input really carries what it claims.

These must pass whatever the worker does: they look at the INPUTS only (Pillow, ImageCms, zlib, numpy), so a
passing outcome test in test_hostile_inputs.py cannot be a test of a harmless file.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from helpers import hostile as h
from helpers.images import jpeg_segments, luma, pil_array, png_chunks, png_ihdr
from PIL import Image as PILImage

ASTRONAUT = h.astronaut()
FACE_GREY = luma(ASTRONAUT)


def chunk_body(png: bytes, kind: bytes) -> bytes:
    (body,) = [b for k, b in png_chunks(png) if k == kind]
    return body


# -- metadata bombs: small on disk, the claimed size when fully inflated (streamed, never allocated) -------------


@pytest.mark.parametrize(
    ("make", "kind", "skip", "size", "starts"),
    [
        (h.png_ztxt_bomb, b"zTXt", len(b"Comment\0\0"), h.ZTXT_BOMB_SIZE, b"AAAA"),
        (h.png_itxt_bomb, b"iTXt", len(b"Description\0\1\0en\0\0"), h.ZTXT_BOMB_SIZE, b"AAAA"),
        (h.png_raw_profile_bomb, b"zTXt", len(h.RAW_PROFILE_KEYWORD) + 2, h.ZTXT_BOMB_SIZE, b"\nexif\n"),
        (h.png_iccp_bomb, b"iCCP", len(b"ICC profile\0\0"), h.ICCP_BOMB_SIZE, struct.pack(">I", h.ICCP_BOMB_SIZE)),
    ],
    ids=["ztxt", "itxt", "raw_profile_exif", "iccp"],
)
def test_png_bomb_chunk_inflates_to_its_claimed_size(make, kind, skip, size, starts):
    data = make()
    assert len(data) < 1_500_000
    body = chunk_body(data, kind)
    total, head = h.inflated_size(body[skip:], limit=size)  # also checks the Adler-32 trailer
    assert total == size
    assert head.startswith(starts)
    assert total > h.MAX_METADATA_BYTES
    assert png_ihdr(data)[:2] == (64, 48)
    assert b"IDAT" in h.png_types(data)


def test_raw_profile_bomb_declares_its_hex_length():
    _, head = h.inflated_size(chunk_body(h.png_raw_profile_bomb(), b"zTXt")[len(h.RAW_PROFILE_KEYWORD) + 2 :])
    _, name, length, digits = head.split(b"\n", 3)
    assert name == b"exif"
    assert len(b"\nexif\n" + length + b"\n") + int(length) * 2 == h.ZTXT_BOMB_SIZE  # as many hex digits as declared
    assert set(digits) == {ord("0")}


def test_jpeg_appn_flood_is_a_valid_jpeg_with_over_8_mib_of_app_segments():
    data = h.jpeg_appn_flood()
    markers, _ = h.jpeg_markers(data)
    apps = [m for m in markers if 0xE3 <= m.marker <= 0xEF]
    assert len({m.marker for m in apps}) == 13
    assert sum(len(m.payload) for m in apps) > h.MAX_METADATA_BYTES
    assert pil_array(data).shape == (48, 64, 3)


def test_jpeg_com_flood_is_a_valid_jpeg_with_over_8_mib_of_comments():
    data = h.jpeg_com_flood()
    markers, trailing = h.jpeg_markers(data)
    coms = [m for m in markers if m.marker == h.COM]
    assert len(coms) == 160
    assert all(len(m.payload) == 65_000 for m in coms)
    assert h.jpeg_metadata_bytes(data) > h.MAX_METADATA_BYTES
    assert trailing == b""
    assert pil_array(data).shape == (48, 64, 3)


@pytest.mark.parametrize(("make", "kind"), [(h.webp_exif_bomb, b"EXIF"), (h.webp_unknown_chunk_bomb, b"ZZZZ")])
def test_webp_carries_a_chunk_over_8_mib(make, kind):
    data = make()
    chunks = dict(h.riff_chunks(data))
    assert len(chunks[kind]) > h.MAX_METADATA_BYTES
    assert next(iter(chunks)) == b"VP8X"
    assert pil_array(data).shape == (64, 64, 3)


# -- headers declaring too much, too many scans, animations ----------------------------------------------------


def test_png_ihdr_declares_10_gigapixels_in_a_tiny_file():
    data = h.png_huge_ihdr()
    assert png_ihdr(data)[:2] == (100_000, 100_000)
    assert len(data) < 1_000


def test_jpeg_sof_declares_65000_square():
    assert h.jpeg_size(h.jpeg_huge_sof()) == (65_000, 65_000)


def test_webp_vp8x_declares_16383_square():
    (kind, payload), _ = h.riff_chunks(h.webp_huge_canvas())
    assert kind == b"VP8X"
    width = int.from_bytes(payload[4:7], "little") + 1
    height = int.from_bytes(payload[7:10], "little") + 1
    assert (width, height) == (16_383, 16_383)
    assert width * height > 50_000_000


def test_progressive_jpeg_has_more_than_64_scans():
    data = h.jpeg_many_scans()
    assert h.sos_count(h.small_jpeg(progressive=True)) > 1  # really progressive to begin with
    assert h.sos_count(data) == h.PROGRESSIVE_SCANS > 64
    assert any(m.marker == 0xC2 for m in h.jpeg_markers(data)[0])


def test_apng_shows_the_face_only_in_its_second_frame():
    data = h.apng_second_frame_face()
    assert {b"acTL", b"fcTL", b"fdAT"} <= set(h.png_types(data))
    with PILImage.open(io.BytesIO(data)) as im:
        assert im.n_frames == 2
        first = np.asarray(im.convert("RGB"))
        im.seek(1)
        second = np.asarray(im.convert("RGB"))
    assert h.face_detail(ASTRONAUT, second) > 0.99
    assert abs(h.face_detail(ASTRONAUT, first)) < 0.2


def test_animated_webp_shows_the_face_in_its_second_frame():
    data = h.webp_animated()
    kinds = [k for k, _ in h.riff_chunks(data)]
    assert kinds.count(b"ANMF") == 2
    assert b"ANIM" in kinds
    with PILImage.open(io.BytesIO(data)) as im:
        im.seek(1)
        second = np.asarray(im.convert("RGB"))
    assert h.face_detail(ASTRONAUT, second) > 0.9


# -- hidden faces ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("face_alpha", "rest_alpha"), [(0, 255), (0, 0), (3, 255)])
def test_face_under_alpha_is_recovered_by_dropping_alpha(face_alpha, rest_alpha):
    rgba = pil_array(h.rgba_face_under_alpha(face_alpha, rest_alpha), mode="RGBA")
    assert (rgba[..., 3][h.box_mask(rgba.shape[:2])] == face_alpha).all()
    assert h.face_detail(ASTRONAUT, rgba[..., :3]) > 0.99  # what an attacker gets by dropping alpha
    assert np.array_equal(rgba[..., :3], ASTRONAUT)


def test_face_in_the_alpha_channel_shows_over_white():
    rgba = pil_array(h.rgba_face_in_alpha(), mode="RGBA")
    assert not rgba[..., :3].any()
    assert h.face_detail(FACE_GREY, rgba[..., 3]) > 0.99
    assert h.face_detail(FACE_GREY, h.over_white(rgba)) < -0.99  # a negative of the face


def test_16_bit_png_hides_the_face_in_its_low_byte():
    data = h.png16_low_byte_face()
    assert png_ihdr(data)[2:] == (16, 2)
    v = h.png16_unfiltered_decode(data)
    assert h.face_detail(ASTRONAUT, (v & 0xFF).astype(np.uint8)) > 0.99
    assert ((v >> 8) == 0x80).all()
    with_unrelated_high = h.png16_unfiltered_decode(h.png16_low_byte_face(h.decoy()))
    assert np.array_equal(with_unrelated_high & 0xFF, ASTRONAUT)


def test_16_bit_astronaut_is_the_astronaut():
    v = h.png16_unfiltered_decode(h.png16_astronaut())
    assert np.array_equal(v >> 8, ASTRONAUT)


def test_icc_profile_carries_a_whole_jpeg_of_the_face():
    data, payload = h.jpeg_icc_carrying_face()
    assert sum(1 for m, p in jpeg_segments(data) if m == 0xE2 and p.startswith(b"ICC_PROFILE\0")) >= 2
    icc = h.embedded_icc(data)
    carried = h.icc_tags(icc)[h.PRIVATE_TAG][8:]
    assert carried == payload
    for piece in (payload[:16_384], payload[-16_384:]):  # what the outcome test looks for in the output
        assert piece in data
    assert h.face_detail(ASTRONAUT, pil_array(carried)) > 0.95
    h.rendered_srgb(data)  # lcms accepts the profile


@pytest.mark.parametrize("make", [h.png_icc_scrambled, h.jpeg_icc_scrambled], ids=["png", "jpeg"])
def test_icc_tone_curves_scramble_the_stored_levels(make):
    data = make()
    perm = h.scramble_permutation()
    for c in range(3):  # each TRC is a permutation of the levels
        assert sorted(perm[c]) == list(range(256))
    assert h.rendered_srgb(h.png_icc_scrambled()).tolist() == ASTRONAUT.tolist()  # lossless: exact
    raw = pil_array(data)
    shown = h.rendered_srgb(data)
    assert h.face_detail(ASTRONAUT, shown) > 0.85
    assert np.abs(shown.astype(int) - ASTRONAUT).mean() < 6
    assert abs(h.face_detail(ASTRONAUT, raw)) < 0.25
    assert np.abs(raw.astype(int) - ASTRONAUT).mean() > 40


def test_display_p3_photo_renders_like_the_srgb_original():
    data = h.jpeg_display_p3()
    icc = h.embedded_icc(data)
    for i, sig in enumerate((b"rXYZ", b"gXYZ", b"bXYZ")):
        assert np.abs(h.icc_xyz(icc, sig) - h.colorants(h.P3_PRIMARIES)[:, i]).max() < 0.0002
    # Apple's published Display P3 red colorant, as a check of the Bradford adaptation.
    assert np.abs(h.icc_xyz(icc, b"rXYZ") - (0.5151, 0.2412, -0.0011)).max() < 0.0005
    assert np.abs(h.rendered_srgb(data).astype(int) - ASTRONAUT).mean() < 2.5
    assert np.abs(pil_array(data).astype(int) - ASTRONAUT).mean() > 2  # the raw values really are P3


def test_gama_png_hides_the_face_in_the_darkest_levels():
    data = h.png_gama_hidden_face()
    assert h.png_types(data)[:2] == [b"IHDR", b"gAMA"]
    assert not {b"sRGB", b"iCCP"} & set(h.png_types(data))
    raw = pil_array(data)
    assert raw.max() <= h.GAMA_LEVELS  # black to the eye as stored
    shown = h.gama_displayed(raw)
    assert shown.max() > 100
    assert h.face_detail(ASTRONAUT, shown) > 0.6


# -- metadata carriers -------------------------------------------------------------------------------------------


def test_png_metadata_is_all_there():
    data = h.png_with_metadata(ASTRONAUT)
    assert {b"eXIf", b"tEXt", b"iTXt", b"zTXt"} <= set(h.png_types(data))
    with PILImage.open(io.BytesIO(data)) as im:
        exif = im.getexif()
    assert exif[0x0112] == 6
    assert exif.get_ifd(0x8825)[0x0012] == h.GPS_DATUM
    assert data.count(h.CANARY) == 2  # tEXt and iTXt; the zTXt one is deflated


def test_webp_metadata_is_all_there():
    data = h.webp_with_metadata(ASTRONAUT)
    chunks = dict(h.riff_chunks(data))
    assert h.GPS_DATUM.encode() in chunks[b"EXIF"]
    assert h.CANARY in chunks[b"XMP "]
    assert chunks[b"VP8X"][0] & (h.VP8X_EXIF | h.VP8X_XMP) == h.VP8X_EXIF | h.VP8X_XMP


def test_jpeg_metadata_and_the_appended_jpeg_are_all_there():
    data, second = h.jpeg_with_metadata(ASTRONAUT)
    markers, trailing = h.jpeg_markers(data)
    payloads = [(m.marker, m.payload) for m in markers]
    assert any(m == h.COM and h.CANARY in p for m, p in payloads)
    assert any(m == 0xED and p.startswith(b"Photoshop 3.0\0") for m, p in payloads)
    assert any(m == 0xE1 and p.startswith(b"http://ns.adobe.com/xap/1.0/\0") for m, p in payloads)
    assert any(m == 0xE1 and p.startswith(b"Exif\0\0") and h.GPS_DATUM.encode() in p for m, p in payloads)
    (mpf,) = [p for m, p in payloads if m == 0xE2 and p.startswith(b"MPF\0")]
    assert trailing == second
    # The MP index's second entry points at the appended JPEG (offset from the MP header).
    mp_header = next(m.offset for m in markers if m.marker == 0xE2) + 4 + 4
    entry = mpf.index(struct.pack("<I", len(second)))
    (offset,) = struct.unpack("<I", mpf[entry + 4 : entry + 8])
    assert data[mp_header + offset : mp_header + offset + 2] == b"\xff\xd8"
    assert h.face_detail(FACE_GREY[61:179, 179:272], pil_array(second), (0, 0, 93, 118)) > 0.95


def test_jpeg_with_restart_markers():
    data = h.jpeg_with_restarts(ASTRONAUT)
    markers, _ = h.jpeg_markers(data)
    assert any(m.marker == h.DRI for m in markers)
    assert sum(1 for m in markers if m.marker in h.RST) > 100
    assert h.face_detail(ASTRONAUT, pil_array(data)) > 0.95


def test_heic_carries_gps_exif_xmp_a_thumbnail_and_a_profile_with_the_face():
    pillow_heif = pytest.importorskip("pillow_heif")
    data, payload = h.heic_with_metadata(ASTRONAUT)
    heif = pillow_heif.open_heif(io.BytesIO(data))
    assert h.GPS_DATUM.encode() in heif.info["exif"]
    assert h.CANARY in heif.info["xmp"]
    carried = h.icc_tags(heif.info["icc_profile"])[h.PRIVATE_TAG][8:]
    assert carried == payload
    assert h.face_detail(ASTRONAUT, pil_array(carried)) > 0.95
    for piece in (h.GPS_DATUM.encode(), h.CANARY, payload[:16_384], payload[-16_384:]):  # what the outcome test seeks
        assert piece in data
    assert data.count(b"ispe") == 2  # the primary image and its thumbnail item
    (thumb,) = heif[0].info["thumbnails"]
    assert thumb == h.HEIC_THUMBNAIL
    assert np.asarray(heif.to_pillow()).shape == ASTRONAUT.shape
