"""The local detector: CenterFace over a pyramid of levels, the large ones in overlapping tiles, upright and turned
upside down, merged by NMS.

The promise: every face at least DETECT_MIN_FACE px wide (16, in the upright photo's pixels), at any position of a
photo of any size up to MAX_PIXELS. A face keeps its pixel size when the photo around it grows, so the finest
level is set by the face, not by the photo: it brings DETECT_MIN_FACE to RELIABLE_FACE, the smallest face
CenterFace finds as reliably as larger ones (measured on the evaluation set, docs/benchmarks.md). Levels larger
than DETECT_TILE_SIDE are cut into tiles overlapping by OVERLAP px: a face up to OVERLAP / 2 px (at that level)
lies inside one tile with OVERLAP / 4 px of context around it. Each level is LEVEL_STEP times smaller than the one
before, so a face too large for one level's tiles is at least OVERLAP / 2 / LEVEL_STEP = 40 px on the next, and
every face is seen at two scales, as in a 1 MP photo. The last level shows the whole photo at DETECT_COARSE_SIDE,
in one piece, for the largest faces. Small photos are enlarged up to DETECT_FINE_SIDE (at most DETECT_MAX_UPSCALE)
for faces smaller still. CenterFace misses upside-down faces (people lying down, photos held upside down), so the
photo turned 180 degrees gets the same pyramid for faces from DETECT_ROTATED_MIN_FACE up, at stricter thresholds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from worker.config import DetectSettings
from worker.detect import Face, Frame
from worker.detect.centerface import CenterFace
from worker.errors import DetectionFailed
from worker.geometry import nms
from worker.telemetry.metrics import Metrics

RELIABLE_FACE = 16  # px: below it CenterFace starts losing faces in crowds (evaluation-set sweep, docs/benchmarks.md)
OVERLAP = 128  # px of a level shared by neighbouring tiles: faces up to this size are whole in one tile
LEVEL_STEP = 1.6  # each face is seen at two scales at least, as a 1 MP photo is (1024 and 640 px)
ALIGN = 32  # CenterFace pads its input to multiples of 32: tiles of that size waste nothing


@dataclass(frozen=True, slots=True)
class Level:
    scale: float  # level pixels per photo pixel
    tiles: tuple[tuple[int, int, int, int], ...]  # (x0, y0, x1, y1) in level pixels, covering the level
    threshold: float  # CenterFace score needed at this level
    upside_down: bool = False  # looked at turned 180 degrees (tiles are then in the turned level's pixels)


def spans(length: int, tile: int, overlap: int = OVERLAP) -> list[tuple[int, int]]:
    """[start, end) pieces of at most `tile` covering 0..length, neighbours sharing at least `overlap`."""
    if length <= tile:
        return [(0, length)]
    n = math.ceil((length - overlap) / (tile - overlap))
    side = min(tile, -(-math.ceil((length + (n - 1) * overlap) / n) // ALIGN) * ALIGN)
    if side <= overlap or (n - 1) * (side - overlap) + side < length:
        side = math.ceil((length + (n - 1) * overlap) / n)  # alignment did not fit: exact sides
    step = (length - side) / (n - 1)
    return [(math.floor(i * step), math.floor(i * step) + side) for i in range(n - 1)] + [(length - side, length)]


def scales(width: int, height: int, min_face: int, fine_side: int, coarse_side: int, max_upscale: float) -> list[float]:
    """The levels' scales, finest first: the first brings `min_face` to RELIABLE_FACE (or enlarges a small photo to
    `fine_side`), the last shows the whole photo at `coarse_side`; each is at most LEVEL_STEP times smaller than
    the one before."""
    long_side = max(width, height)
    fine = RELIABLE_FACE / min_face
    if fine_side:
        fine = max(fine, min(fine_side / long_side, max_upscale))
    coarse = min(coarse_side / long_side, max_upscale)
    out = [fine]
    while out[-1] / LEVEL_STEP > coarse * 1.25:
        out.append(out[-1] / LEVEL_STEP)
    if out[-1] > coarse * 1.25:  # else the last level is close enough to the coarse one to serve as it
        out.append(max(coarse, out[-1] / LEVEL_STEP))
    return out


def plan(width: int, height: int, s: DetectSettings, upside_down: bool = False) -> list[Level]:
    """Every level with its tiles; the last (coarsest) level is always one piece, for faces of any size.
    Upside down: larger faces only (DETECT_ROTATED_MIN_FACE), the photo's long side at least DETECT_ROTATED_SIDE."""
    if upside_down:
        found = scales(width, height, s.rotated_min_face, s.rotated_side, s.rotated_side, s.max_upscale)
    else:
        found = scales(width, height, s.min_face, s.fine_side, s.coarse_side, s.max_upscale)
    levels = []
    for i, scale in enumerate(found):
        # A face gets its two best looks on the two finest levels; coarser ones add only faces too large for
        # those, which score high, while a false face there blurs a large area of the photo: stricter.
        if upside_down:
            threshold = s.rotated_threshold if i < 2 else s.rotated_coarse_threshold
        else:
            threshold = s.threshold if i < 2 else s.coarse_threshold
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        tile = max(w, h) if i == len(found) - 1 else s.tile_side
        tiles = tuple((x0, y0, x1, y1) for y0, y1 in spans(h, tile) for x0, x1 in spans(w, tile))
        levels.append(Level(scale, tiles, threshold, upside_down))
    return levels


