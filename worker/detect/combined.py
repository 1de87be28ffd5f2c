"""DETECTOR=both: Rekognition and the local detector on every photo, their boxes united (NMS).

A face either detector finds is blurred. Faces found by only one of them are counted per detector
(faceblur_faces_single_detector_total), which shows how much each one adds. Either failing fails the photo.
"""

from __future__ import annotations

from worker.detect import Detector, Face, Frame
from worker.geometry import overlaps, union
from worker.telemetry.metrics import Metrics


class CombinedDetector:
    name = "both"

    def __init__(self, remote: Detector, local: Detector, iou: float, metrics: Metrics | None = None) -> None:
        self.remote = remote
        self.local = local
        self.iou = iou
        self.metrics = metrics or Metrics()

    def detect(self, frame: Frame) -> list[Face]:
        remote = self.remote.detect(frame)
        local = self.local.detect(frame)
        only_remote = sum(not overlaps(f, local, self.iou) for f in remote)
        only_local = sum(not overlaps(f, remote, self.iou) for f in local)
        if only_remote:
            self.metrics.single_detector_faces.labels(self.remote.name).inc(only_remote)
        if only_local:
            self.metrics.single_detector_faces.labels(self.local.name).inc(only_local)
        return union(remote, local, self.iou)
