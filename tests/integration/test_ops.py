"""Operator commands on a real moto server: the DLQ looked into without change, redrive to an explicit queue at a
counted rate, reprocess in the real S3 event shape, and --force making the real worker blur a photo again."""

from __future__ import annotations

import json

import pytest
from integration_support import (
    queue_depth,
    read_queue,
    s3_event,
    s3_record,
    skimage_photo,
    synthetic_png,
    wait_for,
)

from worker.cli import main
from worker.events import parse_body
from worker.ratelimit import TokenBucket


def dlq_count(sqs, stack) -> int:
    return sum(queue_depth(sqs, stack.dlq_url))


@pytest.fixture
def dead_letters(stack, sqs):
    """Two DLQ messages: one the worker sent (with its reason), one SQS's redrive moved (none)."""
    sqs.send_message(
        QueueUrl=stack.dlq_url,
        MessageBody=s3_event(s3_record(stack.source_bucket, "bad/notes.jpg", "0" * 32, 12)),
        MessageAttributes={
            "faceblur-reason": {"DataType": "String", "StringValue": "not_an_image"},
            "faceblur-failed-keys": {"DataType": "String", "StringValue": "bad/notes.jpg"},
            "faceblur-error": {"DataType": "String", "StringValue": "not an image: no JPEG, PNG or WebP signature"},
        },
    )
    sqs.send_message(
        QueueUrl=stack.dlq_url, MessageBody=s3_event(s3_record(stack.source_bucket, "slow/one photo.png", "1" * 32, 9))
    )
    return stack


def test_dlq_list_shows_reasons_and_keys_and_changes_nothing(dead_letters, sqs, capsys):
    stack = dead_letters
    assert main(["dlq", "list", "--dlq-url", stack.dlq_url, "--json"]) == 0
    entries = {e["keys"]: e for e in json.loads(capsys.readouterr().out)}
    assert entries["bad/notes.jpg"]["reason"] == "not_an_image"
    assert entries["slow/one photo.png"]["reason"].startswith("retries_exhausted")
    assert wait_for(lambda: dlq_count(sqs, stack) == 2, timeout=5, what="both messages still in the DLQ")
    assert queue_depth(sqs, stack.dlq_url)[0] == 2  # visible again at once, not after a timeout


def test_dlq_show_prints_one_message(dead_letters, capsys):
    stack = dead_letters
    main(["dlq", "list", "--dlq-url", stack.dlq_url, "--json"])
    first = json.loads(capsys.readouterr().out)[0]["message_id"]
    assert main(["dlq", "show", first, "--dlq-url", stack.dlq_url]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["message_id"] == first
    assert shown["body"]["Records"][0]["eventSource"] == "aws:s3"
    assert main(["dlq", "show", "no-such-id", "--dlq-url", stack.dlq_url]) == 1


def test_redrive_moves_exactly_what_it_says_at_a_counted_rate(dead_letters, sqs, monkeypatch, capsys):
    stack = dead_letters
    sqs.purge_queue(QueueUrl=stack.queue_url)  # the s3:TestEvent
    tokens = []
    acquire = TokenBucket.acquire
    monkeypatch.setattr(TokenBucket, "acquire", lambda self, timeout=None: tokens.append(self.rate) or acquire(self))
    assert main(["redrive", "--from", stack.dlq_url, "--to", stack.queue_url, "--dry-run"]) == 0
    assert dlq_count(sqs, stack) == 2
    assert main(["redrive", "--from", stack.dlq_url, "--to", stack.queue_url, "--max", "1", "--rate", "5"]) == 0
    assert "1 moved" in capsys.readouterr().out
    assert tokens == [5.0]  # one token per message moved, from a bucket of the given rate
    assert dlq_count(sqs, stack) == 1
    moved = read_queue(sqs, stack.queue_url)
    assert len(moved) == 1
    assert not moved[0].attributes  # a fresh attempt: the old reason stays behind
    assert main(["redrive", "--from", stack.dlq_url, "--to", stack.queue_url]) == 0
    assert dlq_count(sqs, stack) == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["redrive", "--to", "garbage"],
        ["redrive", "--to", "https://sqs.eu-west-1.amazonaws.com/123456789012/q", "--rate", "0"],
        ["reprocess", "not-an-s3-url", "--queue-url", "https://sqs.eu-west-1.amazonaws.com/123456789012/q"],
        ["reprocess", "s3://Bad_Bucket/x", "--queue-url", "https://sqs.eu-west-1.amazonaws.com/123456789012/q"],
        ["dlq", "list", "--dlq-url", "nope"],
    ],
)
def test_bad_arguments_end_in_one_line_before_any_aws_call(argv, capsys):
    assert main(argv) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_reprocess_enqueues_the_real_event_shape(stack, s3, sqs, capsys):
    keys = ["r/plain.png", "r/with space.png", "r/plus+sign.png", "r/ünïcode ☃.png"]
    for key in keys:
        s3.put_object(Bucket=stack.source_bucket, Key=key, Body=synthetic_png(seed=3))
    s3.put_object(Bucket=stack.source_bucket, Key="elsewhere.png", Body=synthetic_png(seed=4))
    sqs.purge_queue(QueueUrl=stack.queue_url)
    assert main(["reprocess", f"s3://{stack.source_bucket}/r/", "--queue-url", stack.queue_url, "--dry-run"]) == 0
    assert sum(queue_depth(sqs, stack.queue_url)) == 0
    assert main(["reprocess", f"s3://{stack.source_bucket}/r/", "--queue-url", stack.queue_url]) == 0
    refs = [ref for m in read_queue(sqs, stack.queue_url) for ref in parse_body(m.body)]
    assert sorted(r.key for r in refs) == sorted(keys)
    assert {r.bucket for r in refs} == {stack.source_bucket}
    assert all(r.etag and r.event_name == "ObjectCreated:Put" for r in refs)


def test_reprocess_force_blurs_again_and_without_force_skips(stack, s3, sqs, make_settings, run_service):
    s3.put_object(Bucket=stack.source_bucket, Key="again/astronaut.png", Body=skimage_photo("astronaut.png"))
    runner = run_service(make_settings(stack))

    def head():
        return s3.head_object(Bucket=stack.output_bucket, Key="again/astronaut.png")["Metadata"]["write-id"]

    first = wait_for(lambda: _try(head), timeout=60, what="the first output")
    assert main(["reprocess", f"s3://{stack.source_bucket}/again/", "--queue-url", stack.queue_url]) == 0
    wait_for(lambda: runner.value("faceblur_photos_total", outcome="skipped_duplicate") == 1, timeout=60)
    assert head() == first
    assert main(["reprocess", f"s3://{stack.source_bucket}/again/", "--queue-url", stack.queue_url, "--force"]) == 0
    wait_for(lambda: runner.value("faceblur_photos_total", outcome="stored") == 2, timeout=60)
    assert head() != first


def _try(call):
    try:
        return call()
    except Exception:
        return None
