"""Pixels between ImageMagick's pixel cache and numpy: a rectangle read or written as 8- or 16-bit samples, and a
whole image rewritten a strip of rows at a time (bounded memory). Wand's own conversion (numpy.asarray(img)) goes
through a ctypes char array; these go straight to and from the pixel cache.

A layout names the channels in order: RGB, RGBA; R reads grey as its red channel, I writes one value to red, green
and blue alike. 16-bit samples (ShortPixel) are what a Q16 pixel cache holds; 8-bit ones (CharPixel) are
ImageMagick's 8-bit rounding of them, what its 8-bit encoders write.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from wand.api import library

from worker.errors import CorruptImage
from worker.imaging.magick import Image

Samples = type[np.uint8] | type[np.uint16]
_STORAGE = {np.uint8: 1, np.uint16: 7}  # ImageMagick StorageType: CharPixel, ShortPixel
STRIP_PIXELS = 1 << 20  # pixels rewritten at a time


def read(img: Image, x: int, y: int, w: int, h: int, layout: str, dtype: Samples = np.uint8) -> np.ndarray:
    """(h, w, len(layout)) samples of the rectangle at (x, y)."""
    out = np.empty((h, w, len(layout)), dtype)
    if not library.MagickExportImagePixels(img.wand, x, y, w, h, layout.encode(), _STORAGE[dtype], out.ctypes.data):
        img.raise_exception()
        raise CorruptImage("could not read pixels")
    return out


def write(img: Image, x: int, y: int, pixels: np.ndarray, layout: str, dtype: Samples = np.uint8) -> None:
    """Write (h, w, len(layout)) samples at (x, y)."""
    h, w = pixels.shape[:2]
    data = np.ascontiguousarray(pixels, dtype=dtype)
    if not library.MagickImportImagePixels(img.wand, x, y, w, h, layout.encode(), _STORAGE[dtype], data.ctypes.data):
        img.raise_exception()
        raise CorruptImage("could not write pixels")


def export(img: Image, layout: str) -> np.ndarray:
    """The whole image, HxWxlen(layout) uint8."""
    w, h = img.size
    return read(img, 0, 0, w, h, layout)


def export_rgb(img: Image) -> np.ndarray:
    """The whole image, HxWx3 uint8 RGB."""
    return export(img, "RGB")


def rewrite_rows(
    img: Image,
    rewrite: Callable[[np.ndarray], np.ndarray],
    dtype: Samples,
    layouts: tuple[str, str] | None = None,
) -> None:
    """Export the pixels a strip of rows at a time, rewrite them, import them back. Layouts (read, write) are RGBA
    with alpha, RGB without (importing RGBA would give an opaque image an alpha channel), unless given."""
    w, h = img.size
    rgb = "RGBA" if img.alpha_channel else "RGB"
    layout_in, layout_out = layouts or (rgb, rgb)
    step = max(1, STRIP_PIXELS // w)
    for y in range(0, h, step):
        rows = min(step, h - y)
        write(img, 0, y, rewrite(read(img, 0, y, w, rows, layout_in, dtype)), layout_out, dtype)
