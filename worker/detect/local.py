"""The local detector: CenterFace at two scales plus an upside-down pass, merged by NMS.

A coarse pass (long side DETECT_COARSE_SIDE, 640 px) finds large faces; a fine pass (DETECT_FINE_SIDE, 1024 px,
enlarging small photos up to DETECT_MAX_UPSCALE) finds the small ones that a single 640 px pass loses; a strict
pass on the photo turned 180 degrees (DETECT_ROTATED_SIDE, 480 px) finds upside-down faces, which CenterFace
misses upright. The fine pass is capped in pixels, not tiled at full resolution, so its cost does not grow with
the photo's megapixels. The sizes and thresholds come from a sweep on the internal evaluation set (docs/benchmarks.md).
"""

from __future__ import annotations

import numpy as np

from worker.config import DetectSettings
from worker.detect import Face, Frame
from worker.detect.centerface import CenterFace
from worker.errors import DetectionFailed
from worker.geometry import nms
from worker.telemetry.metrics import Metrics


class LocalDetector:
    name = "local"

    def __init__(
        self, settings: DetectSettings, model: CenterFace | None = None, metrics: Metrics | None = None
    ) -> None:
        self.settings = settings
        self.model = model or CenterFace.shared(settings.model_path)
        self.metrics = metrics

    def passes(self, width: int, height: int) -> list[int]:
        """Long sides to detect at. A fine pass that would not be larger than the coarse one is skipped."""
        s = self.settings
        sides = [s.coarse_side]
        reachable = max(width, height) * s.max_upscale
        if s.fine_side and min(s.fine_side, reachable) > s.coarse_side * 1.25:
            sides.insert(0, s.fine_side)  # largest first: the smaller inputs are then shrunk from its copy
        return sides

    def detect(self, frame: Frame) -> list[Face]:
        s = self.settings
        found = []
        try:
            for side in self.passes(*frame.size):
                rgb, factor = frame.rgb(side, s.max_upscale)
                boxes = self.model.run(rgb, s.threshold)
                boxes[:, :4] *= factor
                found.append(boxes)
            if s.rotated_side:
                # Upside-down faces (people lying down, photos held upside down): CenterFace only finds
                # upright faces, so detect once more on the photo turned 180 degrees, small and strict.
                rgb, factor = frame.rgb(s.rotated_side, s.max_upscale)
                h, w = rgb.shape[:2]
                boxes = self.model.run(np.ascontiguousarray(rgb[::-1, ::-1]), s.rotated_threshold)
                boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
                boxes[:, [1, 3]] = h - boxes[:, [3, 1]]
                boxes[:, :4] *= factor
                found.append(boxes)
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
