"""What /metrics exposes before anything happened, and the local detector's faces being counted."""

from __future__ import annotations

from helpers.images import png_bytes, textured_rgb
from prometheus_client import generate_latest

from worker.telemetry.metrics import DLQ_REASONS, MESSAGE_OUTCOMES, Metrics


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
