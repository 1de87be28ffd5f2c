"""End to end through a real moto server over HTTP: S3 upload -> notification -> SQS -> worker -> S3 output, and
what happens to messages that cannot be processed."""

from __future__ import annotations

import json

import pytest
from integration_support import (
    decode_rgb,
    detail_correlation,
    drain_queue,
    eventbridge_event,
    exists,
    free_port,
    get_bytes,
    http_get,
    jpeg_bytes,
    keys_in_body,
    object_keys,
    png_bytes,
    queue_depth,
    queue_empty,
    read_queue,
    s3_event,
    s3_record,
    skimage_photo,
    sns_envelope,
    synthetic_png,
    synthetic_rgb,
    wait_for,
)

# The astronaut's face in skimage's astronaut.png (512x512), (x0, y0, x1, y1): forehead to chin, cheek to cheek,
# determined by eye, independently of the worker's detector.
ASTRONAUT_FACE = (185, 70, 265, 175)
# A region without a face (the suit and mission patch): its detail must survive unchanged.
ASTRONAUT_SUIT = (120, 330, 230, 440)


def settled(runner, n: int) -> bool:
    """The worker has settled at least n messages (any outcome)."""
    outcomes = ("done", "ignored", "dead_lettered", "retried")
    return sum(runner.value("faceblur_messages_total", outcome=o) for o in outcomes) >= n


# -- 1. the happy path -----------------------------------------------------------------------------------------------
def test_uploaded_photo_comes_out_blurred_under_the_same_key(stack, s3, sqs, make_settings, run_service):
    original = skimage_photo("astronaut.png")
    key = "portraits/astronaut.png"
    s3.put_object(Bucket=stack.source_bucket, Key=key, Body=original)
    source_etag = s3.head_object(Bucket=stack.source_bucket, Key=key)["ETag"]

    runner = run_service(make_settings(stack))
    wait_for(lambda: exists(s3, stack.output_bucket, key), timeout=60, what="the blurred output")

    head = s3.head_object(Bucket=stack.output_bucket, Key=key)
    meta = head["Metadata"]
    assert int(meta["faces"]) >= 1
    assert meta["source-etag"] == source_etag.strip('"')
    assert meta["detector"] == "local"
    assert meta["worker-version"]
    assert head["ContentType"] == "image/png"
    assert head["ServerSideEncryption"] == "AES256"

    before = decode_rgb(original)
    after = decode_rgb(get_bytes(s3, stack.output_bucket, key))
    assert after.shape == before.shape
    face_detail = detail_correlation(before, after, ASTRONAUT_FACE)
    assert face_detail <= 0.35, f"the face keeps too much detail (correlation {face_detail:.2f})"
    suit_detail = detail_correlation(before, after, ASTRONAUT_SUIT)
    assert suit_detail >= 0.95, f"a region without a face lost detail (correlation {suit_detail:.2f})"

    # The source object is untouched.
    assert get_bytes(s3, stack.source_bucket, key) == original
    assert s3.head_object(Bucket=stack.source_bucket, Key=key)["ETag"] == source_etag
    assert object_keys(s3, stack.source_bucket) == {key}
    # Both messages (the test event and the upload) are settled and gone; nothing went to the DLQ.
    wait_for(lambda: queue_empty(sqs, stack.queue_url), timeout=15, what="an empty source queue")
    assert runner.value("faceblur_messages_total", outcome="done") == 1
    assert read_queue(sqs, stack.dlq_url) == []


# -- 2. the s3:TestEvent ----------------------------------------------------------------------------------------------
def test_s3_test_event_is_ignored_and_deleted(stack, sqs, make_settings, run_service):
    queued = read_queue(sqs, stack.queue_url)
    assert len(queued) == 1
    assert json.loads(queued[0].body)["Event"] == "s3:TestEvent"

    runner = run_service(make_settings(stack))
    wait_for(lambda: settled(runner, 1), what="the test event to be settled")
    wait_for(lambda: queue_empty(sqs, stack.queue_url), timeout=15, what="an empty source queue")

    assert runner.value("faceblur_messages_total", outcome="ignored") == 1
    assert runner.value("faceblur_messages_total", outcome="dead_lettered") == 0
    assert runner.value("faceblur_photos_total", outcome="stored") == 0
    assert read_queue(sqs, stack.dlq_url) == []


