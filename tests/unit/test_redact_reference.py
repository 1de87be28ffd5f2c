"""Redaction gives what a plain reference computation gives, for every mode, shape, channel count and size.

The reference below works in float64 on the 16-bit pixel values, one region after the other, with explicit
loops for the cell means: nothing in it is shared with worker.imaging.redact except grid_size and the spread
sigma. Redaction has one path; small regions are read once and written once, huge ones in strips.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from helpers.images import png_bytes, smooth_rgb, textured_rgb
from wand.api import library
from wand.color import Color
from wand.image import Image

from worker.config import RedactSettings
from worker.detect import Face
from worker.imaging import codec
from worker.imaging import redact as r
from worker.imaging.codec import Photo

SHORT_PIXEL = 7  # ImageMagick StorageType ShortPixel
LEVEL = 257  # one 8-bit level in 16-bit units


def read16(img: Image, layout: bytes = b"RGB") -> np.ndarray:
    out = np.empty((img.height, img.width, len(layout)), np.uint16)
    assert library.MagickExportImagePixels(img.wand, 0, 0, img.width, img.height, layout, SHORT_PIXEL, out.ctypes.data)
    return out


def decoded(data: bytes, settings) -> Photo:
    return codec.decode(data, codec.read_header(data, settings.image))


def weights(size: int, cells: int, mode: str) -> np.ndarray:
    if mode != "blur":
        return np.eye(cells)[np.minimum(np.arange(size) * cells // size, cells - 1)]
    d = (np.arange(size) + 0.5) * cells / size - 0.5 - np.arange(cells)[:, None]
    g = np.exp(-0.5 * (d / r.SPREAD_CELLS) ** 2).T
    return g / g.sum(axis=1, keepdims=True)


def reference(pixels: np.ndarray, boxes: list[tuple[int, int, int, int]], settings: RedactSettings) -> np.ndarray:
    """What redact should write: regions in order (a later one sees the earlier ones), rounded to integers."""
    out = pixels.astype(np.float64)
    across = {"blur": settings.cells, "pixelate": settings.blocks, "solid": 1}[settings.mode]
    for x0, y0, x1, y1 in boxes:
        region = out[y0:y1, x0:x1]
        h, w = region.shape[:2]
        cw, ch = r.grid_size(w, h, across)
        ys, xs = np.append(np.arange(ch) * h // ch, h), np.append(np.arange(cw) * w // cw, w)
        grid = np.array(
            [[region[ys[i] : ys[i + 1], xs[j] : xs[j + 1]].mean(axis=(0, 1)) for j in range(cw)] for i in range(ch)]
        )
        new = np.einsum(
            "yi,xj,ijk->yxk", weights(h, ch, settings.mode), weights(w, cw, settings.mode), grid, optimize=True
        )
        if settings.shape == "ellipse":
            yy = (np.arange(h) + 0.5 - h / 2) / (h / 2)
            xx = (np.arange(w) + 0.5 - w / 2) / (w / 2)
            alpha = np.clip((1 - np.hypot(yy[:, None], xx[None, :])) / 0.15, 0, 1)[:, :, None]
            new = region * (1 - alpha) + new * alpha
        out[y0:y1, x0:x1] = np.floor(new + 0.5)
    return out


class Spy:
    """Records the size of every read and write of pixels."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads: list[int] = []
        self.writes: list[int] = []
        self.channels: set[int] = set()
        read, write = r._Canvas.read, r._Canvas.write

        def spy_read(canvas, x, y, w, h):
            self.reads.append(w * h)
            return read(canvas, x, y, w, h)

        def spy_write(canvas, x, y, pixels):
            self.writes.append(pixels.shape[0] * pixels.shape[1])
            self.channels.add(pixels.shape[2])
            write(canvas, x, y, pixels)

        monkeypatch.setattr(r._Canvas, "read", spy_read)
        monkeypatch.setattr(r._Canvas, "write", spy_write)


def blur_and_compare(photo: Photo, faces: list[Face], settings: RedactSettings, atol: float) -> np.ndarray:
    """Redact; assert the result is the reference's within atol (16-bit units); return the new pixels."""
    before = read16(photo.image)
    assert r.redact(photo, faces, settings) == len(faces)
    after = read16(photo.image)
    boxes = r.regions(faces, settings.padding, *photo.size, settings.padding_large)
    diff = np.abs(after - reference(before, boxes, settings))
    assert diff.max() <= atol, (diff.max(), np.unravel_index(diff.argmax(), diff.shape))
    return after


MODES = [
    RedactSettings(),
    RedactSettings(mode="pixelate"),
    RedactSettings(mode="solid"),
    RedactSettings(shape="ellipse"),
]


