"""Imaging through real ImageMagick: orientation, formats, metadata removal, refusals, redaction, face protection.

Nothing here doubles Wand. Where the test is about decoding/encoding rather than detection, a FixedDetector
supplies the face box (the real model runs only where detection is part of the claim).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import wand.exceptions
from helpers import exif as xf
from helpers import hostile
from helpers import icc as test_icc
from helpers.detectors import FixedDetector
from helpers.images import (
    COM,
    correlation,
    exif_segment,
    highpass,
    icc_from_segments,
    ihdr,
    insert_segments,
    iptc_segment,
    jpeg_bytes,
    jpeg_segments,
    luma,
    marker_centre,
    mean_abs_diff,
    pil_array,
    png_bomb,
    png_bytes,
    png_chunk,
    png_chunks,
    png_from_chunks,
    png_ihdr,
    png_rgb16,
    segment,
    smooth_rgb,
    textured_rgb,
    to_stored,
    to_upright,
    with_markers,
    xmp_segment,
)
from PIL import ExifTags, ImageCms, JpegImagePlugin, PngImagePlugin
from PIL import Image as PILImage
from wand.image import Image

from worker.blur import Blurred, blur_photo
from worker.config import ImageSettings, RedactSettings, Settings
from worker.detect import Face
from worker.errors import CorruptImage, ImageTooLarge, NotAnImage, PermanentError, UnsupportedImage
from worker.geometry import face_padding, pad_and_clamp
from worker.imaging import codec, magick
from worker.imaging.pixels import export_rgb
from worker.imaging.redact import grid_size, redact, regions

# A synthetic 160x120 picture with one "face" box; padded by the default small-face 0.4 it covers REGION.
SIZE = (160, 120)
FACE = Face(40.0, 30.0, 40.0, 50.0, 0.9, "fixed")
REGION = (24, 10, 96, 100)  # pad_and_clamp(40, 30, 40, 50, 0.4, 160, 120)


@pytest.fixture(scope="module")
def icc_profile() -> bytes:
    """A real ICC profile (lcms-built sRGB), not one of the sRGB profiles ImageMagick recognises by checksum."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def run(data: bytes, settings: Settings, faces=(FACE,)) -> Blurred:
    return blur_photo(data, FixedDetector(faces), settings)


def decoded(data: bytes, settings: Settings) -> codec.Photo:
    return codec.decode(data, codec.read_header(data, settings.image))


def outside(mask_shape: tuple[int, int], region: tuple[int, int, int, int], margin: int = 0) -> np.ndarray:
    """Boolean mask of the pixels at least `margin` px away from the region."""
    x0, y0, x1, y1 = region
    keep = np.ones(mask_shape, bool)
    keep[max(0, y0 - margin) : y1 + margin, max(0, x0 - margin) : x1 + margin] = False
    return keep


def box_slice(region: tuple[int, int, int, int]) -> tuple[slice, slice]:
    x0, y0, x1, y1 = region
    return slice(y0, y1), slice(x0, x1)


def tile_diffs(a: np.ndarray, b: np.ndarray, keep: np.ndarray, tile: int = 16) -> list[float]:
    """Mean absolute difference per tile, for tiles entirely inside `keep`."""
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    if diff.ndim == 3:
        diff = diff.mean(axis=2)
    h, w = diff.shape
    return [
        float(diff[y : y + tile, x : x + tile].mean())
        for y in range(0, h - tile + 1, tile)
        for x in range(0, w - tile + 1, tile)
        if keep[y : y + tile, x : x + tile].all()
    ]


def test_test_geometry_constant():
    r = Settings().redact
    padding = face_padding(max(FACE.w, FACE.h), r.padding, r.padding_large)
    assert pad_and_clamp(FACE.x, FACE.y, FACE.w, FACE.h, padding, *SIZE) == REGION


# ---------------------------------------------------------------------------------------------------------------
# EXIF orientation: every one of the 8 ends upright
# ---------------------------------------------------------------------------------------------------------------

MARKERS = {"red": (230, 20, 20), "blue": (20, 20, 230), "green": (20, 220, 20)}


@pytest.fixture(scope="module")
def upright_picture() -> np.ndarray:
    return with_markers(smooth_rgb(96, 64, seed=5))


def orientation_jpeg(upright: np.ndarray, orientation: int, quality: int = 95) -> bytes:
    """What a camera writes: the stored (un-rotated) pixels plus the EXIF Orientation tag."""
    data = jpeg_bytes(to_stored(upright, orientation), quality, exif=b"Exif\0\0" + xf.orientation_only(orientation))
    with PILImage.open(io.BytesIO(data)) as im:  # precondition: the tag is really there
        assert im.getexif()[ExifTags.Base.Orientation] == orientation
    return data


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_decodes_upright(orientation, upright_picture, imaging_settings):
    data = orientation_jpeg(upright_picture, orientation)
    header = codec.read_header(data, imaging_settings.image)
    stored_h, stored_w = to_stored(upright_picture, orientation).shape[:2]
    assert (header.width, header.height) == (stored_w, stored_h)  # the header is the stored frame
    with codec.decode(data, header) as photo:
        assert photo.size == (96, 64)
        pixels = export_rgb(photo.image)
        out = codec.encode(photo, imaging_settings.image)
    assert pixels.shape == upright_picture.shape
    for colour in MARKERS.values():
        got, want = marker_centre(pixels, colour), marker_centre(upright_picture, colour)
        assert got == pytest.approx(want, abs=1.0), colour
    assert mean_abs_diff(pixels, upright_picture) < 4
    # The output carries no Orientation tag (no EXIF at all), so every viewer shows these pixels as they are.
    with PILImage.open(io.BytesIO(out)) as im:
        assert ExifTags.Base.Orientation not in im.getexif()
    hostile.output_parts(out)  # the allow-list: no APP1 (EXIF) among them
    assert mean_abs_diff(pil_array(out), upright_picture) < 5


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_rotated_astronaut_is_blurred_on_the_face(orientation, astronaut_png, astronaut_faces, detector, settings):
    upright = pil_array(astronaut_png)
    data = orientation_jpeg(upright, orientation)
    shown = to_upright(pil_array(data), orientation)  # the input as a viewer shows it
    result = blur_photo(data, detector, settings)
    out = pil_array(result.data)
    assert out.shape == upright.shape
    assert (result.width, result.height) == (512, 512)

    face = astronaut_faces[0]
    # The faces are reported in the upright frame, where the upright original has them.
    assert any(abs(f.x - face.x) < 6 and abs(f.y - face.y) < 6 and abs(f.w - face.w) < 8 for f in result.faces)
    face_box = (int(face.x), int(face.y), int(face.x + face.w), int(face.y + face.h))
    diff = np.abs(out.astype(np.float64) - shown).mean(axis=2)
    assert diff[box_slice(face_box)].mean() > 20, "the face was not blurred"
    r = settings.redact
    padding = face_padding(max(face.w, face.h), r.padding, r.padding_large)
    padded = pad_and_clamp(face.x, face.y, face.w, face.h, padding, 512, 512)
    far = tile_diffs(out, shown, outside(diff.shape, padded, margin=8))
    assert len(far) > 600
    assert max(far) < 5, "something away from the face changed: the blur landed sideways"


