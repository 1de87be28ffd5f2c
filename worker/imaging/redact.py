"""Redaction: make every face region unrecognisable, in place, at a cost that does not grow with face size.

Blur: the padded region's pixels are read out of ImageMagick's pixel cache as floats, averaged into BLUR_CELLS
cells across, and the cells are spread back over the region with wide Gaussian weights (one BLAS product), then
written into the image.
What survives is at most cells x cells colours, so the face cannot be recovered, and the region costs a few
milliseconds whatever its size (an ImageMagick resize back up costs ~60 ns a pixel, a full-resolution Gaussian
with a large sigma seconds). Pixelate: at most 8 blocks across. Solid: the region's mean colour.
Only colour channels are written: alpha stays exactly as it was.
"""

from __future__ import annotations

import ctypes
from itertools import pairwise

import numpy as np
from wand.api import library

from worker.config import RedactSettings
from worker.detect import Face
from worker.errors import CorruptImage
from worker.geometry import face_padding, pad_and_clamp
from worker.imaging.codec import Photo
from worker.imaging.magick import Image, magick_errors

_FLOAT_PIXEL = 3  # ImageMagick StorageType FloatPixel: values in [0, 1], keeps 16-bit depth
SPREAD_CELLS = 1.1  # Gaussian sigma, in cells, used to spread the cells back (no block edges remain)
STRIP_PIXELS = 1 << 20  # pixels per strip when writing a region back (~12 MB of float32 RGB)


def regions(
    faces: list[Face], padding: float, width: int, height: int, padding_large: float = -1.0
) -> list[tuple[int, int, int, int]]:
    """Padded, clamped pixel regions (x0, y0, x1, y1) for the faces."""
    return [
        r
        for f in faces
        if (r := pad_and_clamp(f.x, f.y, f.w, f.h, face_padding(max(f.w, f.h), padding, padding_large), width, height))
        is not None
    ]


def grid_size(w: int, h: int, across: int) -> tuple[int, int]:
    """Cells along each side: at most `across` along the longer side, keeping the region's aspect."""
    long = max(w, h)
    n = min(across, long)
    return max(1, round(w * n / long)), max(1, round(h * n / long))


def spread_weights(size: int, cells: int, sigma: float) -> np.ndarray:
    """size x cells matrix: row i holds the normalised Gaussian weights of each cell for pixel i."""
    centres = (np.arange(size, dtype=np.float32) + 0.5) * cells / size - 0.5
    d = centres[:, None] - np.arange(cells, dtype=np.float32)[None, :]
    wts = np.exp(-0.5 * (d / sigma) ** 2)
    return wts / wts.sum(axis=1, keepdims=True)


