"""Redaction: make every face region unrecognisable, in place. One path for every region, every size and mode.

Blur: the padded region is averaged into BLUR_CELLS cells across, and the cells are spread back over the region
with wide Gaussian weights. Both are small matrix products: a region's pixels are an h x (w * channels) matrix,
which averaging and spreading along y multiply on the left; along x only arrays of a few cell rows remain. What
survives is at most cells x cells colours, so the face cannot be recovered.
Pixelate: at most 8 blocks across. Solid: the region's mean colour. With transparency, alpha is treated as a fourth
channel (a face can be drawn in alpha alone); the encoder then quantises colour to what alpha lets through.

Pixels move as 16-bit integers (the Q16 pixel cache's own format), and a region is read and written in strips of
STRIP_PIXELS rows' worth, so a face filling a 48 MP photo needs a few tens of MB: the strips' cell-row sums give the
means (first pass), then each strip of the result is computed and written (second pass). A region of one strip is
read once and written once. Regions are done in order; a later one sees what the earlier ones wrote.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from worker.config import RedactSettings
from worker.detect import Face
from worker.geometry import face_padding, pad_and_clamp
from worker.imaging import pixels
from worker.imaging.codec import Photo
from worker.imaging.magick import Image, magick_errors

Box = tuple[int, int, int, int]

SPREAD_CELLS = 1.1  # Gaussian sigma, in cells, used to spread the cells back (no block edges remain)
STRIP_PIXELS = 1 << 20  # pixels per strip read or written (6 MB as uint16 RGB, 12 MB as float32)


def regions(faces: list[Face], padding: float, width: int, height: int, padding_large: float = -1.0) -> list[Box]:
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
    d = (np.arange(size) + 0.5) * (cells / size) - 0.5 - np.arange(cells)[:, None]
    wts = np.exp(d * d * (-0.5 / sigma**2)).T
    return (wts / wts.sum(axis=1, keepdims=True)).astype(np.float32)


def nearest_weights(size: int, cells: int) -> np.ndarray:
    idx = np.minimum((np.arange(size) * cells) // size, cells - 1)
    return np.eye(cells, dtype=np.float32)[idx]


# Averaging (cell means) and spreading (cells back over the pixels), one axis at a time. A region's pixels are
# an h x (w*c) matrix for the large products along y; along x only tiny arrays remain (ch rows of cells).
def _cell_members(size: int, cells: int) -> np.ndarray:
    """cells x size 0/1 matrix of the pixels in each of `cells` near-equal cells (cell j starts at j*size//cells)."""
    cell = ((np.arange(size) + 1) * cells - 1) // size
    return (cell == np.arange(cells)[:, None]).astype(np.float32)


def _cell_starts(size: int, cells: int) -> np.ndarray:
    return (np.arange(cells) * size) // cells


def _cell_areas(w: int, h: int, cw: int, ch: int) -> np.ndarray:
    """(ch, cw, 1) pixels per cell. Sums then a division keep the mean of a constant exact (weights of 1/n are
    not exact in floating point)."""
    heights = np.diff(np.append(_cell_starts(h, ch), h))
    widths = np.diff(np.append(_cell_starts(w, cw), w))
    return np.multiply.outer(heights, widths)[:, :, None].astype(np.float32)


def _spread_matrix(size: int, cells: int, mode: str) -> np.ndarray:
    """size x cells: the weight of each cell for each pixel."""
    return spread_weights(size, cells, SPREAD_CELLS) if mode == "blur" else nearest_weights(size, cells)


# The shape of a region's computation: w, h, cw, ch, channels.
Dims = tuple[int, int, int, int, int]


def _sums_to_means(row_sums: np.ndarray, dims: Dims) -> np.ndarray:
    """(ch, w*c) sums of each cell row's pixel rows -> (ch, cw, c) cell means."""
    w, h, cw, ch, c = dims
    sums = np.add.reduceat(row_sums.reshape(ch, w, c), _cell_starts(w, cw), axis=1)  # tiny: reduceat is cheapest
    return sums / _cell_areas(w, h, cw, ch)


def _spread(grid: np.ndarray, dims: Dims, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(ch, cw, c) cells -> (down, across): the region's rows `rows` are down[rows].dot(across), one BLAS product
    (across, (ch, w*c), is tiny)."""
    w, h, cw, ch, c = dims
    return _spread_matrix(h, ch, mode), (_spread_matrix(w, cw, mode) @ grid).reshape(ch, w * c)


def ellipse_alpha(w: int, h: int, rows: slice = slice(None)) -> np.ndarray:
    """1 inside the ellipse inscribed in the region, feathered to 0 over its outer ~15% (rows `rows`)."""
    yy = ((np.arange(h, dtype=np.float32) + 0.5 - h / 2) / (h / 2))[rows]
    xx = (np.arange(w, dtype=np.float32) + 0.5 - w / 2) / (w / 2)
    r = np.sqrt(yy[:, None] ** 2 + xx[None, :] ** 2)
    return np.clip((1.0 - r) / 0.15, 0.0, 1.0)[:, :, None]


# Channels -> (read layout, write layout). Grey: read as red, written as I (red, green and blue alike).
_LAYOUTS = {1: ("R", "I"), 3: ("RGB", "RGB"), 4: ("RGBA", "RGBA")}


@dataclass(frozen=True, slots=True)
class _Canvas:
    """The image's colour channels as uint16: R, G and B, or for a greyscale image its one grey channel, read
    as red and written to all three. Blurring three copies of one channel could round them differently (BLAS
    need not treat every column alike), turning a greyscale PNG into an RGB one; one channel is also a third
    of the work."""

    img: Image
    channels: int

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """(h, w, channels) uint16."""
        return pixels.read(self.img, x, y, w, h, _LAYOUTS[self.channels][0], np.uint16)

    def write(self, x: int, y: int, samples: np.ndarray) -> None:
        """Write (h, w, channels) uint16 at (x, y)."""
        pixels.write(self.img, x, y, samples, _LAYOUTS[self.channels][1], np.uint16)


def redact(photo: Photo, faces: list[Face], settings: RedactSettings) -> int:
    """Obscure every face of `photo` in place. Returns the number of regions changed."""
    w, h = photo.size
    boxes = regions(faces, settings.padding, w, h, settings.padding_large)
    most = {"blur": settings.cells, "pixelate": settings.blocks, "solid": 1}[settings.mode]  # cells across
    with magick_errors("blurring faces"):
        # With transparency, alpha is redacted too: a face drawn in alpha alone shows on a white page.
        canvas = _Canvas(photo.image, 4 if photo.has_alpha else 1 if photo.image.colorspace == "gray" else 3)
        for box in boxes:
            _redact_region(canvas, box, grid_size(box[2] - box[0], box[3] - box[1], most), settings)
    return len(boxes)


def _redact_region(canvas: _Canvas, box: Box, cells: tuple[int, int], settings: RedactSettings) -> None:
    x, y, x1, y1 = box
    (w, h), (cw, ch), c = (x1 - x, y1 - y), cells, canvas.channels
    dims = (w, h, cw, ch, c)
    strips = list(_strips(h, w))
    one = canvas.read(x, y, w, h) if len(strips) == 1 else None  # a small region: read once, kept for blending
    member = _cell_members(h, ch)
    sums = np.zeros((ch, w * c), np.float32)
    for rows in strips:
        block = one if one is not None else canvas.read(x, y + rows.start, w, rows.stop - rows.start)
        sums += member[:, rows].dot(block.reshape(-1, w * c))
    down, across = _spread(_sums_to_means(sums, dims) + 0.5, dims, settings.mode)  # + 0.5: truncation rounds
    for rows in strips:
        out = down[rows].dot(across).reshape(-1, w, c)
        if settings.shape == "ellipse":
            below = one if one is not None else canvas.read(x, y + rows.start, w, rows.stop - rows.start)
            out = _blend(out, below, w, h, rows)
        canvas.write(x, y + rows.start, out.astype(np.uint16))


def _strips(h: int, w: int) -> Iterator[slice]:
    step = max(1, STRIP_PIXELS // w)
    return (slice(a, min(h, a + step)) for a in range(0, h, step))


def _blend(out: np.ndarray, below: np.ndarray, w: int, h: int, rows: slice = slice(None)) -> np.ndarray:
    """`out` inside the feathered ellipse over `below`; where alpha is 0 the original integers come back exactly."""
    return below + ellipse_alpha(w, h, rows) * (out - below)
