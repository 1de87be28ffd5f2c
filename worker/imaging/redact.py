"""Redaction: make every face region unrecognisable, in place, at a cost that does not grow with face size.

Blur: the padded region is shrunk to BLUR_CELLS cells across (box filter), softened, and enlarged again with a
smooth filter. What survives is at most cells x cells colours, so the face cannot be recovered, and the work is
a few milliseconds whatever the face's size (a full-resolution Gaussian with a large sigma takes seconds).
Pixelate: at most 8 blocks across. Solid: the region's mean colour.
"""

from __future__ import annotations

import numpy as np

from worker.config import RedactSettings
from worker.detect import Face
from worker.geometry import pad_and_clamp
from worker.imaging.codec import Photo
from worker.imaging.magick import Image, magick_errors


def regions(faces: list[Face], padding: float, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Padded, clamped pixel regions (x0, y0, x1, y1) for the faces, largest first."""
    out = [r for f in faces if (r := pad_and_clamp(f.x, f.y, f.w, f.h, padding, width, height)) is not None]
    return sorted(out, key=lambda r: (r[2] - r[0]) * (r[3] - r[1]), reverse=True)


def _cells(w: int, h: int, across: int) -> tuple[int, int]:
    """Grid of at most `across` cells along the longer side, keeping the region's aspect."""
    long = max(w, h)
    n = min(across, long)
    return max(1, round(w * n / long)), max(1, round(h * n / long))


def _obscure(region: Image, settings: RedactSettings) -> None:
    w, h = region.size
    if settings.mode == "solid":
        region.scale(1, 1)
        region.sample(w, h)
    elif settings.mode == "pixelate":
        region.scale(*_cells(w, h, settings.blocks))
        region.sample(w, h)
    else:
        cw, ch = _cells(w, h, settings.cells)
        region.scale(cw, ch)
        # Soften the cells so no block edges remain, then enlarge smoothly: looks like a strong blur.
        region.gaussian_blur(radius=0, sigma=1.0)
        region.resize(w, h, filter="gaussian")


def _ellipse_mask(w: int, h: int) -> Image:
    """White ellipse filling the region with a feathered rim (outer ~15%), black corners."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot((xx + 0.5 - w / 2) / (w / 2), (yy + 0.5 - h / 2) / (h / 2))
    alpha = np.clip((1.0 - r) / 0.15, 0.0, 1.0)
    return Image.from_array((alpha * 255).astype(np.uint8), channel_map="I")


def redact(photo: Photo, faces: list[Face], settings: RedactSettings) -> int:
    """Obscure every face of `photo` in place. Returns the number of regions changed."""
    img = photo.image
    w, h = photo.size
    boxes = regions(faces, settings.padding, w, h)
    ellipse = settings.shape == "ellipse" and not photo.has_alpha
    with magick_errors("blurring faces"):
        for x0, y0, x1, y1 in boxes:
            with img[x0:x1, y0:y1] as region:
                region.virtual_pixel = "edge"
                if photo.has_alpha:
                    # Obscure the colour only: transparency stays exactly as it was.
                    with region.clone() as original_alpha:
                        _obscure(region, settings)
                        region.composite(original_alpha, 0, 0, operator="copy_opacity")
                    img.composite(region, x0, y0, operator="copy")
                elif ellipse:
                    _obscure(region, settings)
                    with _ellipse_mask(x1 - x0, y1 - y0) as mask:
                        region.alpha_channel = "set"
                        region.composite(mask, 0, 0, operator="copy_opacity")
                    img.composite(region, x0, y0, operator="over")
                else:
                    _obscure(region, settings)
                    img.composite(region, x0, y0, operator="copy")
    return len(boxes)
