"""Face detection: every detector returns boxes in upright-image pixels, never None."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class Face:
    """A detected face: top-left corner, size (upright-image pixels) and confidence in [0, 1]."""

    x: float
    y: float
    w: float
    h: float
    score: float
    source: str = "local"

    def as_dict(self) -> dict[str, float | str]:
        return {
            "x": round(self.x, 1),
            "y": round(self.y, 1),
            "w": round(self.w, 1),
            "h": round(self.h, 1),
            "score": round(self.score, 3),
            "source": self.source,
        }


class Frame(Protocol):
    """An upright photo as a detector sees it. The imaging layer implements it (decoding once, encoding what is
    sent away): detectors never touch an image library."""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the upright full-resolution image."""
        ...

    def rgb(self, scale: float) -> tuple[np.ndarray, float]:
        """An HxWx3 uint8 RGB copy `scale` times the full-resolution size, and the factor that maps its pixels
        back to full-resolution pixels."""
        ...

    def jpeg(self, scale: float, quality: int) -> bytes:
        """The same copy as rgb(scale) gives, encoded as a JPEG at `quality` with nothing but its pixels (it leaves
        the worker: the imaging layer holds it to the egress allow-list). What a remote detector is sent."""
        ...


class Detector(Protocol):
    """Finds faces in a frame; raises DetectionFailed when it cannot finish (never returns a partial answer)."""

    name: str

    def detect(self, frame: Frame) -> list[Face]: ...