def test_output_orientation_is_upright_for_a_viewer_too(upright_picture, imaging_settings):
    """Pillow's exif_transpose on the output must be a no-op (the tag is gone), for a rotated input."""
    data = orientation_jpeg(upright_picture, 6)
    out = run(data, imaging_settings, faces=()).data
    with PILImage.open(io.BytesIO(out)) as im:
        assert im.size == (96, 64)
        assert ExifTags.Base.Orientation not in im.getexif()


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_png_and_webp_exif_orientation_decodes_upright(fmt, upright_picture, imaging_settings):
    buf = io.BytesIO()
    extra = {"lossless": True} if fmt == "WEBP" else {}
    exif = b"Exif\0\0" + xf.orientation_only(6)
    PILImage.fromarray(to_stored(upright_picture, 6)).save(buf, fmt, exif=exif, **extra)
    data = buf.getvalue()
    with codec.decode(data, codec.read_header(data, imaging_settings.image)) as photo:
        assert photo.size == (96, 64)
        assert mean_abs_diff(export_rgb(photo.image), upright_picture) < 3


# ---------------------------------------------------------------------------------------------------------------
# Face protection on a real photo (numpy-only measure of what detail survives)
# ---------------------------------------------------------------------------------------------------------------


def test_astronaut_face_detail_is_destroyed_and_the_rest_untouched(astronaut_png, astronaut_blurred, settings):
    original = pil_array(astronaut_png)
    out = pil_array(astronaut_blurred.data)
    assert astronaut_blurred.content_type == "image/png"
    assert out.shape == original.shape
    face = max(astronaut_blurred.faces, key=lambda f: f.score)
    assert face.score > 0.5
    assert 60 < face.w < 160
    sigma = face.w / 16
    g_in, g_out = highpass(luma(original), sigma), highpass(luma(out), sigma)

    face_box = (int(face.x), int(face.y), int(np.ceil(face.x + face.w)), int(np.ceil(face.y + face.h)))
    inside = correlation(g_in[box_slice(face_box)], g_out[box_slice(face_box)])
    assert inside <= 0.35, f"face detail survives (correlation {inside:.2f})"

    r = settings.redact
    padding = face_padding(max(face.w, face.h), r.padding, r.padding_large)
    padded = pad_and_clamp(face.x, face.y, face.w, face.h, padding, 512, 512)
    keep = outside(g_in.shape, padded, margin=int(3 * sigma) + 2)  # the high-pass reaches ~3 sigma
    tiles = [
        correlation(g_in[y : y + 32, x : x + 32], g_out[y : y + 32, x : x + 32])
        for y in range(0, 512, 32)
        for x in range(0, 512, 32)
        if keep[y : y + 32, x : x + 32].all() and g_in[y : y + 32, x : x + 32].std() > 2  # textured
    ]
    assert len(tiles) > 100
    assert min(tiles) >= 0.9
    # PNG is lossless: outside the padded box the output is the input, pixel for pixel.
    changed = np.any(out != original, axis=2)
    assert not changed[outside(changed.shape, padded)].any()
    assert changed[box_slice(padded)].mean() > 0.9


# ---------------------------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def astronaut_rgba(astronaut_png) -> tuple[np.ndarray, np.ndarray]:
    rgb = pil_array(astronaut_png)
    alpha = np.full((512, 512), 255, np.uint8)
    alpha[:100, 412:] = 0  # a transparent corner
    alpha[400:] = np.linspace(255, 0, 112).astype(np.uint8)[:, None]  # a fade-out at the bottom
    alpha[200:260, 20:80] = 128
    return rgb, alpha