def nearest_weights(size: int, cells: int) -> np.ndarray:
    idx = np.minimum((np.arange(size) * cells) // size, cells - 1)
    return np.eye(cells, dtype=np.float32)[idx]


def cell_means(pixels: np.ndarray, cw: int, ch: int) -> np.ndarray:
    """Box average of an (h, w, 3) region over a ch x cw grid of near-equal cells -> (ch, cw, 3)."""
    h, w = pixels.shape[:2]
    ys, xs = (np.arange(ch) * h) // ch, (np.arange(cw) * w) // cw
    sums = np.add.reduceat(np.add.reduceat(pixels, ys, axis=0), xs, axis=1)
    counts = np.diff(np.append(ys, h))[:, None] * np.diff(np.append(xs, w))[None, :]
    return sums / counts[:, :, None]


def fill(grid: np.ndarray, w: int, h: int, mode: str, rows: slice = slice(None)) -> np.ndarray:
    """Spread a (ch, cw, 3) grid of cell colours over an h x w region -> contiguous float32 (len(rows), w, 3):
    the region's rows `rows` (all by default; the caller works in strips to bound memory on huge faces)."""
    ch, cw = grid.shape[:2]
    if mode == "blur":
        ry, rx = spread_weights(h, ch, SPREAD_CELLS)[rows], spread_weights(w, cw, SPREAD_CELLS)
    else:
        ry, rx = nearest_weights(h, ch)[rows], nearest_weights(w, cw)
    across = np.einsum("xd,cdk->cxk", rx, grid.astype(np.float32))  # (ch, w, 3): tiny
    return (ry @ across.reshape(ch, w * 3)).reshape(len(ry), w, 3)  # one BLAS product over the strip


def ellipse_alpha(w: int, h: int, rows: slice = slice(None)) -> np.ndarray:
    """1 inside the ellipse inscribed in the region, feathered to 0 over its outer ~15% (rows `rows`)."""
    yy = ((np.arange(h, dtype=np.float32) + 0.5 - h / 2) / (h / 2))[rows]
    xx = (np.arange(w, dtype=np.float32) + 0.5 - w / 2) / (w / 2)
    r = np.sqrt(yy[:, None] ** 2 + xx[None, :] ** 2)
    return np.clip((1.0 - r) / 0.15, 0.0, 1.0)[:, :, None]


def _pixels(img: Image, x: int, y: int, w: int, h: int) -> np.ndarray:
    out = np.empty((h, w, 3), np.float32)
    if not library.MagickExportImagePixels(
        img.wand, x, y, w, h, b"RGB", _FLOAT_PIXEL, out.ctypes.data_as(ctypes.c_void_p)
    ):
        img.raise_exception()
        raise CorruptImage("could not read pixels back")
    return out


def _write(img: Image, x: int, y: int, pixels: np.ndarray) -> None:
    h, w = pixels.shape[:2]
    data = np.ascontiguousarray(pixels, dtype=np.float32)
    if not library.MagickImportImagePixels(
        img.wand, x, y, w, h, b"RGB", _FLOAT_PIXEL, data.ctypes.data_as(ctypes.c_void_p)
    ):
        img.raise_exception()
        raise CorruptImage("could not write blurred pixels")


def redact(photo: Photo, faces: list[Face], settings: RedactSettings) -> int:
    """Obscure every face of `photo` in place. Returns the number of regions changed."""
    img = photo.image
    w, h = photo.size
    boxes = regions(faces, settings.padding, w, h, settings.padding_large)
    across = {"blur": settings.cells, "pixelate": settings.blocks, "solid": 1}[settings.mode]
    ellipse = settings.shape == "ellipse"
    with magick_errors("blurring faces"):
        for x0, y0, x1, y1 in boxes:
            _redact_region(img, x0, y0, x1 - x0, y1 - y0, settings.mode, across, ellipse)
    return len(boxes)


def _redact_region(img: Image, x: int, y: int, w: int, h: int, mode: str, across: int, ellipse: bool) -> None:
    """One region. Up to ~4 Mpx it is read and written in one call each (fastest for crowds of small faces);
    a larger one in strips, so a face filling a 48 MP photo never needs more than a few tens of MB of floats."""
    cw, ch = grid_size(w, h, across)
    original = _pixels(img, x, y, w, h) if w * h <= 4 * STRIP_PIXELS else None
    if original is not None:
        grid = cell_means(original, cw, ch)
        step = h
    else:
        # One band of cell rows at a time: the same near-equal cells as cell_means on the whole region.
        bands = np.append((np.arange(ch) * h) // ch, h)
        grid = np.concatenate([cell_means(_pixels(img, x, y + a, w, b - a), cw, 1) for a, b in pairwise(bands)])
        step = max(1, STRIP_PIXELS // w)
    for a in range(0, h, step):
        rows = slice(a, min(h, a + step))
        out = fill(grid, w, h, mode, rows)
        if ellipse:
            alpha = ellipse_alpha(w, h, rows)
            below = original[rows] if original is not None else _pixels(img, x, y + a, w, rows.stop - a)
            out = out * alpha + below * (1.0 - alpha)
        _write(img, x, y + a, out)
