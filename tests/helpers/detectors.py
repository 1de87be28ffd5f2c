"""Detector doubles. Only the detector is ever doubled in these tests, never Wand/ImageMagick."""

from __future__ import annotations

from collections.abc import Sequence

from worker.detect import Face


class FixedDetector:
    """Returns fixed faces: for tests of decoding, redaction and encoding that must not depend on (or pay for)
    the real model. Counts its calls, so a test can prove a bad input was refused before detection."""

    name = "fixed"

    def __init__(self, faces: Sequence[Face] = ()) -> None:
        self.faces = list(faces)
        self.calls = 0
        self.small_calls = 0

    def detect(self, frame: object) -> list[Face]:
        self.calls += 1
        return list(self.faces)

    def detect_small(self, frame: object, below: float) -> list[Face]:
        """What Rekognition mode asks of the local detector on every photo: faces narrower than `below`."""
        self.small_calls += 1
        return [f for f in self.faces if f.w < below]
