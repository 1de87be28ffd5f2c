"""The detection pyramid as pure geometry: every face from DETECT_MIN_FACE up is looked at whole, with context, at a
scale the detector handles, wherever it sits in a photo of any size."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from worker.config import DetectSettings
from worker.detect.local import LEVEL_STEP, OVERLAP, RELIABLE_FACE, LocalDetector, plan, scales, spans

SIZES = [(320, 240), (1024, 768), (1600, 1200), (4032, 3024), (3024, 4032), (5000, 10_000), (8660, 5773), (64, 9000)]


@pytest.mark.parametrize("length", [1, 100, 1024, 1025, 1100, 2048, 3024, 4032, 6495, 10_000])
@pytest.mark.parametrize("tile", [512, 1024, 1536])
def test_spans_cover_the_length_with_the_overlap_and_never_exceed_the_tile(length, tile):
    pieces = spans(length, tile)
    assert pieces[0][0] == 0
    assert pieces[-1][1] == length
    assert all(0 < end - start <= tile for start, end in pieces)
    for (_, end), (start, _) in itertools.pairwise(pieces):
        assert end - start >= OVERLAP


@pytest.mark.parametrize("length", [1100, 3024, 4032, 6495])
def test_a_face_up_to_half_the_overlap_lies_in_one_tile_with_a_quarter_of_it_around(length):
    pieces = spans(length, 1024)
    margin, face = OVERLAP // 4, OVERLAP // 2
    for start in range(0, length - face + 1, 7):
        lo, hi = max(0, start - margin), min(length, start + face + margin)
        assert any(a <= lo and hi <= b for a, b in pieces), (start, pieces)


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_the_finest_level_holds_the_promise_at_any_photo_size(width, height):
    s = DetectSettings()
    levels = plan(width, height, s)
    assert levels[0].scale * s.min_face >= RELIABLE_FACE - 1e-9  # a 16 px face is >= 16 px to the detector
    for a, b in itertools.pairwise(levels):
        assert b.scale < a.scale
        assert b.scale * LEVEL_STEP >= a.scale - 1e-9  # faces too big for a level's tiles: >= 40 px on the next
        assert OVERLAP / 2 / a.scale * b.scale >= RELIABLE_FACE
    last = levels[-1]
    assert len(last.tiles) == 1, "the coarsest level is one piece: any face, however large, is whole there"
    assert max(width, height) * last.scale <= max(s.coarse_side * 1.25, 1)
    for level in levels:
        w, h = max(1, round(width * level.scale)), max(1, round(height * level.scale))
        covered = np.zeros((min(h, 400), min(w, 400)), bool)  # corner sample: the tiles leave no gap
        for x0, y0, x1, y1 in level.tiles:
            assert 0 <= x0 < x1 <= w
            assert 0 <= y0 < y1 <= h
            if level is not last:
                assert x1 - x0 <= s.tile_side
                assert y1 - y0 <= s.tile_side
            covered[y0:y1, x0:x1] = True
        assert covered.all()


def test_thresholds_by_level_and_the_upside_down_pyramid():
    s = DetectSettings()
    upright = plan(4032, 3024, s)
    assert [lv.threshold for lv in upright[:2]] == [s.threshold] * 2
    assert all(lv.threshold == s.coarse_threshold for lv in upright[2:])
    turned = plan(4032, 3024, s, upside_down=True)
    assert all(lv.upside_down for lv in turned)
    assert [lv.threshold for lv in turned[:2]] == [s.rotated_threshold] * 2
    assert all(lv.threshold == s.rotated_coarse_threshold for lv in turned[2:])
    assert s.threshold < s.rotated_threshold
    assert s.coarse_threshold < s.rotated_coarse_threshold
    assert turned[0].scale * s.rotated_min_face >= RELIABLE_FACE - 1e-9


def test_cost_follows_the_face_not_the_photo():
    """Pixels the detector sees per photo pixel stay bounded as the photo grows (no cap on what is looked at)."""
    s = DetectSettings()

    def looked_at(w, h):
        return sum((x1 - x0) * (y1 - y0) for lv in plan(w, h, s) for x0, y0, x1, y1 in lv.tiles) / (w * h)

    ratios = [looked_at(w, h) for w, h in [(2000, 1500), (4032, 3024), (8660, 5773)]]
    assert all(1.0 <= r <= 4.0 for r in ratios), ratios  # level 0 at scale 1 plus the coarser ones and overlaps
    half = DetectSettings(min_face=32)
    assert plan(4032, 3024, half)[0].scale == pytest.approx(0.5)  # tuning: a larger promise costs a quarter


def test_small_photos_are_enlarged_as_before():
    s = DetectSettings()
    assert scales(640, 480, s.min_face, s.fine_side, s.coarse_side, s.max_upscale)[0] == pytest.approx(1.5)
    assert scales(1024, 768, s.min_face, s.fine_side, s.coarse_side, s.max_upscale) == pytest.approx([1.0, 0.625])


def test_detect_small_runs_only_the_levels_below_the_limit():
    class Frame:
        size = (8000, 6000)

        def __init__(self) -> None:
            self.scales: list[float] = []

        def rgb(self, scale: float):
            self.scales.append(scale)
            return np.zeros((max(1, round(6000 * scale)), max(1, round(8000 * scale)), 3), np.uint8), 1 / scale

    local = LocalDetector(DetectSettings(), model=Probe())
    frame = Frame()
    local.detect_small(frame, below=170)  # Rekognition's smallest face in an 8000 px photo
    all_levels = plan(8000, 6000, DetectSettings())
    assert frame.scales == [all_levels[0].scale, all_levels[1].scale]
    assert math.isclose(OVERLAP / all_levels[0].scale, 128)


class Probe:
    """Stands in for CenterFace where only the plan is under test: records nothing, finds nothing."""

    def run(self, rgb: np.ndarray, threshold: float) -> np.ndarray:
        assert rgb.ndim == 3
        assert rgb.shape[2] == 3
        return np.empty((0, 5), np.float32)


def test_a_face_cut_by_every_tile_edge_is_found(detector, settings):
    """A real face placed across the tile seams of a 12 MP photo (at the first level's seams) is still found."""
    import skimage.data
    from PIL import Image

    from tests.helpers.images import jpeg_bytes
    from worker.imaging import codec

    face = np.asarray(Image.fromarray(skimage.data.astronaut()[20:240, 140:320]).resize((48, 48)))  # ~36 px face
    canvas = np.full((3024, 4032, 3), 118, np.uint8)
    level = plan(4032, 3024, settings.detect)[0]
    # Centred on every tile edge inside the photo: each face is cut in two by the tile on one side.
    xs = sorted({x for x0, _, x1, _ in level.tiles for x in (x0, x1)} - {0, 4032})
    ys = sorted({y for _, y0, _, y1 in level.tiles for y in (y0, y1)} - {0, 3024})
    assert xs
    assert ys
    spots = [(round(x / level.scale) - 24, 300) for x in xs] + [
        (1000 + 60 * i, round(y / level.scale) - 24) for i, y in enumerate(ys)
    ]
    for x, y in spots:
        canvas[y : y + 48, x : x + 48] = face
    data = jpeg_bytes(canvas)
    with codec.decode(data, codec.read_header(data, settings.image)) as photo:
        faces = detector.detect(photo.views()[0])
    for x, y in spots:
        assert any(abs(f.x + f.w / 2 - (x + 24)) < 16 and abs(f.y + f.h / 2 - (y + 24)) < 16 for f in faces), (x, y)
