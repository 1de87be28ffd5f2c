"""Hostile messages and uploads through the real service on moto: a foreign bucket next to a valid photo, ARNs and
invalid names in the bucket field, an ancillary-data bomb, an output the worker did not write, redeliveries of
an event that names no ETag, and a hostile output (a forbidden chunk injected past the encoder)."""

from __future__ import annotations

import json
import struct
import zlib

from integration_support import (
    drain_queue,
    eventbridge_event,
    exists,
    get_bytes,
    object_keys,
    queue_empty,
    read_queue,
    s3_event,
    s3_record,
    skimage_photo,
    synthetic_png,
    wait_for,
)


def _settle(runner, sqs, stack, messages: int) -> None:
    def settled() -> bool:
        outcomes = ("done", "dead_lettered", "ignored")
        return sum(runner.value("faceblur_messages_total", outcome=o) for o in outcomes) >= messages

    wait_for(settled, timeout=60, what=f"{messages} messages settled")
    wait_for(lambda: queue_empty(sqs, stack.queue_url), timeout=15, what="an empty source queue")


def test_a_foreign_bucket_is_refused_without_any_s3_call_next_to_a_valid_photo(
    stack, s3, sqs, make_settings, run_service
):
    """The event names another bucket (one our credentials can read): nothing is read from it, its key's existing
    output is not overwritten, and the valid photo in the same message batch is blurred."""
    s3.create_bucket(Bucket="someone-elses-bucket")
    secret = skimage_photo("astronaut.png")
    s3.put_object(Bucket="someone-elses-bucket", Key="shared/key.png", Body=secret)
    existing = synthetic_png(seed=21)
    s3.put_object(Bucket=stack.output_bucket, Key="shared/key.png", Body=existing)
    s3.put_object(Bucket=stack.source_bucket, Key="valid.png", Body=synthetic_png(seed=22))
    etag = s3.head_object(Bucket="someone-elses-bucket", Key="shared/key.png")["ETag"].strip('"')
    sqs.send_message(
        QueueUrl=stack.queue_url, MessageBody=s3_event(s3_record("someone-elses-bucket", "shared/key.png", etag, 9))
    )

    runner = run_service(make_settings(stack))
    _settle(runner, sqs, stack, messages=3)  # the test event, the upload, the forged event

    assert get_bytes(s3, stack.output_bucket, "shared/key.png") == existing
    assert exists(s3, stack.output_bucket, "valid.png")
    (dead,) = read_queue(sqs, stack.dlq_url)
    assert dead.attributes["faceblur-reason"] == "foreign_bucket"
    assert dead.attributes["faceblur-failed-keys"] == "shared/key.png"
    assert runner.value("faceblur_dlq_sends_total", reason="foreign_bucket") == 1


def test_arns_and_invalid_bucket_names_are_malformed_messages(stack, s3, sqs, make_settings, run_service):
    bodies = []
    for bucket in (
        "arn:aws:s3:us-east-1:123456789012:accesspoint/ap",
        "Not_A_Bucket",
        "192.168.1.1",
        "evil.example.com:8080",
    ):
        record = s3_record(stack.source_bucket, "photo.png", "0" * 32, 10)
        record["s3"]["bucket"]["name"] = bucket
        bodies.append(s3_event(record))
    for body in bodies:
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody=body)
    runner = run_service(make_settings(stack))
    _settle(runner, sqs, stack, messages=1 + len(bodies))
    reasons = [m.attributes["faceblur-reason"] for m in read_queue(sqs, stack.dlq_url)]
    assert reasons == ["malformed_message"] * len(bodies)
    assert runner.value("faceblur_photos_total", outcome="failed") == 0  # refused before any photo was touched


