"""Our own measure of what the referee checks: does a face's fine detail survive, and how much detail
elsewhere was destroyed. numpy + Pillow only; written independently of ../shared/tools/score_blur.py.

Detail = image minus a Gaussian-like blur (three box blurs, sigma ~ face size / 16). A face is protected when
the correlation between the original's and the output's detail inside its box is <= 0.35. Collateral is the
share of textured 32x32 tiles away from every face whose detail correlation dropped below 0.5.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

PROTECTED = 0.35
TILE = 32


def displayed_grey(data: bytes) -> np.ndarray:
    im = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    if im.mode in ("RGBA", "LA", "P", "PA"):
        im = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", im.size, (128, 128, 128, 255)), im)
    return np.asarray(im.convert("L"), dtype=np.float32)


def _box(a: np.ndarray, r: int, axis: int) -> np.ndarray:
    if r < 1:
        return a
    pad = [(0, 0), (0, 0)]
    pad[axis] = (r + 1, r)
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float64)
    hi = np.take(c, np.arange(2 * r + 1, c.shape[axis]), axis=axis)
    lo = np.take(c, np.arange(0, c.shape[axis] - 2 * r - 1), axis=axis)
    return ((hi - lo) / (2 * r + 1)).astype(np.float32)


def smooth(a: np.ndarray, sigma: float) -> np.ndarray:
    # Three box passes of radius r approximate a Gaussian with sigma^2 = (2r+1)^2 - 1) / 4.
    r = max(1, round((np.sqrt(4 * sigma * sigma + 1) - 1) / 2))
    for _ in range(3):
        a = _box(_box(a, r, 0), r, 1)
    return a


def detail(a: np.ndarray, sigma: float) -> np.ndarray:
    return a - smooth(a, sigma)


def corr(a: np.ndarray, b: np.ndarray) -> float | None:
    a, b = a - a.mean(), b - b.mean()
    d = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / d) if d > 1e-6 else 0.0


def face_detail_corr(orig: np.ndarray, out: np.ndarray, box: list[int]) -> float | None:
    x, y, w, h = box
    hgt, wid = orig.shape
    x0, y0, x1, y1 = max(0, x), max(0, y), min(wid, x + w), min(hgt, y + h)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    sigma = max(1.0, min(w, h) / 16)
    m = int(3 * sigma) + 1
    ox0, oy0, ox1, oy1 = max(0, x0 - m), max(0, y0 - m), min(wid, x1 + m), min(hgt, y1 + m)
    sl = (slice(y0 - oy0, y1 - oy0), slice(x0 - ox0, x1 - ox0))
    do = detail(orig[oy0:oy1, ox0:ox1], sigma)[sl]
    if do.std() < 1.0:
        return None
    return corr(do, detail(out[oy0:oy1, ox0:ox1], sigma)[sl])


@dataclass
class Tally:
    faces: int = 0
    protected: int = 0
    tiles: int = 0
    altered: int = 0
    negative_tiles: int = 0
    negative_altered: int = 0

    def add(self, orig: np.ndarray, out: np.ndarray, faces: list[list[int]], keep_out: list[list[int]]) -> None:
        for box in faces:
            c = face_detail_corr(orig, out, box)
            if c is not None:
                self.faces += 1
                self.protected += c <= PROTECTED
        tiles, altered = collateral(orig, out, keep_out)
        self.tiles += tiles
        self.altered += altered
        if not keep_out:
            self.negative_tiles += tiles
            self.negative_altered += altered


def collateral(orig: np.ndarray, out: np.ndarray, keep_out: list[list[int]]) -> tuple[int, int]:
    hgt, wid = orig.shape
    mask = np.zeros((hgt, wid), bool)
    for x, y, w, h in keep_out:
        gx, gy = 0.35 * w, 0.35 * h
        mask[max(0, int(y - gy)) : max(0, int(y + h + gy)), max(0, int(x - gx)) : max(0, int(x + w + gx))] = True
    do, dn = detail(orig, 1.5), detail(out, 1.5)
    tiles = altered = 0
    for ty in range(0, hgt - TILE + 1, TILE):
        for tx in range(0, wid - TILE + 1, TILE):
            sl = (slice(ty, ty + TILE), slice(tx, tx + TILE))
            if mask[sl].any() or orig[sl].std() < 4.0 or do[sl].std() < 1.0:
                continue
            tiles += 1
            c = corr(do[sl], dn[sl])
            altered += c is not None and c < 0.5
    return tiles, altered
