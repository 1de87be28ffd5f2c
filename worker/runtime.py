"""Process start-up shared by every command: settings, ImageMagick limits and policy, the detector."""

from __future__ import annotations

from worker.config import Settings, from_env
from worker.detect import Detector
from worker.detect.local import LocalDetector
from worker.imaging import magick
from worker.telemetry.metrics import Metrics


class StartupError(RuntimeError):
    pass


def prepare_imaging(settings: Settings) -> None:
    magick.configure(settings.image)
    if not magick.policy_active():
        # Fail closed: without our policy ImageMagick would accept vector and script formats.
        raise StartupError("the worker's ImageMagick policy is not in force (MAGICK_CONFIGURE_PATH points elsewhere?)")


def build_detector(settings: Settings, metrics: Metrics | None = None) -> Detector:
    """DETECTOR=local | rekognition | both. `metrics` receives the Rekognition counters (the consumer's registry)."""
    kind = settings.service.detector
    if kind == "local":
        return LocalDetector(settings.detect)
    from worker.detect.rekognition import RekognitionDetector

    local = LocalDetector(settings.detect)
    if kind == "rekognition":
        return RekognitionDetector(settings, metrics=metrics, local=local)
    from worker.detect.combined import CombinedDetector

    # Both mode unites with the local boxes anyway: no second local run when Rekognition hits its 100-face limit.
    remote = RekognitionDetector(settings, metrics=metrics, local=local, union_on_limit=False)
    return CombinedDetector(remote, local, settings.detect.nms_iou, metrics)


def start(settings: Settings | None = None, metrics: Metrics | None = None) -> tuple[Settings, Detector]:
    settings = settings or from_env()
    prepare_imaging(settings)
    return settings, build_detector(settings, metrics)
