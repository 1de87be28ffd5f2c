"""Process start-up shared by every command: settings, ImageMagick limits and policy, the detector."""

from __future__ import annotations

from worker.config import Settings, from_env
from worker.detect import Detector
from worker.detect.local import LocalDetector
from worker.imaging import magick


class StartupError(RuntimeError):
    pass


def prepare_imaging(settings: Settings) -> None:
    magick.configure(settings.image)
    if not magick.policy_active():
        # Fail closed: without our policy ImageMagick would accept vector and script formats.
        raise StartupError("the worker's ImageMagick policy is not in force (MAGICK_CONFIGURE_PATH points elsewhere?)")


def build_detector(settings: Settings) -> Detector:
    return LocalDetector(settings.detect)


def start(settings: Settings | None = None) -> tuple[Settings, Detector]:
    settings = settings or from_env()
    prepare_imaging(settings)
    return settings, build_detector(settings)