# -- 3. awkward keys ---------------------------------------------------------------------------------------------------
ODD_KEYS = [
    "a/b/c/photo 1+2 100%.png",
    "café/写真.png",
    "literal/%2B plus %25 percent+.png",  # already-encoded-looking text must not be decoded twice
    "  leading spaces/x~!$&'()=;,@.png",
]


def test_awkward_keys_come_out_under_exactly_the_same_keys(stack, s3, sqs, make_settings, run_service):
    for i, key in enumerate(ODD_KEYS):
        s3.put_object(Bucket=stack.source_bucket, Key=key, Body=synthetic_png(seed=i))

    run_service(make_settings(stack))
    wait_for(lambda: len(object_keys(s3, stack.output_bucket)) >= len(ODD_KEYS), timeout=60, what="all outputs")
    wait_for(lambda: queue_empty(sqs, stack.queue_url), timeout=15, what="an empty source queue")

    assert object_keys(s3, stack.output_bucket) == set(ODD_KEYS)
    for i, key in enumerate(ODD_KEYS):
        assert decode_rgb(get_bytes(s3, stack.output_bucket, key)).shape == synthetic_rgb(seed=i).shape
    assert read_queue(sqs, stack.dlq_url) == []


# -- 4. message shapes sent straight to the queue ----------------------------------------------------------------------
def test_multi_record_sns_and_eventbridge_bodies_are_processed(stack, s3, sqs, make_settings, run_service):
    objects = {
        "multi/one.png": synthetic_png(seed=1),
        "multi/two.png": synthetic_png(seed=2),
        "sns/wrapped photo.png": synthetic_png(seed=3),
        "eventbridge/sun & sea+1 100%.png": synthetic_png(seed=4),  # EventBridge keys are not URL-encoded
    }
    meta = {}
    for key, data in objects.items():
        s3.put_object(Bucket=stack.source_bucket, Key=key, Body=data)
        meta[key] = (s3.head_object(Bucket=stack.source_bucket, Key=key)["ETag"].strip('"'), len(data))
    drain_queue(sqs, stack.queue_url)  # only the bodies below announce these objects

    def record(key: str) -> dict:
        return s3_record(stack.source_bucket, key, *meta[key])

    bodies = [
        s3_event(record("multi/one.png"), record("multi/two.png")),
        sns_envelope(s3_event(record("sns/wrapped photo.png"))),
        eventbridge_event(
            stack.source_bucket, "eventbridge/sun & sea+1 100%.png", *meta["eventbridge/sun & sea+1 100%.png"]
        ),
    ]
    for body in bodies:
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)

    runner = run_service(make_settings(stack))
    wait_for(lambda: settled(runner, len(bodies)), timeout=60, what="all three messages to be settled")
    wait_for(lambda: queue_empty(sqs, stack.queue_url), timeout=15, what="an empty source queue")

    assert object_keys(s3, stack.output_bucket) == set(objects)
    assert runner.value("faceblur_messages_total", outcome="done") == 3
    assert runner.value("faceblur_photos_total", outcome="stored") == 4
    assert read_queue(sqs, stack.dlq_url) == []


# -- 5. duplicate delivery ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("concurrency", [1, 2])
def test_duplicate_notification_is_processed_once(stack, s3, sqs, make_settings, run_service, concurrency):
    s3.put_bucket_versioning(Bucket=stack.output_bucket, VersioningConfiguration={"Status": "Enabled"})
    drain_queue(sqs, stack.queue_url)
    key = "dup/photo.png"
    s3.put_object(Bucket=stack.source_bucket, Key=key, Body=synthetic_png(seed=5))
    (notification,) = read_queue(sqs, stack.queue_url)
    assert keys_in_body(notification.body) == [key]
    # The same body again, as a redelivery would bring it.
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody=notification.body)

    # concurrency 1: the second copy is received after the first one's output was written. concurrency 2: both
    # copies arrive in one receive and run at once; the second waits for the first and then finds its output.
    runner = run_service(make_settings(stack, concurrency=concurrency))
    wait_for(lambda: settled(runner, 2), timeout=60, what="both copies to be settled")
    wait_for(lambda: queue_empty(sqs, stack.queue_url), timeout=15, what="an empty source queue")

    assert runner.value("faceblur_photos_total", outcome="stored") == 1
    assert runner.value("faceblur_photos_total", outcome="skipped_duplicate") == 1
    assert runner.value("faceblur_messages_total", outcome="done") == 2
    versions = s3.list_object_versions(Bucket=stack.output_bucket, Prefix=key).get("Versions", [])
    assert len(versions) == 1, f"the output was written {len(versions)} times"