def _ztxt_bomb(inflated: int) -> bytes:
    """A valid small PNG with a zTXt chunk that inflates to `inflated` bytes of zeros."""
    png = synthetic_png(seed=23)
    stream = zlib.compressobj(9)
    chunk = b"".join(stream.compress(b"\0" * 2**20) for _ in range(inflated // 2**20)) + stream.flush()
    body = b"Raw profile type exif\0\0" + chunk
    ztxt = struct.pack(">I", len(body)) + b"zTXt" + body + struct.pack(">I", zlib.crc32(b"zTXt" + body))
    return png[:33] + ztxt + png[33:]  # after IHDR


def test_an_ancillary_chunk_bomb_goes_to_the_dlq_with_its_reason(stack, s3, sqs, make_settings, run_service):
    bomb = _ztxt_bomb(1 << 30)
    assert len(bomb) < 2 << 20  # about 1 MB on the wire, 1 GiB inflated
    s3.put_object(Bucket=stack.source_bucket, Key="bomb.png", Body=bomb)
    runner = run_service(make_settings(stack))
    _settle(runner, sqs, stack, messages=2)
    (dead,) = read_queue(sqs, stack.dlq_url)
    assert dead.attributes["faceblur-reason"] == "metadata_too_large"
    assert not exists(s3, stack.output_bucket, "bomb.png")


def test_an_output_this_worker_did_not_write_is_never_overwritten(stack, s3, sqs, make_settings, run_service):
    s3.put_object(Bucket=stack.output_bucket, Key="taken.png", Body=b"someone else's object")
    s3.put_object(Bucket=stack.source_bucket, Key="taken.png", Body=synthetic_png(seed=24))
    runner = run_service(make_settings(stack))
    _settle(runner, sqs, stack, messages=2)
    assert get_bytes(s3, stack.output_bucket, "taken.png") == b"someone else's object"
    (dead,) = read_queue(sqs, stack.dlq_url)
    assert dead.attributes["faceblur-reason"] == "output_conflict"


def test_redelivery_of_an_event_without_etag_is_recognised_and_not_rewritten(
    stack, s3, sqs, make_settings, run_service
):
    data = synthetic_png(seed=25)
    s3.put_object(Bucket=stack.source_bucket, Key="no-etag.png", Body=data)
    runner = run_service(make_settings(stack))
    _settle(runner, sqs, stack, messages=2)
    first = s3.head_object(Bucket=stack.output_bucket, Key="no-etag.png")
    event = json.loads(eventbridge_event(stack.source_bucket, "no-etag.png", "x", len(data)))
    del event["detail"]["object"]["etag"]
    for _ in range(2):
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody=json.dumps(event))
    _settle(runner, sqs, stack, messages=4)
    assert runner.value("faceblur_photos_total", outcome="skipped_duplicate") == 2
    assert runner.value("faceblur_photos_total", outcome="stored") == 1
    again = s3.head_object(Bucket=stack.output_bucket, Key="no-etag.png")
    assert again["ETag"] == first["ETag"]
    assert again["Metadata"]["write-id"] == first["Metadata"]["write-id"]
    assert object_keys(s3, stack.output_bucket) == {"no-etag.png"}


def test_memory_budget_is_exported(stack, make_settings, run_service, sqs):
    runner = run_service(make_settings(stack))
    _settle(runner, sqs, stack, messages=1)
    assert runner.value("faceblur_memory_budget_bytes") > 0
    assert runner.value("faceblur_memory_reserved_bytes") == 0


def test_an_output_refused_at_egress_is_never_written_and_never_lost(
    make_stack, s3, sqs, make_settings, run_service, monkeypatch
):
    """The encoder (our code) writes a text chunk: egress refuses it, no output object ever exists, the message is
    retried as our bug (reason output_refused) and, after maxReceiveCount, SQS parks it in the DLQ for a redrive."""
    from helpers import hostile as h
    from helpers.images import png_chunk

    from worker.imaging import codec

    write = codec._write
    monkeypatch.setattr(codec, "_write", lambda *a: h.png_insert(write(*a), png_chunk(b"tEXt", b"Author\0" + h.CANARY)))
    stack = make_stack(max_receive_count=2)
    drain_queue(sqs, stack.queue_url)
    s3.put_object(Bucket=stack.source_bucket, Key="egress/photo.png", Body=synthetic_png(seed=5))
    runner = run_service(make_settings(stack, retry_base_seconds=1, retry_max_seconds=2, heartbeat_seconds=50))
    wait_for(lambda: read_queue(sqs, stack.dlq_url), timeout=60, what="the queue's redrive to the DLQ")

    (dead,) = read_queue(sqs, stack.dlq_url)
    assert '"egress%2Fphoto.png"' in dead.body  # the original notification (S3 encodes keys): nothing lost
    assert object_keys(s3, stack.output_bucket) == set()
    assert runner.value("faceblur_retries_total", reason="output_refused") == 2
    assert runner.value("faceblur_photos_total", outcome="stored") == 0
    assert runner.value("faceblur_dlq_sends_total", reason="output_refused") == 0  # not dead-lettered as bad input
