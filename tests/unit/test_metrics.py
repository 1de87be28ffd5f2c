"""What /metrics exposes before anything happened, and the local detector's faces being counted."""

from __future__ import annotations

from helpers.images import png_bytes, textured_rgb
from prometheus_client import generate_latest

from worker.telemetry.metrics import DLQ_REASONS, MESSAGE_OUTCOMES, RETRY_REASONS, Metrics


def samples(metrics: Metrics) -> dict[str, float]:
    out = {}
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_every_known_label_starts_at_zero_and_no_created_series():
    found = samples(Metrics())
    for outcome in MESSAGE_OUTCOMES:
        assert found[f'faceblur_messages_total{{outcome="{outcome}"}}'] == 0
    for reason in DLQ_REASONS:
        assert found[f'faceblur_dlq_sends_total{{reason="{reason}"}}'] == 0
    assert found['faceblur_retries_total{reason="s3_error"}'] == 0
    assert found['faceblur_faces_total{detector="local"}'] == 0
    assert "foreign_bucket" in DLQ_REASONS
    assert not [name for name in found if "_created" in name]


def test_process_memory_build_info_and_memory_limit_are_exposed():
    found = samples(Metrics())
    assert found["process_resident_memory_bytes"] > 10e6
    assert found['faceblur_build_info{version="0.1.0"}'] == 1
    assert found["faceblur_memory_limit_bytes"] > 0


def test_the_local_detector_counts_its_faces(settings, skimage_data):
    from worker.blur import blur_photo
    from worker.detect.local import LocalDetector

    metrics = Metrics()
    detector = LocalDetector(settings.detect, metrics=metrics)
    blur_photo((skimage_data / "astronaut.png").read_bytes(), detector, settings)
    blur_photo(png_bytes(textured_rgb(64, 48)), detector, settings)
    assert samples(metrics)['faceblur_faces_total{detector="local"}'] == 1


def test_the_reason_lists_are_derived_from_the_error_classes():
    """Each reason a DLQ send or a retry can carry is an error class's (or one of the two named in errors.py), so
    every one starts at 0; the reasons storage and Rekognition raise have classes of their own."""
    from botocore.exceptions import ClientError, ParamValidationError

    from worker.detect.rekognition import as_failure
    from worker.errors import (
        DLQ_SEND_FAILED,
        INTERNAL_ERROR,
        ObjectTooLarge,
        PermanentError,
        RekognitionRefused,
        TransientError,
    )
    from worker.storage import _transient

    def every(cls: type) -> list[type]:
        return [cls, *(c for sub in cls.__subclasses__() for c in every(sub))]

    refused = {"rekognition_" + r for r in ("access_denied", "image_too_large", "invalid_image_format")}
    refused |= {"rekognition_invalid_parameter", "rekognition_invalid_s3_object"}
    plain = {c.reason for c in every(PermanentError)[1:] if c is not RekognitionRefused}
    assert set(DLQ_REASONS) == plain | refused  # every code Rekognition refuses with, and never the bare class's
    for code in RekognitionRefused.CODES:
        assert RekognitionRefused("no", code).reason in DLQ_REASONS
    assert set(RETRY_REASONS) == {c.reason for c in every(TransientError)[1:]} | {DLQ_SEND_FAILED, INTERNAL_ERROR}
    denied = ClientError({"Error": {"Code": "AccessDenied"}}, "GetObject")
    failed = ClientError({"Error": {"Code": "SlowDown"}}, "GetObject")
    throttled = ClientError({"Error": {"Code": "ThrottlingException"}}, "DetectFaces")
    assert _transient("GET", ParamValidationError(report="bad key")).reason == "invalid_parameter"
    assert ObjectTooLarge("x").reason == "object_too_large"
    assert "object_too_large" in DLQ_REASONS
    assert "invalid_parameter" in DLQ_REASONS
    for reason in ("access_denied", "s3_error", "rekognition_unavailable", "output_changed"):
        assert reason in RETRY_REASONS
    assert (_transient("GET", denied).reason, _transient("GET", failed).reason) == ("access_denied", "s3_error")
    assert as_failure(throttled, attempts=3).reason == "rekognition_unavailable"