# -- 6. photos that can never be processed, and malformed messages -----------------------------------------------------
def _truncated_png() -> bytes:
    data = png_bytes(synthetic_rgb(256, 192, seed=6))
    return data[: len(data) // 2]


def _truncated_jpeg() -> bytes:
    data = jpeg_bytes(synthetic_rgb(256, 192, seed=7))
    return data[: len(data) // 2]


BAD_PHOTOS = {
    "bad/letter.jpg": (b"Dear diary,\nthis is not a photo at all.\n", "not_an_image"),
    "bad/cut.png": (_truncated_png(), "corrupt_image"),
    "bad/cut.jpg": (_truncated_jpeg(), "corrupt_image"),  # decodes "successfully" (grey bottom) unless refused
    "bad/signature then noise.jpg": (b"\xff\xd8\xff" + bytes(range(256)) * 8, "corrupt_image"),
    "bad/huge.png": (synthetic_png(seed=10, width=512, height=512), "object_too_large"),  # over MAX_OBJECT_BYTES
}
MAX_OBJECT_BYTES = 100_000


def _check_dead_lettered(s3, sqs, stack, runner, photos: dict[str, tuple[bytes, str]], etags: dict[str, str]) -> None:
    wait_for(lambda: settled(runner, 1 + len(photos)), timeout=60, what="the test event and the uploads to settle")
    wait_for(lambda: queue_empty(sqs, stack.queue_url), timeout=15, what="the messages deleted from the source queue")

    assert object_keys(s3, stack.output_bucket) == set(), "nothing may be stored for a bad photo"
    dead = {keys_in_body(m.body)[0]: m for m in read_queue(sqs, stack.dlq_url)}
    assert set(dead) == set(photos)  # the original notifications, intact, for a redrive
    for key, (data, reason) in photos.items():
        attrs = dead[key].attributes
        assert attrs["faceblur-reason"] == reason, key
        assert attrs["faceblur-failed-keys"] == key
        assert attrs["faceblur-error"]
        assert attrs["faceblur-source-message-id"]
        assert attrs["faceblur-receive-count"] == "1"
        assert get_bytes(s3, stack.source_bucket, key) == data  # the source is untouched
        assert s3.head_object(Bucket=stack.source_bucket, Key=key)["ETag"] == etags[key]
    assert runner.value("faceblur_messages_total", outcome="dead_lettered") == len(photos)
    assert runner.value("faceblur_messages_total", outcome="retried") == 0
    for reason in {r for _, r in photos.values()}:
        expected = sum(1 for _, r in photos.values() if r == reason)
        assert runner.value("faceblur_dlq_sends_total", reason=reason) == expected


def _upload_all(s3, stack, photos: dict[str, tuple[bytes, str]]) -> dict[str, str]:
    etags = {}
    for key, (data, _) in photos.items():
        s3.put_object(Bucket=stack.source_bucket, Key=key, Body=data)
        etags[key] = s3.head_object(Bucket=stack.source_bucket, Key=key)["ETag"]
    return etags


def test_bad_photos_go_to_the_dlq_with_their_reason(stack, s3, sqs, make_settings, run_service):
    sizes = {key: len(data) for key, (data, _) in BAD_PHOTOS.items()}
    assert sizes.pop("bad/huge.png") > MAX_OBJECT_BYTES > max(sizes.values())
    etags = _upload_all(s3, stack, BAD_PHOTOS)
    runner = run_service(make_settings(stack, max_object_bytes=MAX_OBJECT_BYTES))
    _check_dead_lettered(s3, sqs, stack, runner, BAD_PHOTOS, etags)


MALFORMED_BODIES = [
    "this is not JSON {",
    "",  # SQS refuses empty bodies; sent as a single space below
    '{"Records": []}',
    '{"hello": "world"}',
    '{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {}}}]}',
    '{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": "%C3%28"}}}]}',
]


def test_malformed_messages_go_to_the_dlq(stack, s3, sqs, make_settings, run_service):
    drain_queue(sqs, stack.queue_url)
    bodies = [b or " " for b in MALFORMED_BODIES]
    for body in bodies:
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)

    runner = run_service(make_settings(stack))
    wait_for(lambda: settled(runner, len(bodies)), timeout=30, what="the messages to be settled")
    wait_for(lambda: queue_empty(sqs, stack.queue_url), timeout=15, what="the messages deleted from the source queue")

    dead = read_queue(sqs, stack.dlq_url)
    assert sorted(m.body for m in dead) == sorted(bodies)  # each original body, intact
    for msg in dead:
        assert msg.attributes["faceblur-reason"] == "malformed_message", msg.body
        assert "faceblur-failed-keys" not in msg.attributes
    assert runner.value("faceblur_dlq_sends_total", reason="malformed_message") == len(bodies)
    assert runner.value("faceblur_messages_total", outcome="dead_lettered") == len(bodies)
    assert object_keys(s3, stack.output_bucket) == set()


# -- 7. the object was deleted before the worker got to it -------------------------------------------------------------
def test_missing_object_is_dead_lettered_and_the_worker_carries_on(stack, s3, sqs, make_settings, run_service):
    s3.put_object(Bucket=stack.source_bucket, Key="gone.png", Body=synthetic_png(seed=8))
    s3.delete_object(Bucket=stack.source_bucket, Key="gone.png")
    assert queue_depth(sqs, stack.queue_url)[0] == 2  # the test event and the (now stale) notification

    runner = run_service(make_settings(stack, metrics_port=free_port()))
    wait_for(lambda: settled(runner, 2), timeout=30, what="both messages to be settled")

    (msg,) = read_queue(sqs, stack.dlq_url)
    assert msg.attributes["faceblur-reason"] == "object_missing"
    assert msg.attributes["faceblur-failed-keys"] == "gone.png"

    # Still alive and healthy, and still processing.
    s3.put_object(Bucket=stack.source_bucket, Key="after.png", Body=synthetic_png(seed=9))
    wait_for(lambda: exists(s3, stack.output_bucket, "after.png"), timeout=30, what="the next photo's output")
    wait_for(lambda: queue_empty(sqs, stack.queue_url), timeout=15, what="an empty source queue")
    assert runner.alive()
    assert http_get(f"{runner.url}/healthz")[0] == 200
    assert runner.value("faceblur_messages_total", outcome="dead_lettered") == 1
    assert runner.value("faceblur_messages_total", outcome="retried") == 0
    assert runner.value("faceblur_messages_total", outcome="done") == 1
    assert len(read_queue(sqs, stack.dlq_url)) == 1  # no loop: it was dead-lettered once


def test_one_missing_object_in_a_multi_record_message_does_not_lose_the_other(
    stack, s3, sqs, make_settings, run_service
):
    data = synthetic_png(seed=15)
    s3.put_object(Bucket=stack.source_bucket, Key="pair/present.png", Body=data)
    drain_queue(sqs, stack.queue_url)  # the test event and the upload's own notification: only `body` below counts
    etag = s3.head_object(Bucket=stack.source_bucket, Key="pair/present.png")["ETag"].strip('"')
    body = s3_event(
        s3_record(stack.source_bucket, "pair/missing.png", "0" * 32, 1234),
        s3_record(stack.source_bucket, "pair/present.png", etag, len(data)),
    )
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)

    runner = run_service(make_settings(stack))
    wait_for(lambda: settled(runner, 1), timeout=30, what="the message to be settled")
    wait_for(lambda: queue_empty(sqs, stack.queue_url), timeout=15, what="an empty source queue")

    assert object_keys(s3, stack.output_bucket) == {"pair/present.png"}
    (msg,) = read_queue(sqs, stack.dlq_url)
    assert msg.body == body  # the whole message, for a redrive (the present photo is then skipped as done)
    assert msg.attributes["faceblur-reason"] == "object_missing"
    assert msg.attributes["faceblur-failed-keys"] == "pair/missing.png"
    assert runner.value("faceblur_photos_total", outcome="stored") == 1
