"""One photo, bytes in, bytes out: container guard -> memory admission -> decode (the visible image) -> detect on
every view -> redact -> encode.

Fail closed: any exception leaves no output. A photo is only returned after detection completed on every view.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field

from worker.admission import MemoryBudget, photo_bytes
from worker.config import DetectSettings, Settings
from worker.detect import Detector, Face
from worker.geometry import union
from worker.imaging import codec
from worker.imaging.container.formats import BY_CODER
from worker.imaging.egress import Output
from worker.imaging.redact import redact


@dataclass(slots=True)
class Blurred:
    data: Output  # passed egress
    content_type: str
    width: int
    height: int
    faces: list[Face]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


class Stopwatch:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - self._last
        self._last = now


def find_faces(photo: codec.Photo, detector: Detector, settings: DetectSettings) -> list[Face]:
    """Every face the detector finds in any view of the photo (one; two for transparency), united."""
    faces: list[Face] = []
    for view in photo.views():
        faces = union(faces, detector.detect(view), settings.nms_iou)
    return faces


def outline_photo(data: bytes, detector: Detector, settings: Settings) -> tuple[Output, list[Face], dict[str, float]]:
    """A copy of the photo with every detected face outlined (the blur command's --boxes dry run): the faces stay
    visible, so this is never what the service publishes."""
    clock = Stopwatch()
    header = codec.read_header(data, settings.image)
    with codec.decode(data, header) as photo:
        clock.lap("decode")
        faces = find_faces(photo, detector, settings.detect)
        clock.lap("detect")
        codec.outline(photo, [(f.x, f.y, f.w, f.h) for f in faces])
        out = codec.encode(photo, settings.image)  # through egress, like every output
        clock.lap("encode")
    return out, faces, clock.timings


def blur_photo(data: bytes, detector: Detector, settings: Settings, budget: MemoryBudget | None = None) -> Blurred:
    clock = Stopwatch()
    header = codec.read_header(data, settings.image)
    admit = budget.reserve(photo_bytes(header.width, header.height, len(data))) if budget else nullcontext()
    with admit:
        clock.lap("admission")  # reading the container, then waiting for memory
        with codec.decode(data, header) as photo:
            clock.lap("decode")
            faces = find_faces(photo, detector, settings.detect)
            clock.lap("detect")
            # Detector inputs are made lazily inside detect(); report them as their own stage.
            clock.timings["detect"] -= photo.input_seconds
            clock.timings["detector_input"] = photo.input_seconds
            redact(photo, faces, settings.redact)
            clock.lap("blur")
            width, height = photo.size
            out = codec.encode(photo, settings.image)  # frees the decoded image; egress decides what leaves
            clock.lap("encode")
    return Blurred(out, BY_CODER[header.coder].content_type, width, height, faces, clock.timings)