def shown_colour(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """What a viewer can see of each colour under its alpha, stored back as a colour: round(c * a / 255) in
    floating point, then the colour that renders to it (round half up); black where nothing shows."""
    a = alpha.astype(np.float64)[..., None]
    shown = np.floor(rgb.astype(np.float64) * a / 255 + 0.5)
    back = np.floor(shown * 255 / np.maximum(a, 1) + 0.5)
    return np.where(a > 0, back, 0).astype(np.uint8)


def test_rgba_png_keeps_alpha_and_only_the_colour_alpha_shows(astronaut_rgba, astronaut_faces, imaging_settings):
    rgb, alpha = astronaut_rgba
    result = run(png_bytes(np.dstack([rgb, alpha])), imaging_settings, faces=astronaut_faces)
    with PILImage.open(io.BytesIO(result.data)) as im:
        assert im.format == "PNG"
        assert im.mode == "RGBA"
        out = np.asarray(im).copy()
    face = astronaut_faces[0]
    padded = pad_and_clamp(face.x, face.y, face.w, face.h, 0.3, 512, 512)
    keep = outside(alpha.shape, padded)
    assert np.array_equal(out[..., 3][keep], alpha[keep]), "alpha changed outside the face"
    assert np.array_equal(out[..., :3][keep], shown_colour(rgb, alpha)[keep])
    assert not out[..., :3][alpha == 0].any(), "colour survives under full transparency"
    face_box = (int(face.x), int(face.y), int(face.x + face.w), int(face.y + face.h))
    assert mean_abs_diff(out[box_slice(face_box)][..., :3], rgb[box_slice(face_box)]) > 20


def test_detection_sees_an_rgba_photo_on_a_white_and_on_a_black_page(astronaut_rgba, imaging_settings):
    rgb, alpha = astronaut_rgba
    data = png_bytes(np.dstack([rgb, alpha]))
    with decoded(data, imaging_settings) as photo:
        assert photo.has_alpha
        frames = {}
        for view in photo.views():
            frames[view.background], factor = view.rgb(1.0)  # same size: the pixels themselves
            assert factor == 1.0
        assert photo.image.alpha_channel  # the photo itself keeps its alpha
    assert sorted(frames) == ["black", "white"]
    assert (frames["white"][:100, 412:] == 255).all()
    assert (frames["black"][:100, 412:] == 0).all()
    for frame in frames.values():
        assert np.array_equal(frame[100:200, 100:400], rgb[100:200, 100:400])  # opaque -> unchanged
    on_black = rgb[200:260, 20:80].astype(float) * 128 / 255  # 50 % over black
    assert np.abs(frames["black"][200:260, 20:80] - on_black).max() <= 2
    assert np.abs(frames["white"][200:260, 20:80] - (on_black + 255 * 127 / 255)).max() <= 2


def test_a_face_drawn_in_alpha_alone_is_found_and_blurred(astronaut_png, detector, settings):
    """Black colour everywhere, the face only in alpha: nothing on a black page, the face on a white one."""
    grey = luma(pil_array(astronaut_png))
    alpha = (255 - grey).astype(np.uint8)  # dark where the photo is light: a negative that reads as the face
    data = png_bytes(np.dstack([np.zeros((512, 512, 3), np.uint8), alpha]))
    result = blur_photo(data, detector, settings)
    assert result.faces, "the face drawn in alpha was not found"
    out = pil_array(result.data, "RGBA")[..., 3]
    face = max(result.faces, key=lambda f: f.w * f.h)
    box = (int(face.x), int(face.y), int(face.x + face.w), int(face.y + face.h))
    assert correlation(highpass(out[box_slice(box)], 2.0), highpass(alpha[box_slice(box)], 2.0)) < 0.3


def test_rgba_ellipse_keeps_alpha_outside_the_face(imaging_settings):
    rng = np.random.default_rng(4)
    alpha = rng.integers(0, 256, SIZE[::-1], dtype=np.uint8)
    data = png_bytes(np.dstack([textured_rgb(*SIZE), alpha]))
    settings = Settings(redact=RedactSettings(shape="ellipse"))
    out = pil_array(run(data, settings).data, "RGBA")
    keep = outside(alpha.shape, REGION)
    assert np.array_equal(out[..., 3][keep], alpha[keep])
    assert mean_abs_diff(out[box_slice(REGION)][..., :3], textured_rgb(*SIZE)[box_slice(REGION)]) > 10


def test_greyscale_alpha_png_keeps_alpha_outside_the_face(imaging_settings):
    grey = textured_rgb(*SIZE)[..., 0]
    alpha = np.tile(np.linspace(0, 255, SIZE[0]).astype(np.uint8), (SIZE[1], 1))
    buf = io.BytesIO()
    PILImage.fromarray(np.dstack([grey, alpha]), "LA").save(buf, "PNG")
    result = run(buf.getvalue(), imaging_settings)
    out = pil_array(result.data, "LA")
    keep = outside(alpha.shape, REGION)
    assert np.array_equal(out[..., 1][keep], alpha[keep])
    assert np.array_equal(out[..., 0][keep], shown_colour(grey[..., None], alpha)[..., 0][keep])
    assert mean_abs_diff(out[box_slice(REGION)][..., 0], grey[box_slice(REGION)]) > 20


def test_palette_png_with_transparency_keeps_alpha(imaging_settings):
    source = PILImage.fromarray(smooth_rgb(*SIZE)).quantize(64)
    buf = io.BytesIO()
    source.save(buf, "PNG", transparency=bytes(0 if i < 8 else 255 for i in range(64)))
    alpha = pil_array(buf.getvalue(), "RGBA")[..., 3]
    assert (alpha == 0).sum() > 500  # precondition: some pixels are transparent
    result = run(buf.getvalue(), imaging_settings)
    keep = outside(alpha.shape, REGION)
    assert np.array_equal(pil_array(result.data, "RGBA")[..., 3][keep], alpha[keep])


def test_greyscale_png_stays_greyscale(imaging_settings):
    grey = textured_rgb(*SIZE)[..., 1]
    result = run(png_bytes(grey), imaging_settings)
    width, height, _depth, colour = png_ihdr(result.data)
    assert (width, height, colour) == (*SIZE, 0)  # colour type 0: greyscale
    out = pil_array(result.data, None)
    assert out.ndim == 2
    assert mean_abs_diff(out[box_slice(REGION)], grey[box_slice(REGION)]) > 20
    assert np.array_equal(out[outside(out.shape, REGION)], grey[outside(out.shape, REGION)])


def test_greyscale_jpeg_stays_single_channel(imaging_settings):
    grey = smooth_rgb(*SIZE)[..., 0]
    result = run(jpeg_bytes(grey, 90), imaging_settings)
    sof = next(p for m, p in jpeg_segments(result.data) if m in (0xC0, 0xC1, 0xC2))
    assert sof[5] == 1  # one component
    assert pil_array(result.data, None).ndim == 2


def test_palette_png_in_png_out(imaging_settings):
    source = PILImage.fromarray(smooth_rgb(*SIZE)).quantize(64)
    buf = io.BytesIO()
    source.save(buf, "PNG")
    data = buf.getvalue()
    assert png_ihdr(data)[3] == 3  # precondition: an indexed PNG
    result = run(data, imaging_settings)
    assert result.content_type == "image/png"
    assert result.data.startswith(b"\x89PNG\r\n\x1a\n")
    before, after = np.asarray(source.convert("RGB")), pil_array(result.data)
    keep = outside(after.shape[:2], REGION)
    assert np.array_equal(after[keep], before[keep])  # no re-quantisation outside the face
    assert mean_abs_diff(after[box_slice(REGION)], before[box_slice(REGION)]) > 3
    # The blurred face is smooth, not snapped back to the 64 palette colours.
    assert len(np.unique(after[box_slice(REGION)].reshape(-1, 3), axis=0)) > 64


def test_16_bit_png_becomes_8_bit(imaging_settings):
    """Displays show 8 bits: the bits below could carry a second picture nobody sees (and no detector checks)."""
    rng = np.random.default_rng(16)
    small = (64, 48)
    source = rng.integers(0, 65536, (small[1], small[0], 3), dtype=np.uint16)
    source[source % 257 == 0] += 1  # no value an 8-bit round trip could reproduce
    face = Face(16, 12, 20, 20, 0.9)
    region = pad_and_clamp(16, 12, 20, 20, Settings().redact.padding, *small)  # a 20 px face: small-face padding
    result = run(png_rgb16(source), imaging_settings, faces=[face])
    width, height, depth, colour = png_ihdr(result.data)
    assert (width, height, depth, colour) == (*small, 8, 2)
    out = pil_array(result.data).astype(np.int64)
    keep = outside(out.shape[:2], region)
    assert np.abs(out[keep] - source[keep] / 257).max() <= 1  # the high byte, rounded
    assert mean_abs_diff(out[box_slice(region)], source[box_slice(region)] / 257) > 20


def test_16_bit_greyscale_png_becomes_8_bit(imaging_settings):
    grey = (textured_rgb(*SIZE)[..., 0].astype(np.uint16) * 257 + 3).astype(np.uint16)
    buf = io.BytesIO()
    PILImage.fromarray(grey).save(buf, "PNG")  # mode I;16
    result = run(buf.getvalue(), imaging_settings)
    assert png_ihdr(result.data)[2:] == (8, 0)
    with PILImage.open(io.BytesIO(result.data)) as im:
        out = np.asarray(im).astype(np.int64)
    keep = outside(out.shape, REGION)
    assert np.abs(out[keep] - grey[keep] / 257).max() <= 1


def test_cmyk_jpeg_becomes_srgb_jpeg(icc_profile, imaging_settings):
    rgb = smooth_rgb(*SIZE)
    cmyk_profile = icc_profile[:16] + b"CMYK" + icc_profile[20:]  # a profile that declares CMYK data
    data = jpeg_bytes(rgb, 92, mode="CMYK", icc_profile=cmyk_profile)
    with PILImage.open(io.BytesIO(data)) as im:
        assert im.mode == "CMYK"
        assert im.info["icc_profile"] == cmyk_profile
        as_rgb = np.asarray(im.convert("RGB")).copy()
    result = run(data, imaging_settings)
    assert result.content_type == "image/jpeg"
    sof = next(p for m, p in jpeg_segments(result.data) if m in (0xC0, 0xC1, 0xC2))
    assert sof[5] == 3  # three components: RGB/YCbCr, not CMYK
    with PILImage.open(io.BytesIO(result.data)) as im:
        assert im.mode == "RGB"
        assert not im.info.get("icc_profile"), "the CMYK profile does not describe sRGB pixels"
        out = np.asarray(im).copy()
    keep = outside(out.shape[:2], REGION, margin=8)
    assert mean_abs_diff(out[keep], as_rgb[keep]) < 8  # same colours (not inverted, not shifted)
    assert mean_abs_diff(out[keep], rgb[keep]) < 8
    assert mean_abs_diff(out[box_slice(REGION)], as_rgb[box_slice(REGION)]) > 5


def test_webp_in_webp_out(imaging_settings):
    source = textured_rgb(*SIZE)
    buf = io.BytesIO()
    PILImage.fromarray(source).save(buf, "WEBP", quality=90)
    result = run(buf.getvalue(), imaging_settings)
    assert result.content_type == "image/webp"
    assert result.data[:4] == b"RIFF"
    assert result.data[8:12] == b"WEBP"
    with PILImage.open(io.BytesIO(result.data)) as im:
        assert im.format == "WEBP"
        assert im.size == SIZE
        out = np.asarray(im.convert("RGB")).copy()
    decoded_in = pil_array(buf.getvalue())
    keep = outside(out.shape[:2], REGION, margin=8)
    assert mean_abs_diff(out[keep], decoded_in[keep]) < 12
    assert mean_abs_diff(out[box_slice(REGION)], decoded_in[box_slice(REGION)]) > 30


def test_animated_webp_has_no_unblurred_frame(imaging_settings):
    frames = [textured_rgb(*SIZE, seed=31), textured_rgb(*SIZE, seed=32)]
    buf = io.BytesIO()
    PILImage.fromarray(frames[0]).save(
        buf, "WEBP", save_all=True, append_images=[PILImage.fromarray(frames[1])], lossless=True, duration=100
    )
    try:
        result = run(buf.getvalue(), imaging_settings)
    except UnsupportedImage:
        return  # refusing animations is an acceptable fix
    with PILImage.open(io.BytesIO(result.data)) as im:
        for index in range(getattr(im, "n_frames", 1)):
            im.seek(index)
            out = np.asarray(im.convert("RGB"))
            for source in frames:  # whichever input frame this is, its face must not be there
                assert mean_abs_diff(out[box_slice(REGION)], source[box_slice(REGION)]) > 30, f"frame {index}"


@pytest.mark.parametrize(
    ("quality", "subsampling"),
    [(90, 2), (90, 0), (75, 2), (85, 1), (95, 2)],
    ids=["q90-420", "q90-444", "q75-420", "q85-422", "q95-420"],
)
def test_jpeg_keeps_subsampling_and_about_the_same_quality(quality, subsampling, imaging_settings):
    data = jpeg_bytes(smooth_rgb(*SIZE), quality, subsampling)
    with PILImage.open(io.BytesIO(data)) as im:
        assert JpegImagePlugin.get_sampling(im) == subsampling  # precondition
    result = run(data, imaging_settings)
    assert result.content_type == "image/jpeg"
    with PILImage.open(io.BytesIO(result.data)) as im:
        assert JpegImagePlugin.get_sampling(im) == subsampling
    with Image(blob=result.data, format="jpeg") as out:
        assert abs(out.compression_quality - quality) <= 5


@pytest.mark.parametrize(("source_quality", "expected"), [(40, 60), (99, 95)])
def test_jpeg_quality_is_clamped(source_quality, expected, imaging_settings):
    result = run(jpeg_bytes(smooth_rgb(*SIZE), source_quality), imaging_settings)
    with Image(blob=result.data, format="jpeg") as out:
        assert abs(out.compression_quality - expected) <= 1


def test_jpeg_quality_setting_overrides_the_estimate():
    settings = Settings(image=ImageSettings(jpeg_quality=70))
    result = run(jpeg_bytes(smooth_rgb(*SIZE), 92), settings)
    with Image(blob=result.data, format="jpeg") as out:
        assert abs(out.compression_quality - 70) <= 1


def test_blurred_result_describes_the_output(imaging_settings):
    result = run(jpeg_bytes(smooth_rgb(*SIZE), 90), imaging_settings)
    assert (result.width, result.height) == SIZE
    assert result.faces == [FACE]
    assert {"decode", "detect", "detector_input", "blur", "encode"} <= set(result.timings)
    assert all(v >= 0 for v in result.timings.values())


# ---------------------------------------------------------------------------------------------------------------
# Metadata: nothing private survives, the ICC profile does (byte for byte)
# ---------------------------------------------------------------------------------------------------------------

SECRET = b"SECRET"


def private_exif() -> bytes:
    thumb = jpeg_bytes(smooth_rgb(32, 24, seed=9), 80)
    return xf.tiff(
        ifd0=[(xf.TAG_MAKE, xf.ASCII, "SECRET-MAKE"), (xf.TAG_MODEL, xf.ASCII, "SECRET-MODEL")],
        exif_ifd=[
            (xf.TAG_DATETIME_ORIGINAL, xf.ASCII, "2024:05:14 09:21:07"),
            (xf.TAG_BODY_SERIAL, xf.ASCII, "SECRET-SN"),
        ],
        gps_ifd=[
            (xf.GPS_VERSION, xf.BYTE, [2, 3, 0, 0]),
            (xf.GPS_LAT_REF, xf.ASCII, "N"),
            (xf.GPS_LAT, xf.RATIONAL, [(48, 1), (51, 1), (2940, 100)]),
            (xf.GPS_LON_REF, xf.ASCII, "E"),
            (xf.GPS_LON, xf.RATIONAL, [(2, 1), (17, 1), (4020, 100)]),
            (xf.GPS_MAP_DATUM, xf.ASCII, "SECRET-DATUM"),
        ],
        thumbnail=thumb,
    )


@pytest.fixture(scope="module")
def jpeg_with_metadata(icc_profile) -> bytes:
    base = jpeg_bytes(textured_rgb(*SIZE), 90, icc_profile=icc_profile)
    data = insert_segments(
        base,
        [
            exif_segment(private_exif()),
            xmp_segment("SECRET-XMP-CREATOR"),
            iptc_segment(b"SECRET-IPTC-CAPTION"),
            segment(COM, b"SECRET-COMMENT!!"),
        ],
    )
    # Preconditions: Pillow and ImageMagick both read every piece of it.
    with PILImage.open(io.BytesIO(data)) as im:
        exif = im.getexif()
        assert exif[xf.TAG_MAKE] == "SECRET-MAKE"
        assert exif.get_ifd(ExifTags.IFD.GPSInfo)[xf.GPS_MAP_DATUM] == "SECRET-DATUM"
        assert exif.get_ifd(ExifTags.IFD.IFD1)[xf.TAG_THUMB_LENGTH] > 0
        assert im.info["icc_profile"] == icc_profile
        assert im.info["comment"] == b"SECRET-COMMENT!!"
    with Image(blob=data, format="jpeg") as img:
        names = set(img.profiles.keys())
        assert {"exif", "xmp", "icc"} <= names, names
        assert names & {"iptc", "8bim"}, names
    assert data.count(b"\xff\xd8") == 2  # the photo and its EXIF thumbnail
    # Like an MPO (multi-picture) file: a second JPEG after the first one's EOI, with its own secret.
    return data + insert_segments(jpeg_bytes(smooth_rgb(32, 24), 80), [segment(COM, b"SECRET-SECOND-IMAGE")])


def test_jpeg_private_metadata_is_removed(jpeg_with_metadata, imaging_settings):
    out = run(jpeg_with_metadata, imaging_settings).data
    assert SECRET not in out
    hostile.output_parts(out)  # coding segments, JFIF, our profile: no EXIF, XMP, IPTC, comment, thumbnail, trailer
    assert b"GPS" not in out
    assert struct.pack("<II", 2940, 100) not in out
    with PILImage.open(io.BytesIO(out)) as im:
        assert len(im.getexif()) == 0
        assert "comment" not in im.info


def test_an_srgb_profile_is_not_copied_the_pixels_already_are_srgb(jpeg_with_metadata, imaging_settings):
    """An uploaded profile never leaves: an sRGB one (this is lcms's own) is dropped, viewers assume sRGB."""
    out = run(jpeg_with_metadata, imaging_settings).data
    assert not icc_from_segments(jpeg_segments(out))


def test_a_display_p3_photo_keeps_its_colours_with_the_workers_own_profile(imaging_settings):
    from worker.imaging import icc

    p3 = test_icc.display_p3()
    rgb = smooth_rgb(*SIZE)
    data = jpeg_bytes(rgb, 95, icc_profile=p3)
    out = run(data, imaging_settings, faces=[]).data
    written = icc_from_segments(jpeg_segments(out))
    assert written == icc.canonical("p3")
    assert written != p3
    assert mean_abs_diff(pil_array(out), pil_array(data)) < 2  # same primaries and curve: pixels kept


def test_an_unknown_profile_is_rendered_before_detection_and_replaced(imaging_settings):
    """Adobe RGB (wider than sRGB, other primaries): converted to Display P3 as a viewer would show it."""
    from worker.imaging import icc

    adobe = test_icc.adobe_rgb()
    assert icc.colour_space(adobe) is None
    rgb = smooth_rgb(*SIZE)
    data = png_bytes_with_icc(rgb, adobe)
    out = run(data, imaging_settings, faces=[]).data
    assert png_iccp(out) == icc.canonical("p3")
    viewer = ImageCms.buildTransform(
        ImageCms.ImageCmsProfile(io.BytesIO(adobe)), ImageCms.createProfile("sRGB"), "RGB", "RGB"
    )
    expected = np.asarray(ImageCms.applyTransform(PILImage.fromarray(rgb), viewer))
    back = ImageCms.buildTransform(
        ImageCms.ImageCmsProfile(io.BytesIO(icc.canonical("p3"))), ImageCms.createProfile("sRGB"), "RGB", "RGB"
    )
    shown = np.asarray(ImageCms.applyTransform(PILImage.fromarray(pil_array(out)), back))
    assert mean_abs_diff(shown, expected) < 2


@pytest.fixture(scope="module")
def png_with_metadata(icc_profile) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "SECRET-AUTHOR")
    info.add_text("Comment", "SECRET-COMMENT")
    info.add_text("Location", "SECRET-ZTXT", zip=True)
    info.add_itxt("Description", "SECRET-ITXT", lang="en", tkey="Description")
    buf = io.BytesIO()
    PILImage.fromarray(textured_rgb(*SIZE)).save(
        buf, "PNG", pnginfo=info, exif=b"Exif\0\0" + private_exif(), icc_profile=icc_profile
    )
    data = buf.getvalue()
    kinds = [k for k, _ in png_chunks(data)]
    assert {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP"} <= set(kinds)  # precondition
    return data


def test_png_private_metadata_is_removed(png_with_metadata, imaging_settings):
    out = run(png_with_metadata, imaging_settings).data
    hostile.output_parts(out)  # IHDR PLTE tRNS IDAT IEND and at most our own iCCP
    # A compressed chunk could hide text from a byte search: look inside it too.
    assert SECRET not in (png_iccp(out) or b"")
    assert SECRET not in out


def png_iccp(data: bytes) -> bytes | None:
    bodies = [body for kind, body in png_chunks(data) if kind == b"iCCP"]
    assert len(bodies) <= 1
    return zlib.decompress(bodies[0][bodies[0].index(b"\0") + 2 :]) if bodies else None


def png_bytes_with_icc(rgb: np.ndarray, profile: bytes) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, "PNG", icc_profile=profile)
    return buf.getvalue()


