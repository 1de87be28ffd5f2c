"""Hostile inputs built at test time, each with its exact outcome: what a viewer cannot see never leaves, detection
sees what a viewer sees, and bombs are refused at bounded time and memory. The real detector (CenterFace) on a
real face (scikit-image's public-domain astronaut), real ImageMagick; outputs are checked by extracting the channel,
not by trusting the worker."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import hostile
from helpers import icc as test_icc
from helpers.images import (
    correlation,
    highpass,
    icc_from_segments,
    jpeg_bytes,
    jpeg_segments,
    luma,
    pil_array,
    png_bytes,
    png_chunks,
)
from PIL import Image as PILImage
from PIL import ImageCms

from worker.blur import blur_photo
from worker.errors import FaceblurError

ROOT = Path(__file__).resolve().parents[2]
FACE = (180, 60, 272, 178)  # the astronaut's face, x0 y0 x1 y1 (the detector finds ~(180, 62)-(271, 178))


@pytest.fixture(scope="module")
def astronaut(skimage_data) -> np.ndarray:
    return pil_array((skimage_data / "astronaut.png").read_bytes())


def face_detail(img: np.ndarray, reference: np.ndarray) -> float:
    """How much of the reference face's fine detail `img` still carries (1 = all of it, ~0 = none)."""
    x0, y0, x1, y1 = FACE
    a = luma(img[y0:y1, x0:x1]) if img.ndim == 3 else img[y0:y1, x0:x1].astype(float)
    b = luma(reference[y0:y1, x0:x1]) if reference.ndim == 3 else reference[y0:y1, x0:x1].astype(float)
    return correlation(highpass(a, 2.0), highpass(b, 2.0))


def rendered(data: bytes) -> np.ndarray:
    """What a colour-managed viewer shows: the pixels through the file's own profile into sRGB (none = sRGB)."""
    with PILImage.open(io.BytesIO(data)) as im:
        im = im.convert("RGB") if im.mode not in ("RGB",) else im
        profile = im.info.get("icc_profile")
        if not profile:
            return np.asarray(im)
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        return np.asarray(
            ImageCms.applyTransform(im, ImageCms.buildTransform(source, ImageCms.createProfile("sRGB"), "RGB", "RGB"))
        )


# -- colour profiles ------------------------------------------------------------------------------------------------
def scrambling_profile(permutation: np.ndarray) -> bytes:
    """An sRGB-like profile whose tone curve maps stored level i to what sRGB would show for permutation[i]."""
    table = test_icc.srgb_table(256)[permutation]
    return test_icc.rgb_profile("sRGB IEC61966-2.1", ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)), test_icc.curv(table))


def test_a_tone_curve_that_scrambles_levels_cannot_hide_a_face_from_detection(astronaut, detector, settings):
    """The stored levels are noise; a colour-managed viewer shows the face. Detection must see the viewer's view."""
    rng = np.random.default_rng(7)
    permutation = rng.permutation(256)
    inverse = np.argsort(permutation)
    stored = inverse[astronaut].astype(np.uint8)  # shown through the profile: permutation[inverse[v]] = v
    data = png_with_iccp(stored, scrambling_profile(permutation))
    # Precondition, by the ICC spec (a tone curve given as a table is looked up at the stored level; sRGB
    # colorants, so nothing else changes): a colour-managed viewer shows the face, the stored pixels alone do not.
    assert np.array_equal(permutation[stored], astronaut)
    assert face_detail(stored, astronaut) < 0.3
    result = blur_photo(data, detector, settings)
    assert result.faces, "the face a viewer sees was not found"
    shown = rendered(result.data)
    assert face_detail(shown, astronaut) < 0.3
    assert png_iccp(result.data) != scrambling_profile(permutation)


def test_a_profile_carrying_a_whole_jpeg_never_reaches_the_output(astronaut, detector, settings):
    payload = jpeg_bytes(astronaut[FACE[1] : FACE[3], FACE[0] : FACE[2]], 90)
    profile = test_icc.rgb_profile(
        "sRGB", ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)), test_icc.curv(test_icc.srgb_table()), [(b"fblr", payload)]
    )
    data = jpeg_bytes(astronaut, 92, icc_profile=profile)
    assert payload in data or payload[:64] in data  # precondition (the profile may be split over APP2 segments)
    out = blur_photo(data, detector, settings).data
    assert payload[2:66] not in out
    assert out.count(b"\xff\xd8") == 1
    written = icc_from_segments(jpeg_segments(out))
    assert written is None  # an sRGB-rendering profile: pixels are already what viewers show, no profile needed
    assert face_detail(pil_array(out), astronaut) < 0.3


