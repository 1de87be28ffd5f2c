"""What the worker must do with hostile inputs (the attacker's corpus in tests/helpers/hostile.py).

Refusals run in a child process each (a bomb must not take the test run down with it), with a hard cap on the
child's address space; the child reports the refusal reason and its own peak RSS (VmHWM). Clean outputs run in
process with the real detector and default settings, then the output container and pixels are taken apart:
nothing a viewer cannot see may leave the worker, and what a viewer sees has no unblurred face.

The self-tests in test_hostile_corpus.py prove each input really carries what it claims.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import hostile as h
from helpers.images import (
    luma,
    mean_abs_diff,
    pil_array,
    png_ihdr,
    smooth_rgb,
    to_stored,
    with_markers,
)

from worker.blur import blur_photo

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
ASTRONAUT = h.astronaut()
FACE_GREY = luma(ASTRONAUT)
PROTECTED = 0.35  # detail correlation at or below which a face counts as blurred (tests/quality/measure.py)
PEAK_RSS_MB = 400
CHILD_SECONDS = 20
CHILD_ADDRESS_SPACE = 3 << 30  # keeps an unguarded bomb from taking the machine down; it fails the test instead

CHILD = """
import json, sys
sys.path[:0] = [{root!r}, {tests!r}]
import worker.imaging.magick  # before wand
from helpers.detectors import FixedDetector
from worker.blur import blur_photo
from worker.config import Settings
from worker.errors import FaceblurError
from worker.runtime import prepare_imaging

data = open(sys.argv[1], "rb").read()
settings = Settings()
prepare_imaging(settings.image)
detector = FixedDetector()
try:
    blur_photo(data, detector, settings)
    outcome = "published"
except FaceblurError as exc:
    outcome = exc.reason