def test_png_srgb_profile_is_not_copied(png_with_metadata, imaging_settings):
    assert png_iccp(run(png_with_metadata, imaging_settings).data) is None


def test_webp_private_metadata_and_profile_are_removed(icc_profile, imaging_settings):
    buf = io.BytesIO()
    PILImage.fromarray(textured_rgb(*SIZE)).save(
        buf, "WEBP", quality=90, exif=b"Exif\0\0" + private_exif(), icc_profile=icc_profile,
        xmp=b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>SECRET-XMP</x:xmpmeta>",
    )  # fmt: skip
    data = buf.getvalue()
    assert SECRET in data
    assert b"EXIF" in data
    assert b"XMP " in data
    out = run(data, imaging_settings).data
    assert SECRET not in out
    assert b"EXIF" not in out
    assert b"XMP " not in out
    with PILImage.open(io.BytesIO(out)) as im:
        assert not im.info.get("icc_profile")


# ---------------------------------------------------------------------------------------------------------------
# Bad inputs: the right error class, a message that says what is wrong, refused before detection
# ---------------------------------------------------------------------------------------------------------------


def _gif() -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(smooth_rgb(20, 20)).save(buf, "GIF")
    return buf.getvalue()


def _tiff() -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(smooth_rgb(20, 20)).save(buf, "TIFF")
    return buf.getvalue()