class LocalDetector:
    name = "local"

    def __init__(
        self, settings: DetectSettings, model: CenterFace | None = None, metrics: Metrics | None = None
    ) -> None:
        self.settings = settings
        self.model = model or CenterFace.shared(settings.model_path, settings.precision)
        self.metrics = metrics

    def detect(self, frame: Frame) -> list[Face]:
        levels = plan(*frame.size, self.settings)
        if self.settings.rotated_side:
            levels += plan(*frame.size, self.settings, upside_down=True)
        return self._detect(frame, levels)

    def detect_small(self, frame: Frame, below: float) -> list[Face]:
        """Only the upright levels that look for faces narrower than `below` photo px (what another detector
        cannot see)."""
        levels = plan(*frame.size, self.settings)
        # Level i looks for faces from OVERLAP px of level i - 1 up (from DETECT_MIN_FACE for the first).
        return self._detect(
            frame, [lv for i, lv in enumerate(levels) if i == 0 or OVERLAP / levels[i - 1].scale < below]
        )

    def _detect(self, frame: Frame, levels: list[Level]) -> list[Face]:
        s = self.settings
        found = []
        try:
            # Largest first: each smaller copy is then shrunk from the one before, not from the photo.
            for level in sorted(levels, key=lambda lv: -lv.scale):
                rgb, factor = frame.rgb(level.scale)
                h, w = rgb.shape[:2]
                if level.upside_down:
                    # CenterFace only finds upright faces: people lying down, photos held upside down need the
                    # photo turned 180 degrees, and stricter thresholds (it sees more false faces that way).
                    rgb = rgb[::-1, ::-1]
                for x0, y0, x1, y1 in level.tiles:
                    boxes = self.model.run(rgb[y0:y1, x0:x1], level.threshold)
                    boxes[:, [0, 2]] += x0
                    boxes[:, [1, 3]] += y0
                    if level.upside_down:
                        boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
                        boxes[:, [1, 3]] = h - boxes[:, [3, 1]]
                    boxes[:, :4] *= factor
                    found.append(boxes)
                del rgb  # before the next level's copy is made: one copy in memory at a time
        except DetectionFailed:
            raise
        except Exception as exc:  # ONNX Runtime errors: never return a partial answer
            raise DetectionFailed(f"local face detection failed: {exc}") from exc
        merged = nms(np.concatenate(found), s.nms_iou)
        if self.metrics is not None:
            self.metrics.detector_faces.labels(self.name).inc(len(merged))
        return [
            Face(float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1]), float(b[4]), self.name)
            for b in merged
        ]
