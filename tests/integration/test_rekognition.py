"""DETECTOR=rekognition end to end: moto (S3 + SQS) and the fake Rekognition endpoint, both over real HTTP, called
by real boto3 (the worker's own clients; AWS_ENDPOINT_URL_REKOGNITION sends Rekognition to the fake).

REKOGNITION_UPLOADS (default 200, as the issue asks) sets the size of the throttled batch, e.g.
    REKOGNITION_UPLOADS=40 .venv/bin/python -m pytest -m rekognition tests/integration/test_rekognition.py
"""

from __future__ import annotations

import io
import os
from dataclasses import replace

import numpy as np
import pytest
from helpers import exif as xf
from helpers.images import exif_segment, insert_segments, to_stored
from integration_support import (
    decode_rgb,
    detail_correlation,
    drain_queue,
    exists,
    keys_in_body,
    object_keys,
    queue_empty,
    read_queue,
    skimage_photo,
    wait_for,
)
from PIL import Image as PILImage

from worker.config import RekognitionSettings
from worker.dev.fake_rekognition import start_fake_rekognition

pytestmark = pytest.mark.rekognition

UPLOADS = int(os.environ.get("REKOGNITION_UPLOADS", "200"))
# The astronaut's face in astronaut.png (x0, y0, x1, y1), by eye (as in test_pipeline.py).
ASTRONAUT_FACE = (185, 70, 265, 175)


@pytest.fixture(scope="module")
def fake():
    server = start_fake_rekognition(seed=7)
    yield server
    server.stop()


@pytest.fixture
def rekognition(fake, moto_endpoint, monkeypatch):
    """The fake, reset, with boto3's Rekognition endpoint pointed at it (S3 and SQS stay on moto)."""
    fake.configure(throttle_rate=0.0, throttle_burst=(0, 0), error_rate=0.0, fail_with="", delay_seconds=0.0, seed=7)
    fake.reset_counts()
    monkeypatch.setenv("AWS_ENDPOINT_URL_REKOGNITION", fake.endpoint)
    return fake


def rekognition_settings(stack, make_settings, **rk):
    base = make_settings(stack, detector="rekognition", concurrency=4)
    quick = dict(tps=50, max_attempts=16, max_seconds=60, backoff_seconds=0.02, backoff_max_seconds=0.3)
    return replace(base, rekognition=RekognitionSettings(**{**quick, **rk}))


def upright_astronaut() -> np.ndarray:
    return decode_rgb(skimage_photo("astronaut.png"))


def variants() -> list[tuple[str, bytes]]:
    """The astronaut three ways: PNG (sent as is), a phone JPEG stored rotated with EXIF orientation 6 (sent as is;
    Rekognition applies the orientation), and WebP (re-encoded to JPEG before sending)."""
    upright = upright_astronaut()
    buf = io.BytesIO()
    PILImage.fromarray(to_stored(upright, 6)).save(buf, "JPEG", quality=92)
    rotated = insert_segments(buf.getvalue(), [exif_segment(xf.orientation_only(6))])
    buf = io.BytesIO()
    PILImage.fromarray(upright).save(buf, "WEBP", quality=90)
    return [("png", skimage_photo("astronaut.png")), ("jpg", rotated), ("webp", buf.getvalue())]


def face_detail(before: np.ndarray, after: np.ndarray) -> float:
    """detail_correlation in the face box, on a crop around it (cheaper than the whole photo)."""
    x0, y0, x1, y1 = ASTRONAUT_FACE
    m = 30
    crop = (slice(y0 - m, y1 + m), slice(x0 - m, x1 + m))
    return detail_correlation(before[crop], after[crop], (m, m, m + x1 - x0, m + y1 - y0))


def test_throttled_batch_is_all_blurred_nothing_lost_nothing_dead(
    rekognition, make_stack, s3, sqs, make_settings, run_service
):
    stack = make_stack()
    drain_queue(sqs, stack.queue_url)
    rekognition.configure(throttle_rate=0.5)
    photos = variants()
    keys = []
    for i in range(UPLOADS):
        ext, data = photos[i % len(photos)]
        key = f"batch/{i:04d}.{ext}"
        s3.put_object(Bucket=stack.source_bucket, Key=key, Body=data)
        keys.append(key)

    runner = run_service(rekognition_settings(stack, make_settings))
    wait_for(
        lambda: len(object_keys(s3, stack.output_bucket)) >= UPLOADS,
        timeout=60 + UPLOADS,
        interval=0.5,
        what="every output",
    )
    wait_for(lambda: queue_empty(sqs, stack.queue_url), timeout=30, what="an empty source queue")

    assert object_keys(s3, stack.output_bucket) == set(keys)  # 0 lost
    assert read_queue(sqs, stack.dlq_url) == []  # 0 dead
    assert runner.value("faceblur_messages_total", outcome="done") == UPLOADS
    before = upright_astronaut()
    unblurred = []
    for key in keys:
        after = decode_rgb(s3.get_object(Bucket=stack.output_bucket, Key=key)["Body"].read())
        assert after.shape == before.shape, key
        if face_detail(before, after) > 0.35:
            unblurred.append(key)
        assert int(s3.head_object(Bucket=stack.output_bucket, Key=key)["Metadata"]["faces"]) == 1, key
    assert unblurred == []

    seen = rekognition.snapshot()
    assert seen["throttles"] > UPLOADS / 4  # the injected throttling really happened
    assert runner.value("faceblur_rekognition_calls_total") == seen["calls"]
    assert runner.value("faceblur_rekognition_throttles_total") == seen["throttles"]
    # Every throttled attempt was retried, except the last of a photo whose retries ran out (that photo's message
    # went back to the queue and was done on a later receive).
    exhausted = runner.value("faceblur_retries_total", reason="rekognition_unavailable")
    assert runner.value("faceblur_rekognition_retries_total") == seen["throttles"] - exhausted
    assert seen["answered"] == UPLOADS + runner.value("faceblur_retries_total", reason="detection_failed")
    assert runner.value("faceblur_faces_total", detector="rekognition") == UPLOADS