@pytest.mark.parametrize("settings", MODES, ids=["blur", "pixelate", "solid", "ellipse"])
def test_one_region_read_and_written_once_matches_the_reference(settings, imaging_settings, monkeypatch):
    with decoded(png_bytes(textured_rgb(200, 150, seed=3)), imaging_settings) as photo:
        spy = Spy(monkeypatch)
        blur_and_compare(photo, [Face(50, 30, 70, 80, 0.9)], settings, atol=2)
    assert len(spy.reads) == len(spy.writes) == 1


def crowd(width: int, height: int, step: int, size: int) -> list[Face]:
    """A grid of small faces; neighbours' padded regions overlap."""
    return [Face(x, y, size, size, 0.9) for y in range(5, height - size, step) for x in range(5, width - size, step)]


@pytest.mark.parametrize("settings", MODES, ids=["blur", "pixelate", "solid", "ellipse"])
def test_a_crowd_of_overlapping_regions_matches_the_reference_in_order(settings, imaging_settings, monkeypatch):
    faces = crowd(300, 200, 30, 20)
    assert len(faces) > 40
    with decoded(png_bytes(textured_rgb(300, 200, seed=4)), imaging_settings) as photo:
        spy = Spy(monkeypatch)
        blur_and_compare(photo, faces, settings, atol=2)
    assert len(spy.reads) == len(spy.writes) == len(faces)  # each region read once, written once


def wavy_rgb(width: int, height: int) -> np.ndarray:
    """Smooth, with waves a few cells of a big face long: means taken from the wrong place show, and so do
    means taken from the pixels as they were before an overlapping region's blur flattened the waves."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.stack(
        [40 + 170 * xx / width, 128 + 100 * np.sin(xx / 40) * np.cos(yy / 35), 40 + 170 * yy / height], axis=-1
    )
    return np.clip(img, 0, 255).astype(np.uint8)


def test_alpha_is_redacted_as_a_fourth_channel(imaging_settings, monkeypatch):
    rgb = wavy_rgb(1600, 1200)
    alpha = np.tile(np.linspace(0, 255, 1600).astype(np.uint8), (1200, 1))[:, :, None]
    faces = [Face(300, 200, 800, 800, 0.9)]
    with decoded(png_bytes(np.concatenate([rgb, alpha], axis=2)), imaging_settings) as photo:
        assert photo.has_alpha
        before = read16(photo.image, b"RGBA")
        spy = Spy(monkeypatch)
        boxes = r.regions(faces, 0.4, 1600, 1200, 0.2)
        assert r.redact(photo, faces, RedactSettings()) == 1
        after_all = read16(photo.image, b"RGBA")
        assert spy.channels == {4}
        assert np.abs(after_all - reference(before, boxes, RedactSettings())).max() <= 2
        after = after_all[..., 3]
        x0, y0, x1, y1 = r.regions(faces, 0.4, 1600, 1200, 0.2)[0]
        keep = np.ones(after.shape, bool)
        keep[y0:y1, x0:x1] = False
        assert np.array_equal(after[keep], before[..., 3][keep])  # alpha untouched outside the face


def test_greyscale_stays_grey_and_is_blurred_as_one_channel(imaging_settings, monkeypatch):
    grey = textured_rgb(200, 150, seed=7)[..., 0]
    with decoded(png_bytes(grey), imaging_settings) as photo:
        spy = Spy(monkeypatch)
        after = blur_and_compare(photo, [Face(50, 30, 70, 80, 0.9)], RedactSettings(), atol=2)
    assert np.array_equal(after[..., 0], after[..., 1])
    assert np.array_equal(after[..., 0], after[..., 2])
    assert spy.reads == spy.writes
    assert spy.channels == {1}


@pytest.mark.parametrize("shape", ["rect", "ellipse"])
def test_huge_region_is_read_and_written_in_strips(shape, imaging_settings, monkeypatch):
    monkeypatch.setattr(r, "STRIP_PIXELS", 5000)
    with decoded(png_bytes(smooth_rgb(300, 220, seed=8)), imaging_settings) as photo:
        spy = Spy(monkeypatch)
        blur_and_compare(photo, [Face(40, 30, 200, 150, 0.9)], RedactSettings(shape=shape), atol=2)
    assert len(spy.writes) > 5
    assert max(spy.reads + spy.writes) <= 5000


def test_a_face_filling_a_large_photo_needs_little_memory(imaging_settings):
    """A 12 MP region: reading it whole as uint16 would be 72 MB, as float32 144 MB."""
    with Photo(Image(width=4000, height=3000, background=Color("#c86432")), "png", 0, None, False) as photo:
        tracemalloc.start()
        try:
            r.redact(photo, [Face(-100, -100, 4200, 3200, 0.9)], RedactSettings())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 40e6, peak