except BaseException as exc:
    outcome = "crashed: " + type(exc).__name__ + ": " + str(exc)[:200]
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(json.dumps({{"outcome": outcome, "peak_kb": int(status["VmHWM"].split()[0]), "detected": detector.calls}}))
"""


def _limit_child() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_ADDRESS_SPACE, CHILD_ADDRESS_SPACE))


def blur_in_child(data: bytes, tmp_path: Path) -> dict:
    path = tmp_path / "input.bin"
    path.write_bytes(data)
    script = CHILD.format(root=str(ROOT), tests=str(TESTS))
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, str(path)],
            capture_output=True,
            text=True,
            timeout=CHILD_SECONDS,
            cwd=ROOT,
            preexec_fn=_limit_child,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"no answer within {CHILD_SECONDS} s")
    lines = done.stdout.strip().splitlines()
    assert lines, f"child died (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(lines[-1])


@pytest.mark.parametrize("case", list(h.REFUSALS))
def test_hostile_input_is_refused_quickly_in_bounded_memory(case, tmp_path):
    make, reason = h.REFUSALS[case]
    report = blur_in_child(make(), tmp_path)
    assert report["outcome"] == reason, report
    assert report["detected"] == 0, "refused only after detection"
    assert report["peak_kb"] / 1024 < PEAK_RSS_MB, report


# -- alpha: what is transparent carries nothing, what is translucent carries only what is rendered ---------------


@pytest.fixture(scope="module")
def blur(detector, settings):
    return lambda data: blur_photo(data, detector, settings)


@pytest.mark.parametrize(
    ("face_alpha", "rest_alpha"), [(0, 255), (0, 0), (3, 255), (128, 255)], ids=["hole", "all_clear", "a3", "a128"]
)
def test_transparent_pixels_carry_no_colour(face_alpha, rest_alpha, blur):
    out = blur(h.rgba_face_under_alpha(face_alpha, rest_alpha))
    rgba = pil_array(out.data, mode="RGBA")
    alpha = rgba[..., 3]
    assert not rgba[..., :3][alpha == 0].any(), "colour kept under alpha = 0 (recoverable by dropping alpha)"
    for a in np.unique(alpha):
        if 0 < a < 255:
            colours = rgba[..., :3][alpha == a]
            for c in range(3):
                distinct = len(np.unique(colours[:, c]))
                assert distinct <= a + 1, f"alpha {a}: {distinct} levels in channel {c} (premultiplied 8-bit: <= a+1)"
    if face_alpha != 3:  # at alpha 3 the face is invisible: quantised (above), not necessarily blurred
        assert abs(h.face_detail(ASTRONAUT, rgba[..., :3])) <= PROTECTED


def test_face_drawn_in_the_alpha_channel_is_blurred(blur):
    out = blur(h.rgba_face_in_alpha())
    rgba = pil_array(out.data, mode="RGBA")
    assert abs(h.face_detail(FACE_GREY, rgba[..., 3])) <= PROTECTED
    assert abs(h.face_detail(FACE_GREY, h.over_white(rgba))) <= PROTECTED


# -- 16-bit PNG: the output is 8-bit, the low byte is gone -----------------------------------------------------


@pytest.mark.parametrize("high", ["flat", "unrelated"])
def test_face_in_the_low_byte_of_a_16_bit_png_is_not_published(high, blur):
    out = blur(h.png16_low_byte_face(None if high == "flat" else h.decoy()))
    assert png_ihdr(out.data)[2] <= 8  # a flat 8-bit image may be stored in fewer bits, never in more
    assert abs(h.face_detail(ASTRONAUT, pil_array(out.data))) < 0.2


def test_16_bit_astronaut_comes_out_8_bit_and_blurred(blur):
    out = blur(h.png16_astronaut())
    assert png_ihdr(out.data)[2] == 8
    assert out.faces
    assert h.face_detail(ASTRONAUT, pil_array(out.data)) <= PROTECTED


# -- ICC: no private payload leaves, and detection runs on the colour-managed view -----------------------------


def assert_canonical_or_no_icc(data: bytes) -> bytes | None:
    icc = h.embedded_icc(data)
    if icc is not None:
        assert h.icc_description(icc).lower().startswith("faceblur"), h.icc_description(icc)
    return icc


def test_icc_profile_carrying_a_jpeg_of_the_face_is_not_copied(blur):
    data, payload = h.jpeg_icc_carrying_face()
    out = blur(data)
    icc = assert_canonical_or_no_icc(out.data)
    assert icc is None or payload not in icc
    for piece in (payload[:16_384], payload[-16_384:]):  # the profile may be split over APP2 segments
        assert piece not in out.data
    assert h.face_detail(ASTRONAUT, h.rendered_srgb(out.data)) <= PROTECTED


@pytest.mark.parametrize("make", [h.png_icc_scrambled, h.jpeg_icc_scrambled], ids=["png", "jpeg"])
def test_face_shown_only_through_the_icc_tone_curves_is_blurred(make, blur):
    out = blur(make())
    assert h.face_detail(ASTRONAUT, h.rendered_srgb(out.data)) <= PROTECTED


def test_display_p3_photo_keeps_its_colours(blur):
    data = h.jpeg_display_p3()
    out = blur(data)
    icc = h.embedded_icc(out.data)
    assert icc is not None, "the P3 profile was dropped: colours shift"
    p3 = h.colorants(h.P3_PRIMARIES)
    for i, sig in enumerate((b"rXYZ", b"gXYZ", b"bXYZ")):
        assert np.abs(h.icc_xyz(icc, sig) - p3[:, i]).max() < 0.002, sig
    shown_in, shown_out = h.rendered_srgb(data), h.rendered_srgb(out.data)
    x0, y0, x1, y1 = h.ASTRONAUT_FACE
    outside = ~h.box_mask(shown_in.shape[:2], (x0 - 60, y0 - 60, x1 + 60, y1 + 60))
    assert mean_abs_diff(shown_in[outside], shown_out[outside]) < 3
    assert h.face_detail(ASTRONAUT, shown_out) <= PROTECTED


def test_face_lifted_by_gama_is_blurred_and_gama_dropped(blur):
    data = h.png_gama_hidden_face()
    out = blur(data)
    assert b"gAMA" not in h.png_types(out.data)
    shown_in = h.gama_displayed(pil_array(data))
    assert h.face_detail(shown_in, h.rendered_srgb(out.data)) <= PROTECTED


# -- metadata: none of it leaves ---------------------------------------------------------------------------------


def assert_no_canaries(data: bytes) -> None:
    assert h.CANARY not in data
    assert h.GPS_DATUM.encode() not in data


def test_png_metadata_is_removed_and_orientation_applied(blur):
    upright = with_markers(smooth_rgb(160, 120))
    out = blur(h.png_with_metadata(to_stored(upright, 6)))
    assert set(h.output_parts(out.data)) <= {b"IHDR", b"IDAT", b"IEND"}  # not even our profile: sRGB
    assert_no_canaries(out.data)
    pixels = pil_array(out.data)
    assert pixels.shape == upright.shape
    assert mean_abs_diff(pixels, upright) < 1


def test_webp_metadata_is_removed(blur):
    out = blur(h.webp_with_metadata(with_markers(smooth_rgb(160, 120))))
    h.output_parts(out.data)
    assert_no_canaries(out.data)


def test_jpeg_metadata_and_appended_jpeg_are_removed(blur):
    data, second = h.jpeg_with_metadata(with_markers(smooth_rgb(160, 120)))
    out = blur(data)
    h.output_parts(out.data)  # no COM, APP13, APP1 EXIF/XMP, MPF; one SOI, nothing after EOI
    assert second[:16_384] not in out.data
    assert_no_canaries(out.data)


def test_heic_exif_xmp_thumbnail_and_profile_never_reach_the_jpeg(blur):
    """HEIC reaches the decoder as it came (its items are not rebuilt): the output is the primary image's pixels,
    and nothing else, as a JPEG."""
    pytest.importorskip("pillow_heif")
    data, payload = h.heic_with_metadata(ASTRONAUT)
    out = blur(data)
    assert out.content_type == "image/jpeg"
    parts = h.output_parts(out.data)
    assert b"E2" not in parts  # the uploaded profile renders as sRGB: no profile at all
    assert_no_canaries(out.data)
    for piece in (payload[:16_384], payload[-16_384:]):
        assert piece not in out.data
    assert pil_array(out.data).shape == ASTRONAUT.shape  # the primary image, not the thumbnail
    assert out.faces
    assert h.face_detail(ASTRONAUT, pil_array(out.data)) <= PROTECTED


def test_jpeg_with_restart_markers_is_blurred(blur):
    out = blur(h.jpeg_with_restarts(ASTRONAUT))
    assert out.content_type == "image/jpeg"
    assert out.faces
    assert h.face_detail(ASTRONAUT, pil_array(out.data)) <= PROTECTED