def test_detector_always_failing_leaves_no_output_and_redrives_to_the_dlq(
    rekognition, make_stack, s3, sqs, make_settings, run_service
):
    stack = make_stack(max_receive_count=2)
    drain_queue(sqs, stack.queue_url)
    rekognition.configure(error_rate=1.0)  # 500 InternalServerError, always
    s3.put_object(Bucket=stack.source_bucket, Key="down/astronaut.png", Body=skimage_photo("astronaut.png"))

    settings = rekognition_settings(stack, make_settings, max_attempts=3)
    settings = replace(settings, service=replace(settings.service, retry_base_seconds=1, heartbeat_seconds=50))
    runner = run_service(settings)
    wait_for(lambda: read_queue(sqs, stack.dlq_url), timeout=60, what="the queue's redrive to the DLQ")

    (dead,) = read_queue(sqs, stack.dlq_url)
    assert keys_in_body(dead.body) == ["down/astronaut.png"]  # the original notification, nothing lost
    assert not exists(s3, stack.output_bucket, "down/astronaut.png")  # fail closed: nothing written
    assert queue_empty(sqs, stack.queue_url)
    # The reason of each return to the queue (a redrive carries no attributes: the metric and log say why).
    assert runner.value("faceblur_retries_total", reason="rekognition_unavailable") == 2
    assert rekognition.snapshot()["server_errors"] == 2 * 3 == runner.value("faceblur_rekognition_calls_total")
    assert runner.value("faceblur_photos_total", outcome="stored") == 0


def test_permanent_refusal_goes_to_the_dlq_with_its_reason(
    rekognition, make_stack, s3, sqs, make_settings, run_service
):
    stack = make_stack()
    drain_queue(sqs, stack.queue_url)
    rekognition.configure(fail_with="InvalidImageFormatException")
    s3.put_object(Bucket=stack.source_bucket, Key="refused/astronaut.png", Body=skimage_photo("astronaut.png"))

    runner = run_service(rekognition_settings(stack, make_settings))
    wait_for(lambda: read_queue(sqs, stack.dlq_url), timeout=30, what="the DLQ message")

    (dead,) = read_queue(sqs, stack.dlq_url)
    assert dead.attributes["faceblur-reason"] == "rekognition_invalid_image_format"
    assert "InvalidImageFormatException" in dead.attributes["faceblur-error"]
    assert dead.attributes["faceblur-failed-keys"] == "refused/astronaut.png"
    assert not exists(s3, stack.output_bucket, "refused/astronaut.png")
    wait_for(lambda: queue_empty(sqs, stack.queue_url), timeout=15, what="an empty source queue")
    assert rekognition.snapshot()["calls"] == 1  # not retried
    assert runner.value("faceblur_dlq_sends_total", reason="rekognition_invalid_image_format") == 1


def test_both_mode_blurs_with_the_union(rekognition, make_stack, s3, sqs, make_settings, run_service):
    stack = make_stack()
    drain_queue(sqs, stack.queue_url)
    s3.put_object(Bucket=stack.source_bucket, Key="both/astronaut.png", Body=skimage_photo("astronaut.png"))
    settings = rekognition_settings(stack, make_settings)
    runner = run_service(replace(settings, service=replace(settings.service, detector="both")))
    wait_for(lambda: exists(s3, stack.output_bucket, "both/astronaut.png"), timeout=60, what="the output")

    head = s3.head_object(Bucket=stack.output_bucket, Key="both/astronaut.png")
    assert head["Metadata"]["detector"] == "both"
    assert head["Metadata"]["faces"] == "1"  # the same face from both detectors, merged
    after = decode_rgb(s3.get_object(Bucket=stack.output_bucket, Key="both/astronaut.png")["Body"].read())
    assert face_detail(upright_astronaut(), after) <= 0.35
    assert runner.value("faceblur_faces_total", detector="rekognition") == 1
    assert runner.value("faceblur_faces_total", detector="local") == 1
    assert runner.value("faceblur_faces_single_detector_total", detector="local") == 0