def test_a_png_gamma_that_reveals_a_face_hidden_in_dark_levels(astronaut):
    """gAMA tells browsers to brighten the levels 0..6 into a picture; the output carries no gAMA, so detection
    must have run on the brightened view."""
    from worker.config import Settings
    from worker.detect.local import LocalDetector

    grey = luma(astronaut) / 255.0
    gamma = 2.0  # file gamma: displayed = (v/255) ** (1 / (2.2 * gamma)) brightens the darkest levels strongly
    stored = np.round(255 * grey ** (2.2 * gamma)).astype(np.uint8)
    data = png_with_chunk(png_bytes(np.dstack([stored] * 3)), b"gAMA", struct.pack(">I", round(gamma * 100000)))
    result = blur_photo(data, LocalDetector(Settings().detect), Settings())
    assert set(hostile.output_parts(result.data)) <= {b"IHDR", b"iCCP", b"IDAT", b"IEND"}  # no gAMA; our profile
    shown = pil_array(result.data)  # no gAMA, no profile or our P3 one: what every viewer shows
    assert face_detail(shown, astronaut) < 0.3


# -- bombs, at bounded time and memory -----------------------------------------------------------------------------
def zeros(n: int) -> bytes:
    z = zlib.compressobj(9)
    return b"".join(z.compress(bytes(1 << 20)) for _ in range(n >> 20)) + z.flush()


def png_with_chunk(png: bytes, kind: bytes, body: bytes) -> bytes:
    chunk = struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return png[:33] + chunk + png[33:]


def png_with_iccp(rgb: np.ndarray, profile: bytes) -> bytes:
    return png_with_chunk(png_bytes(rgb), b"iCCP", b"icc\0\0" + zlib.compress(profile))


def png_iccp(data: bytes) -> bytes | None:
    found = [b for k, b in png_chunks(data) if k == b"iCCP"]
    return zlib.decompress(found[0][found[0].index(b"\0") + 2 :]) if found else None


BOMBS = {
    "ztxt_1gib": lambda png: png_with_chunk(png, b"zTXt", b"Comment\0\0" + zeros(1 << 30)),
    "raw_profile_exif_256mib": lambda png: png_with_chunk(
        png, b"zTXt", b"Raw profile type exif\0\0" + zeros(256 << 20)
    ),
    "itxt_xmp_256mib": lambda png: png_with_chunk(png, b"iTXt", b"XML:com.adobe.xmp\0\1\0\0\0" + zeros(256 << 20)),
    "iccp_256mib": lambda png: png_with_chunk(png, b"iCCP", b"icc\0\0" + zeros(256 << 20)),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_ancillary_bombs_are_refused_at_bounded_memory(name, tmp_path):
    data = BOMBS[name](png_bytes(np.zeros((64, 64, 3), np.uint8)))
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    code = (
        "import resource, sys\n"
        "from worker import process; process.prepare()\n"
        "from helpers.detectors import FixedDetector\n"
        "from worker.blur import blur_photo\n"
        "from worker.config import Settings\n"
        "from worker.errors import FaceblurError\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"data = open({str(path)!r}, 'rb').read()\n"
        "try:\n    blur_photo(data, FixedDetector(), Settings()); print('PUBLISHED')\n"
        "except FaceblurError as e:\n    print(e.reason)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    reason, grown_mib = out.stdout.split()
    assert reason == "metadata_too_large"
    assert int(grown_mib) < 64, f"{name} grew the process by {grown_mib} MiB"


def test_a_bomb_is_refused_before_any_detector_runs(astronaut):
    from helpers.detectors import FixedDetector

    from worker.config import Settings

    detector = FixedDetector()
    with pytest.raises(FaceblurError) as caught:
        blur_photo(BOMBS["ztxt_1gib"](png_bytes(astronaut)), detector, Settings())
    assert detector.calls == 0
    assert caught.value.reason == "metadata_too_large"
    assert "MAX_METADATA_BYTES" in str(caught.value)
