"""worker.geometry: padding/clamping, non-maximum suppression, EXIF orientation mapping."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.images import to_stored, to_upright
from PIL import Image as PILImage
from PIL import ImageOps

from worker.geometry import nms, orient_box, orient_point, pad_and_clamp, upright_size

ORIENTATIONS = range(1, 9)

# ---------------------------------------------------------------------------------------------------------------
# pad_and_clamp
# ---------------------------------------------------------------------------------------------------------------


def test_pad_grows_every_side_by_the_fraction_of_the_size():
    # 40x20 box at (100, 50), 25 %: 10 px left/right, 5 px top/bottom.
    assert pad_and_clamp(100, 50, 40, 20, 0.25, 1000, 1000) == (90, 45, 150, 75)


def test_no_padding_keeps_integer_boxes():
    assert pad_and_clamp(10, 20, 30, 40, 0.0, 100, 100) == (10, 20, 40, 60)


def test_rounds_outwards_never_inwards():
    # 10.4 -> 10 (floor), 10.4 + 5.2 = 15.6 -> 16 (ceil); 20.6 -> 20, 23.9 -> 24.
    assert pad_and_clamp(10.4, 20.6, 5.2, 3.3, 0.0, 100, 100) == (10, 20, 16, 24)
    # With padding: x - 0.1 * 5 = 9.9 -> 9; 15.6 + 0.5 = 16.1 -> 17.
    assert pad_and_clamp(10.4, 20.6, 5.2, 3.3, 0.1, 100, 100) == (9, 20, 17, 25)


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((-5, 10, 20, 20), (0, 10, 15, 30)),  # left edge
        ((10, -5, 20, 20), (10, 0, 30, 15)),  # top edge
        ((90, 10, 20, 20), (90, 10, 100, 30)),  # right edge (width 100)
        ((10, 70, 20, 20), (10, 70, 30, 80)),  # bottom edge (height 80)
        ((-50, -50, 300, 300), (0, 0, 100, 80)),  # larger than the image on every side
    ],
)
def test_clamps_at_each_edge(box, expected):
    assert pad_and_clamp(*box, 0.0, 100, 80) == expected


def test_padding_is_clamped_too():
    assert pad_and_clamp(2, 3, 10, 10, 0.5, 100, 80) == (0, 0, 17, 18)
    assert pad_and_clamp(90, 70, 10, 10, 0.5, 100, 80) == (85, 65, 100, 80)


@pytest.mark.parametrize(
    "box",
    [
        (-30, 10, 20, 20),  # left of the image
        (10, -30, 20, 20),  # above
        (100, 10, 20, 20),  # right: starts exactly at the right edge
        (130, 10, 20, 20),
        (10, 80, 20, 20),  # below: starts exactly at the bottom edge
        (10, 200, 20, 20),
        (-20, 10, 20, 20),  # ends exactly at the left edge: nothing inside
    ],
)
def test_box_fully_outside_gives_none(box):
    assert pad_and_clamp(*box, 0.0, 100, 80) is None


def test_padding_can_bring_an_outside_box_into_the_image():
    # x1 = -12 + 10 + 3 = 1: one pixel column is inside once padded.
    assert pad_and_clamp(-12, 10, 10, 10, 0.3, 100, 80) == (0, 7, 1, 23)


def test_random_boxes_always_cover_their_padded_area_inside_the_image():
    rng = np.random.default_rng(1)
    width, height = 120, 90
    for _ in range(500):
        x, y = rng.uniform(-60, 150, 2)
        w, h = rng.uniform(0.5, 80, 2)
        pad = rng.uniform(0, 1)
        got = pad_and_clamp(x, y, w, h, pad, width, height)
        lo_x, hi_x = max(0.0, x - w * pad), min(float(width), x + w + w * pad)
        lo_y, hi_y = max(0.0, y - h * pad), min(float(height), y + h + h * pad)
        if hi_x <= lo_x or hi_y <= lo_y:
            assert got is None
            continue
        assert got is not None
        x0, y0, x1, y1 = got
        assert all(isinstance(v, int) for v in got)
        assert 0 <= x0 < x1 <= width
        assert 0 <= y0 < y1 <= height
        assert x0 <= lo_x
        assert x1 >= hi_x
        assert y0 <= lo_y
        assert y1 >= hi_y
        assert lo_x - x0 < 1
        assert x1 - hi_x < 1
        assert lo_y - y0 < 1
        assert y1 - hi_y < 1


# ---------------------------------------------------------------------------------------------------------------
# nms
# ---------------------------------------------------------------------------------------------------------------


def _boxes(*rows):
    return np.array(rows, dtype=np.float32).reshape(-1, 5)


def test_nms_empty():
    out = nms(np.empty((0, 5), np.float32), 0.3)
    assert out.shape == (0, 5)


def test_nms_merges_duplicates_keeping_the_best_score():
    boxes = _boxes([10, 10, 50, 60, 0.6], [11, 9, 51, 61, 0.9], [10, 11, 49, 60, 0.7])
    out = nms(boxes, 0.3)
    assert len(out) == 1
    assert out[0].tolist() == pytest.approx([11, 9, 51, 61, 0.9])


def test_nms_keeps_neighbours_in_a_crowd():
    # Side by side, overlapping 40 % of each box: IoU 0.25 (< 0.3) -> both faces stay.
    # A small face partly hidden behind a large one: IoU 0.04 (though 100 % of the small box) -> both stay.
    boxes = _boxes(
        [0, 0, 10, 10, 0.9],
        [6, 0, 16, 10, 0.8],
        [100, 100, 200, 200, 0.95],
        [110, 110, 130, 130, 0.5],
    )
    out = nms(boxes, 0.3)
    assert len(out) == 4


def test_nms_threshold_is_strict_and_on_union():
    a, b = [0, 0, 10, 10, 0.9], [0, 0, 10, 5, 0.8]  # IoU exactly 0.5 (intersection over the smaller: 1.0)
    assert len(nms(_boxes(a, b), 0.5)) == 2
    assert len(nms(_boxes(a, b), 0.49)) == 1


def test_nms_returns_boxes_by_descending_score():
    rng = np.random.default_rng(3)
    xs = np.arange(10) * 50.0  # disjoint boxes: nothing is suppressed
    scores = rng.permutation(np.linspace(0.1, 0.9, 10))
    boxes = np.stack([xs, xs * 0, xs + 40, xs * 0 + 40, scores], axis=1).astype(np.float32)
    out = nms(boxes, 0.3)
    assert len(out) == 10
    assert np.all(np.diff(out[:, 4]) <= 0)
    assert sorted(out[:, 0].tolist()) == xs.tolist()  # the same boxes, reordered whole (rows kept intact)
    for row in out:
        assert row[2] - row[0] == 40


def test_nms_a_suppressed_box_suppresses_nothing():
    # A overlaps B, B overlaps C, A does not overlap C: greedy NMS keeps A and C.
    a, b, c = [0, 0, 10, 10, 0.9], [4, 0, 14, 10, 0.8], [8, 0, 18, 10, 0.7]
    out = nms(_boxes(c, b, a), 0.3)
    assert out[:, 4].tolist() == pytest.approx([0.9, 0.7])


# ---------------------------------------------------------------------------------------------------------------
# EXIF orientation: checked against an independent reference (numpy transforms of a marked array)
# ---------------------------------------------------------------------------------------------------------------

W, H = 7, 5  # non-square, odd: every mix-up of width/height or of an axis shows


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_reference_transform_agrees_with_pillow(orientation):
    """The numpy reference used below is itself checked against Pillow's exif_transpose."""
    stored = np.arange(W * H * 3, dtype=np.uint8).reshape(H, W, 3)
    im = PILImage.fromarray(stored)
    im.getexif()[0x0112] = orientation
    expected = np.asarray(ImageOps.exif_transpose(im))
    assert np.array_equal(to_upright(stored, orientation), expected)
    assert np.array_equal(to_stored(expected, orientation), stored)


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_upright_size(orientation):
    upright = to_upright(np.zeros((H, W)), orientation)
    assert upright_size(W, H, orientation) == (upright.shape[1], upright.shape[0])


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_orient_point_moves_each_pixel_where_the_transform_puts_it(orientation):
    for y in range(H):
        for x in range(W):
            stored = np.zeros((H, W), np.uint8)
            stored[y, x] = 1
            (vs, us) = np.nonzero(to_upright(stored, orientation))
            u, v = int(us[0]), int(vs[0])
            # Pixel centres map to pixel centres.
            assert orient_point(x + 0.5, y + 0.5, orientation, W, H) == pytest.approx((u + 0.5, v + 0.5)), (x, y)


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_orient_point_maps_the_corners_of_the_frame_onto_the_upright_frame(orientation):
    uw, uh = upright_size(W, H, orientation)
    corners = {orient_point(x, y, orientation, W, H) for x, y in [(0, 0), (W, 0), (0, H), (W, H)]}
    assert corners == {(0, 0), (uw, 0), (0, uh), (uw, uh)}


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_orient_box_covers_exactly_the_transformed_pixels(orientation):
    rng = np.random.default_rng(orientation)
    for _ in range(25):
        x, y = int(rng.integers(0, W - 1)), int(rng.integers(0, H - 1))
        w, h = int(rng.integers(1, W - x + 1)), int(rng.integers(1, H - y + 1))
        stored = np.zeros((H, W), np.uint8)
        stored[y : y + h, x : x + w] = 1
        vs, us = np.nonzero(to_upright(stored, orientation))
        expected = (us.min(), vs.min(), us.max() + 1 - us.min(), vs.max() + 1 - vs.min())
        assert orient_box(x, y, w, h, orientation, W, H) == pytest.approx(expected), (x, y, w, h)


def test_unknown_orientation_is_identity():
    for bad in (0, 9, -1):
        assert orient_point(1.5, 2.5, bad, W, H) == (1.5, 2.5)
        assert upright_size(W, H, bad) == (W, H)