def _truncated_jpeg() -> bytes:
    data = jpeg_bytes(textured_rgb(*SIZE), 90)
    return data[: len(data) // 2]


def _truncated_png() -> bytes:
    data = png_bytes(textured_rgb(*SIZE))
    return data[: len(data) // 2]


MVG = b'push graphic-context\nviewbox 0 0 640 480\nimage over 0,0 0,0 "text:/etc/passwd"\npop graphic-context'
SVG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
    b'xmlns:xlink="http://www.w3.org/1999/xlink" width="64" height="64">'
    b'<image xlink:href="text:/etc/passwd" width="64" height="64"/></svg>'
)


@pytest.mark.parametrize(
    ("make", "error", "keyword"),
    [
        pytest.param(_truncated_jpeg, CorruptImage, r"(?i)corrupt|truncated", marks=(), id="jpeg-cut"),
        pytest.param(_truncated_png, CorruptImage, r"(?i)corrupt|truncated|could not be decoded", id="png-cut"),
        pytest.param(lambda: b"", NotAnImage, r"(?i)empty", id="zero-bytes"),
        pytest.param(lambda: b"Dear diary,\nthis is not a photo.\n", NotAnImage, r"(?i)not an image", id="text"),
        pytest.param(lambda: SVG, UnsupportedImage, r"SVG", id="svg"),
        pytest.param(lambda: b"<svg width='1' height='1'/>", UnsupportedImage, r"SVG", id="bare-svg"),
        pytest.param(lambda: MVG, UnsupportedImage, r"MVG", id="mvg"),
        pytest.param(_gif, UnsupportedImage, r"GIF", id="gif"),
        pytest.param(_tiff, UnsupportedImage, r"TIFF", id="tiff"),
        pytest.param(lambda: b"\x89PNG\r\n\x1a\n" + np.random.default_rng(7).bytes(4000), CorruptImage,
                     r"(?i)corrupt|could not be decoded", id="png-signature-then-noise"),
        pytest.param(lambda: b"\xff\xd8\xff" + np.random.default_rng(8).bytes(4000), CorruptImage,
                     r"(?i)corrupt|empty image|could not be decoded", id="jpeg-signature-then-noise"),
        pytest.param(lambda: b"\0\0\0\x1cftypavif" + bytes(64), UnsupportedImage, r"AVIF", id="avif"),
        pytest.param(lambda: b"\0\0\0\x1cftypheic" + bytes(64), CorruptImage, r"HEIC", id="heic-without-image"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_with_a_clear_error(make, error, keyword, imaging_settings):
    detector = FixedDetector([FACE])
    with pytest.raises(error, match=keyword) as info:
        blur_photo(make(), detector, imaging_settings)
    assert isinstance(info.value, PermanentError)
    assert info.value.reason == error.reason
    assert detector.calls == 0  # refused before any detection


def test_text_named_jpg_is_not_an_image(write_files, imaging_settings):
    folder = write_files({"holiday.jpg": b"just some notes, saved with the wrong name\n"})
    with pytest.raises(NotAnImage, match=r"(?i)not an image"):
        codec.read_header((folder / "holiday.jpg").read_bytes(), imaging_settings.image)


def _huge_png(width: int, height: int) -> bytes:
    """Only a header and a token of data: the declared size alone must get it refused."""
    return png_from_chunks(ihdr(width, height, 8, 2), png_chunk(b"IDAT", zlib.compress(bytes(1000))))


@pytest.mark.parametrize(
    ("width", "height"),
    [
        pytest.param(30000, 30000, marks=(), id="30000x30000"),
        pytest.param(25000, 100, marks=(), id="25000x100-too-wide"),
        pytest.param(15000, 15000, id="15000x15000-too-many-pixels"),
    ],
)
def test_png_declaring_too_many_pixels_is_refused_from_the_header(width, height, imaging_settings):
    data = _huge_png(width, height)
    assert png_ihdr(data)[:2] == (width, height)
    with pytest.raises(ImageTooLarge, match=f"(?i){width}x{height}.*limit"):
        codec.read_header(data, imaging_settings.image)


def test_jpeg_declaring_30000x30000_is_refused_from_the_header(imaging_settings):
    data = bytearray(jpeg_bytes(smooth_rgb(16, 16), 90))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 30000, 30000)
    with pytest.raises(ImageTooLarge):
        codec.read_header(bytes(data), imaging_settings.image)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = png_bomb(11000, 11000)
    assert len(data) < 200_000  # 121 MP of pixels in under 200 kB
    assert png_ihdr(data) == (11000, 11000, 8, 0)
    return data


def test_png_decompression_bomb_is_refused_by_read_header(bomb, imaging_settings):
    with pytest.raises(ImageTooLarge, match=r"11000x11000.*MAX_PIXELS"):
        codec.read_header(bomb, imaging_settings.image)


def test_png_decompression_bomb_never_reaches_detection(bomb, imaging_settings):
    detector = FixedDetector()
    with pytest.raises(ImageTooLarge):
        blur_photo(bomb, detector, imaging_settings)
    assert detector.calls == 0


def test_max_pixels_setting_is_applied_from_the_header():
    data = png_bytes(smooth_rgb(*SIZE))
    tight = ImageSettings(max_pixels=SIZE[0] * SIZE[1] - 1)
    with pytest.raises(ImageTooLarge):
        codec.read_header(data, tight)
    assert codec.read_header(data, ImageSettings(max_pixels=SIZE[0] * SIZE[1])).width == SIZE[0]


# ---------------------------------------------------------------------------------------------------------------
# The ImageMagick security policy
# ---------------------------------------------------------------------------------------------------------------


def test_the_whole_policy_is_in_force(imaging_settings):
    assert magick.policy_problems(imaging_settings.image) == []


def test_mvg_blob_is_refused_by_the_policy(imaging_settings):
    with pytest.raises(wand.exceptions.PolicyError), Image(blob=MVG, format="mvg"):
        pass


@pytest.mark.parametrize("name", ["text:/etc/passwd", "msl:/dev/null", "label:hello", "@/etc/passwd"])
def test_dangerous_coders_and_indirection_are_refused(name, imaging_settings):
    with pytest.raises(wand.exceptions.PolicyError), Image(filename=name):
        pass


@pytest.mark.parametrize(("fmt", "make"), [("gif", _gif), ("tiff", _tiff)])
def test_formats_outside_the_allow_list_are_refused_by_imagemagick_too(fmt, make, imaging_settings):
    """The second wall: even if sniffing were bypassed, the library refuses these coders."""
    with pytest.raises(wand.exceptions.PolicyError), Image(blob=make(), format=fmt):
        pass


def test_allowed_coders_still_work(imaging_settings):
    for fmt, data in [("png", png_bytes(smooth_rgb(8, 8))), ("jpeg", jpeg_bytes(smooth_rgb(8, 8)))]:
        with Image(blob=data, format=fmt) as img:
            assert img.size == (8, 8)


# ---------------------------------------------------------------------------------------------------------------
# Redaction units
# ---------------------------------------------------------------------------------------------------------------


def test_grid_size_keeps_aspect_and_caps_the_long_side():
    assert grid_size(100, 100, 8) == (8, 8)
    assert grid_size(200, 100, 8) == (8, 4)
    assert grid_size(100, 300, 8) == (3, 8)
    assert grid_size(5, 3, 8) == (5, 3)  # never more cells than pixels
    assert grid_size(1000, 10, 8) == (8, 1)  # never zero cells
    assert grid_size(70, 45, 1) == (1, 1)


def test_regions_are_padded_clamped_and_dropped_when_outside():
    faces = [
        Face(-10, -10, 30, 30, 0.9),  # top-left corner, partly outside
        Face(140, 100, 40, 40, 0.9),  # bottom-right corner, partly outside
        Face(300, 300, 10, 10, 0.9),  # entirely outside
        Face(40, 30, 40, 50, 0.9),
    ]
    got = regions(faces, 0.4, *SIZE)
    assert got == [(0, 0, 32, 32), (124, 84, 160, 120), REGION]
    for x0, y0, x1, y1 in got:
        assert 0 <= x0 < x1 <= SIZE[0]
        assert 0 <= y0 < y1 <= SIZE[1]


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    return textured_rgb(*SIZE, seed=21)


@pytest.mark.parametrize(("mode", "max_colours"), [("blur", None), ("pixelate", 64), ("solid", 1)])
def test_redact_changes_only_the_region(mode, max_colours, texture, imaging_settings):
    with decoded(png_bytes(texture), imaging_settings) as photo:
        assert redact(photo, [FACE], RedactSettings(mode=mode)) == 1
        out = export_rgb(photo.image)
    keep = outside(out.shape[:2], REGION)
    assert np.array_equal(out[keep], texture[keep])
    region = out[box_slice(REGION)]
    assert np.any(region != texture[box_slice(REGION)], axis=2).mean() > 0.95
    colours = len(np.unique(region.reshape(-1, 3), axis=0))
    if max_colours:
        assert colours <= max_colours
    else:
        assert colours > 64  # blur is smooth, not blocky
    if mode == "solid":
        assert np.allclose(region[0, 0], texture[box_slice(REGION)].reshape(-1, 3).mean(axis=0), atol=1)


def test_redact_ellipse_leaves_region_corners_and_changes_the_centre(texture, imaging_settings):
    with decoded(png_bytes(texture), imaging_settings) as photo:
        redact(photo, [FACE], RedactSettings(shape="ellipse"))
        out = export_rgb(photo.image)
    x0, y0, x1, y1 = REGION
    for ys, xs in [
        (slice(y0, y0 + 3), slice(x0, x0 + 3)),
        (slice(y0, y0 + 3), slice(x1 - 3, x1)),
        (slice(y1 - 3, y1), slice(x0, x0 + 3)),
        (slice(y1 - 3, y1), slice(x1 - 3, x1)),
    ]:
        assert np.array_equal(out[ys, xs], texture[ys, xs]), (ys, xs)
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    centre = (slice(cy - 10, cy + 10), slice(cx - 10, cx + 10))
    assert mean_abs_diff(out[centre], texture[centre]) > 30
    keep = outside(out.shape[:2], REGION)
    assert np.array_equal(out[keep], texture[keep])
    changed = np.any(out[box_slice(REGION)] != texture[box_slice(REGION)], axis=2)
    assert 0.6 < changed.mean() < 0.85  # about the inscribed ellipse (pi/4 of the box)


def test_redact_at_the_image_edges_is_clamped(texture, imaging_settings):
    faces = [Face(-15, -20, 40, 50, 0.9), Face(140, 90, 40, 50, 0.9), Face(500, 500, 20, 20, 0.9)]
    with decoded(png_bytes(texture), imaging_settings) as photo:
        assert redact(photo, faces, RedactSettings()) == 2
        out = export_rgb(photo.image)
    changed = np.any(out != texture, axis=2)
    assert changed[0:5, 0:5].all()
    assert changed[-5:, -5:].all()
    assert not changed[60:70, 60:100].any()  # between the two faces nothing moved


def test_redact_without_faces_changes_nothing(texture, imaging_settings):
    with decoded(png_bytes(texture), imaging_settings) as photo:
        assert redact(photo, [], RedactSettings()) == 0
        assert np.array_equal(export_rgb(photo.image), texture)


def test_redact_overlapping_faces(texture, imaging_settings):
    faces = [Face(40, 30, 40, 50, 0.9), Face(60, 40, 40, 50, 0.8)]
    with decoded(png_bytes(texture), imaging_settings) as photo:
        assert redact(photo, faces, RedactSettings()) == 2
        out = export_rgb(photo.image)
    for face in faces:
        centre = (slice(int(face.y), int(face.y + face.h)), slice(int(face.x), int(face.x + face.w)))
        assert mean_abs_diff(out[centre], texture[centre]) > 30
    union = np.zeros(SIZE[::-1], bool)
    defaults = RedactSettings()
    for x0, y0, x1, y1 in regions(faces, defaults.padding, *SIZE, defaults.padding_large):
        union[y0:y1, x0:x1] = True
    assert np.array_equal(out[~union], texture[~union])
