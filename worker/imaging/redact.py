"""Redaction: make every face region unrecognisable, in place, at a cost that does not grow with face size.

Blur: the padded region is averaged into BLUR_CELLS cells across, and the cells are spread back over the region
with wide Gaussian weights, then written into the image. Both steps are a few small matrix products: a region's
pixels are an h x (w * channels) matrix, which averaging and spreading along y multiply on the left (the only
products as large as the region); along x only arrays of a few cell rows remain. What survives is at most
cells x cells colours, so the face cannot be recovered.
Pixelate: at most 8 blocks across. Solid: the region's mean colour. With transparency, alpha is treated as a fourth
channel (a face can be drawn in alpha alone); the encoder then quantises colour to what alpha lets through.

Where the time goes, and how it is kept small (an ImageMagick resize back up costs ~60 ns a pixel, a
full-resolution Gaussian with a large sigma seconds):
- Pixels move as 16-bit integers (ShortPixel, the Q16 pixel cache's own format: ~2.5 ns a pixel each way,
  against ~4 to read and ~9 to write floats), so 16-bit images keep their depth.
- A region of an opaque photo whose cells each span COPY_CELL_PIXELS pixels of a detector copy
  (`Photo.shrunk_copies`, box-shrunk from the photo) takes its means from that copy: unless it is feathered, it is
  only written, never read.
- Crowds of small faces are bound by per-region overhead: the weight matrices of small regions are cached,
  each region is a handful of numpy calls, and when the faces are packed closely enough their bounding box is
  read and written once instead of every region separately.
- Huge regions are read and written in strips, so a face filling a 48 MP photo needs a few tens of MB at most.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache, wraps

import numpy as np
from wand.api import library

from worker.config import RedactSettings
from worker.detect import Face
from worker.errors import CorruptImage
from worker.geometry import face_padding, pad_and_clamp
from worker.imaging.codec import Photo
from worker.imaging.magick import Image, magick_errors

Box = tuple[int, int, int, int]

_SHORT_PIXEL = 7  # ImageMagick StorageType ShortPixel: 0..65535, what a Q16 pixel cache holds
_LEVELS = 65535.0  # uint16 value of full intensity
SPREAD_CELLS = 1.1  # Gaussian sigma, in cells, used to spread the cells back (no block edges remain)
STRIP_PIXELS = 1 << 20  # pixels per strip read or written (6 MB as uint16 RGB, 12 MB as float32)
# Weight matrices are cached for sizes up to this (256 x 8 floats at most, 1024 per kind: under 20 MB, a few MB
# in practice); larger regions are dominated by their pixels anyway.
CACHE_SIDE = 256
BATCH_CACHE_SIDE = 128  # the same for the crowd path's per-channel matrices, which are c^2 times larger
COPY_CELL_PIXELS = 16  # a detector copy gives a region's means when each cell spans this many copy pixels a side
# The bounding box of all regions is read and written once when the pixels outside them this also moves (~5 ns
# a pixel both ways) cost less than the calls saved (~15 us a region), and it is not too large to hold.
BATCH_PIXELS_PER_REGION = 3000
BATCH_MAX_PIXELS = STRIP_PIXELS


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


def _cached_for_small(make: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """lru_cache (of read-only results) for sizes up to CACHE_SIDE: a crowd's small faces repeat sizes and are
    dominated by per-region overhead; the matrices of larger ones cost little next to their pixels."""

    @lru_cache(maxsize=1024)  # more than a crowd's sizes: a cyclic scan larger than an LRU never hits
    def cached(size: int, *rest: object) -> np.ndarray:
        out = make(size, *rest)
        out.flags.writeable = False
        return out

    @wraps(make)
    def get(size: int, *rest: object) -> np.ndarray:
        return cached(size, *rest) if size <= CACHE_SIDE else make(size, *rest)

    return get


# Averaging (cell means) and spreading (cells back over the pixels), one axis at a time. A region's pixels are
# an h x (w*c) matrix for the large products along y; along x only tiny arrays remain (ch rows of cells).
@_cached_for_small
def _cell_members(size: int, cells: int) -> np.ndarray:
    """cells x size 0/1 matrix of the pixels in each of `cells` near-equal cells (cell j starts at j*size//cells)."""
    cell = ((np.arange(size) + 1) * cells - 1) // size
    return (cell == np.arange(cells)[:, None]).astype(np.float32)


@_cached_for_small
def _cell_starts(size: int, cells: int) -> np.ndarray:
    return (np.arange(cells) * size) // cells


@_cached_for_small
def _cell_areas(w: int, h: int, cw: int, ch: int) -> np.ndarray:
    """(ch, cw, 1) pixels per cell. Sums then a division keep the mean of a constant exact (weights of 1/n are
    not exact in floating point)."""
    heights = np.diff(np.append(_cell_starts(h, ch), h))
    widths = np.diff(np.append(_cell_starts(w, cw), w))
    return np.multiply.outer(heights, widths)[:, :, None].astype(np.float32)


@_cached_for_small
def _spread_matrix(size: int, cells: int, mode: str) -> np.ndarray:
    """size x cells: the weight of each cell for each pixel."""
    return spread_weights(size, cells, SPREAD_CELLS) if mode == "blur" else nearest_weights(size, cells)


# The shape of a region's computation: w, h, cw, ch, channels.
Dims = tuple[int, int, int, int, int]
# A crowd region's matrices: cell averages along y, along x (per channel), spreads along x (per channel), along y.
Plan = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def cell_means(pixels: np.ndarray, cw: int, ch: int) -> np.ndarray:
    """Box average of an (h, w, c) region over a ch x cw grid of near-equal cells -> (ch, cw, c)."""
    h, w, c = pixels.shape
    return _means(pixels.reshape(h, w * c), (w, h, cw, ch, c))


# ndarray.dot rather than @ for 2-D products below: for the small matrices of a crowd's faces it saves ~1 us.
def _means(pixels: np.ndarray, dims: Dims) -> np.ndarray:
    """(h, w*c) pixels -> (ch, cw, c) cell means."""
    return _sums_to_means(_cell_members(dims[1], dims[3]).dot(pixels), dims)


def _sums_to_means(row_sums: np.ndarray, dims: Dims) -> np.ndarray:
    """(ch, w*c) sums of each cell row's pixel rows -> (ch, cw, c) cell means."""
    w, h, cw, ch, c = dims
    sums = np.add.reduceat(row_sums.reshape(ch, w, c), _cell_starts(w, cw), axis=1)  # tiny: reduceat is cheapest
    return sums / _cell_areas(w, h, cw, ch)


def fill(grid: np.ndarray, w: int, h: int, mode: str, rows: slice = slice(None)) -> np.ndarray:
    """Spread a (ch, cw, c) grid of cell colours over an h x w region -> contiguous float32 (len(rows), w, c):
    the region's rows `rows` (all by default; the caller works in strips to bound memory on huge faces)."""
    ch, cw, c = grid.shape
    down, across = _spread(grid.astype(np.float32, copy=False), (w, h, cw, ch, c), mode)
    return down[rows].dot(across).reshape(-1, w, c)


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
_LAYOUTS = {1: (b"R", b"I"), 3: (b"RGB", b"RGB"), 4: (b"RGBA", b"RGBA")}


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
        out = np.empty((h, w, self.channels), np.uint16)
        layout = _LAYOUTS[self.channels][0]
        if not library.MagickExportImagePixels(self.img.wand, x, y, w, h, layout, _SHORT_PIXEL, out.ctypes.data):
            self.img.raise_exception()
            raise CorruptImage("could not read pixels back")
        return out

    def write(self, x: int, y: int, pixels: np.ndarray) -> None:
        """Write (h, w, channels) uint16 at (x, y)."""
        h, w = pixels.shape[:2]
        data = np.ascontiguousarray(pixels, dtype=np.uint16)
        layout = _LAYOUTS[self.channels][1]
        if not library.MagickImportImagePixels(self.img.wand, x, y, w, h, layout, _SHORT_PIXEL, data.ctypes.data):
            self.img.raise_exception()
            raise CorruptImage("could not write blurred pixels")


def redact(photo: Photo, faces: list[Face], settings: RedactSettings) -> int:
    """Obscure every face of `photo` in place. Returns the number of regions changed."""
    w, h = photo.size
    boxes = regions(faces, settings.padding, w, h, settings.padding_large)
    if not boxes:
        return 0
    most = {"blur": settings.cells, "pixelate": settings.blocks, "solid": 1}[settings.mode]  # cells across
    ellipse = settings.shape == "ellipse"
    with magick_errors("blurring faces"):
        # With transparency, alpha is redacted too: a face drawn in alpha alone shows on a white page.
        canvas = _Canvas(photo.image, 4 if photo.has_alpha else 1 if photo.image.colorspace == "gray" else 3)
        bounds = _batch_bounds(boxes)
        if bounds is not None:
            _redact_batch(canvas, bounds, boxes, settings.mode, most, ellipse)
            return len(boxes)
        copies = [] if ellipse else _shrunk_copies(photo)  # a feathered region needs its pixels anyway
        for box, first in zip(boxes, _first_touch(boxes), strict=True):
            cells = grid_size(box[2] - box[0], box[3] - box[1], most)
            grid = _copy_means(copies, (w, h), box, cells, canvas.channels) if first else None
            _redact_region(canvas, box, grid, cells, settings.mode, ellipse)
    return len(boxes)


def _batch_bounds(boxes: list[Box]) -> Box | None:
    """The bounding box of all regions when reading and writing it once is cheaper than once per region."""
    b = np.array(boxes)
    bounds = (int(b[:, 0].min()), int(b[:, 1].min()), int(b[:, 2].max()), int(b[:, 3].max()))
    area = (bounds[2] - bounds[0]) * (bounds[3] - bounds[1])
    inside = int(((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).sum())
    if len(boxes) > 1 and area <= BATCH_MAX_PIXELS and area - inside <= BATCH_PIXELS_PER_REGION * len(boxes):
        return bounds
    return None


def _redact_batch(canvas: _Canvas, bounds: Box, boxes: list[Box], mode: str, most: int, ellipse: bool) -> None:
    """All regions in one block read once and written once, in order (a later region sees earlier ones)."""
    bx, by, bx1, by1 = bounds
    block = canvas.read(bx, by, bx1 - bx, by1 - by)
    c = canvas.channels
    for x0, y0, x1, y1 in boxes:
        w, h = x1 - x0, y1 - y0
        average_y, average_x, spread_x, spread_y = _batch_plan(w, h, most, mode, c)
        view = block[y0 - by : y1 - by, x0 - bx : x1 - bx]  # its rows are contiguous: a 2-D view, no copy
        # (h, w*c) pixels -> cell-row means (ch, w*c) -> cells (ch, cw*c) -> spread along x -> along y (h, w*c)
        out = spread_y.dot(average_y.dot(view.reshape(h, w * c)).dot(average_x).dot(spread_x))
        out += 0.5  # truncation to uint16 rounds
        out = out.reshape(h, w, c)
        view[...] = _blend(out, view, w, h) if ellipse else out
    canvas.write(bx, by, block)


def _batch_plan(w: int, h: int, most: int, mode: str, c: int) -> Plan:
    """A crowd region's four matrices, in one lookup: per-call overhead is what a crowd of small faces costs, so
    each step is one 2-D product on the (rows, w*c) layout of the pixels; along x the matrices act on each
    channel alike (Kronecker product with the c x c identity). Averaging with weights of 1/n rather than sums
    then a division is within float32 rounding, far below the +0.5 that rounds to uint16."""
    if max(w, h) <= BATCH_CACHE_SIDE:
        return _batch_plan_cached(w, h, most, mode, c)
    return _make_batch_plan(w, h, most, mode, c)


def _make_batch_plan(w: int, h: int, most: int, mode: str, c: int) -> Plan:
    cw, ch = grid_size(w, h, most)
    eye = np.eye(c, dtype=np.float32)
    average_x = np.kron(_cell_average(w, cw).T, eye)  # (w*c, cw*c)
    spread_x = np.kron(_spread_matrix(w, cw, mode).T, eye)  # (cw*c, w*c)
    return _cell_average(h, ch), average_x, spread_x, _spread_matrix(h, ch, mode)


# At most 2 x 128*3 x 8*3 floats an entry: under 40 MB for all 512; a crowd uses a few MB.
_batch_plan_cached = lru_cache(maxsize=512)(_make_batch_plan)


@_cached_for_small
def _cell_average(size: int, cells: int) -> np.ndarray:
    """cells x size: each row averages the pixels of one of `cells` near-equal cells."""
    members = _cell_members(size, cells)
    return members / members.sum(axis=1, keepdims=True)


def _redact_region(
    canvas: _Canvas, box: Box, grid: np.ndarray | None, cells: tuple[int, int], mode: str, ellipse: bool
) -> None:
    """One region, in strips of STRIP_PIXELS. `grid` holds its means when known already (from a detector copy);
    otherwise they are read first. A region of one strip is read only once."""
    x, y, x1, y1 = box
    (w, h), (cw, ch), c = (x1 - x, y1 - y), cells, canvas.channels
    dims = (w, h, cw, ch, c)
    strips = list(_strips(h, w))
    original = canvas.read(x, y, w, h) if len(strips) == 1 and (grid is None or ellipse) else None
    if grid is None and original is not None:
        grid = _means(original.reshape(h, w * c), dims)
    elif grid is None:
        grid = _strip_means(canvas, box, strips, dims)
    down, across = _spread(grid + 0.5, dims, mode)
    for rows in strips:
        out = down[rows].dot(across).reshape(-1, w, c)  # + 0.5 above: truncation to uint16 rounds
        if ellipse:
            below = original[rows] if original is not None else canvas.read(x, y + rows.start, w, len(out))
            out = _blend(out, below, w, h, rows)
        canvas.write(x, y + rows.start, out.astype(np.uint16))


def _strips(h: int, w: int) -> Iterator[slice]:
    step = max(1, STRIP_PIXELS // w)
    return (slice(a, min(h, a + step)) for a in range(0, h, step))


def _strip_means(canvas: _Canvas, box: Box, strips: list[slice], dims: Dims) -> np.ndarray:
    """The cell means of a region too large to read at once: each strip adds its rows to the cell-row sums."""
    x, y = box[:2]
    w, h, _, ch, c = dims
    member = _cell_members(h, ch)
    sums = np.zeros((ch, w * c), np.float32)
    for s in strips:
        sums += member[:, s].dot(canvas.read(x, y + s.start, w, s.stop - s.start).reshape(-1, w * c))
    return _sums_to_means(sums, dims)


def _blend(out: np.ndarray, below: np.ndarray, w: int, h: int, rows: slice = slice(None)) -> np.ndarray:
    """`out` inside the feathered ellipse over `below`; where alpha is 0 the original integers come back exactly."""
    return below + ellipse_alpha(w, h, rows) * (out - below)


def _first_touch(boxes: list[Box]) -> list[bool]:
    """For each box, whether no earlier box overlaps it: only then are its pixels still the decoded ones."""
    b = np.array(boxes).reshape(-1, 4)
    hit = (b[:, None, 0] < b[None, :, 2]) & (b[None, :, 0] < b[:, None, 2])
    hit &= (b[:, None, 1] < b[None, :, 3]) & (b[None, :, 1] < b[:, None, 3])
    return (~np.tril(hit, -1).any(axis=1)).tolist()


def _shrunk_copies(photo: Photo) -> list[np.ndarray]:
    """The detector copies (uint8 RGB of the whole upright photo) no larger than the photo,
    largest (most accurate) first. None when the photo has alpha: the copies show it flattened onto grey."""
    width, height = photo.size
    copies = [rgb for rgb in photo.shrunk_copies() if rgb.shape[1] <= width and rgb.shape[0] <= height]
    return [] if photo.has_alpha else sorted(copies, key=lambda rgb: -rgb.shape[1])


def _copy_means(
    copies: list[np.ndarray], size: tuple[int, int], box: Box, cells: tuple[int, int], c: int
) -> np.ndarray | None:
    """The region's (ch, cw, c) cell means, uint16 scale, from the largest copy in which every cell spans at least
    COPY_CELL_PIXELS copy pixels a side, or None. Within 0.6 of an 8-bit level of the exact means on the bench
    photos: a copy pixel straddling a cell edge counts by area, as if uniform; on a small photo the copies may
    be shrunk from an enlarged, slightly soft one; uint8 rounding is negligible in means of hundreds of pixels."""
    (width, height), (x0, y0, x1, y1), (cw, ch) = size, box, cells
    for rgb in copies:
        sx, sy = width / rgb.shape[1], height / rgb.shape[0]  # per axis: copy sizes are rounded
        if min((x1 - x0) / cw / sx, (y1 - y0) / ch / sy) >= COPY_CELL_PIXELS:
            (ay, ys), (ax, xs) = (
                _copy_weights(y0, y1, ch, sy, rgb.shape[0]),
                _copy_weights(x0, x1, cw, sx, rgb.shape[1]),
            )
            patch = rgb[ys, xs, :c]
            return ax @ ay.dot(patch.reshape(patch.shape[0], -1)).reshape(ch, -1, c) * (_LEVELS / 255.0)
    return None


def _copy_weights(start: int, stop: int, cells: int, scale: float, limit: int) -> tuple[np.ndarray, slice]:
    """cells x n averaging matrix over the copy pixels (a slice of at most `limit`) covering [start, stop) of
    the photo: the same near-equal cells as cell_means, each copy pixel weighted by how much of it is inside."""
    edges = (start + (np.arange(cells + 1) * (stop - start)) // cells) / scale
    first, last = int(edges[0]), min(limit, int(np.ceil(edges[-1])))
    px = np.arange(first, last, dtype=np.float64)
    inside = np.minimum(edges[1:, None], px[None, :] + 1) - np.maximum(edges[:-1, None], px[None, :])
    inside = np.clip(inside, 0.0, None)
    return (inside / inside.sum(axis=1, keepdims=True)).astype(np.float32), slice(first, last)
