"""Process start-up shared by every command: settings, ImageMagick limits and policy, the detector."""

from __future__ import annotations

from worker.admission import BudgetTooSmall, MemoryBudget, check_fits, default_budget, memory_limit
from worker.aws import Aws
from worker.config import ImageSettings, Settings, from_env, parse_bytes
from worker.detect import Detector
from worker.detect.local import LocalDetector
from worker.imaging import magick
from worker.telemetry.metrics import Metrics


class StartupError(RuntimeError):
    pass


def prepare_imaging(settings: ImageSettings) -> None:
    magick.configure(settings)
    problems = magick.policy_problems(settings)
    if problems:
        # Fail closed: without our whole policy ImageMagick would accept other formats or refuse valid photos.
        raise StartupError(
            "the worker's ImageMagick policy is not in force (MAGICK_CONFIGURE_PATH points elsewhere?): "
            + "; ".join(problems[:5])
        )


def memory_budget(settings: Settings, metrics: Metrics | None = None) -> MemoryBudget:
    """MEMORY_BUDGET, or from the task's memory; refuses to start when it cannot hold the largest allowed photo."""
    image = settings.image
    total = default_budget(memory_limit()) if image.memory_budget == "auto" else parse_bytes(image.memory_budget)
    try:
        check_fits(total, image.max_pixels, settings.service.max_object_bytes)
    except BudgetTooSmall as exc:
        raise StartupError(str(exc)) from None
    if metrics is None:
        return MemoryBudget(total)
    metrics.memory_budget.set(total)
    return MemoryBudget(total, on_change=metrics.memory_reserved.set, on_wait=metrics.memory_wait.observe)


def build_detector(settings: Settings, metrics: Metrics | None = None, aws: Aws | None = None) -> Detector:
    """DETECTOR=local | rekognition | both. `metrics` receives the Rekognition counters (the consumer's registry)."""
    kind = settings.service.detector
    local = LocalDetector(settings.detect, metrics=metrics)
    if kind == "local":
        return local
    from worker.detect.rekognition import RekognitionDetector, make_client

    if kind == "rekognition":
        return RekognitionDetector(settings, client=make_client(settings, aws), metrics=metrics, local=local)
    from worker.detect.combined import CombinedDetector

    # Both mode unites with all the local boxes anyway: no second local run for small faces or the 100-face limit.
    remote = RekognitionDetector(settings, client=make_client(settings, aws), metrics=metrics, local=local, alone=False)
    return CombinedDetector(remote, local, settings.detect.nms_iou, metrics)


def start(
    settings: Settings | None = None, metrics: Metrics | None = None, aws: Aws | None = None
) -> tuple[Settings, Detector]:
    settings = settings or from_env()
    prepare_imaging(settings.image)
    return settings, build_detector(settings, metrics, aws)
