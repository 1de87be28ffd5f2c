"""The message handler without servers or threads: the rules decided before any S3 call, and how a message's
records combine into one settlement. What reaches S3 is tested end to end on moto (tests/integration)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from worker.config import Settings
from worker.consumer.handler import Handler
from worker.consumer.settlement import Action, MessageOutcome
from worker.consumer.sqs import Message
from worker.storage import OutputTarget, Storage
from worker.telemetry.metrics import Metrics


class NoS3:
    """Any S3 call fails the test: these messages must be settled before one is made."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"S3 called: {name}")


class NoDetector:
    name = "none"

    def detect(self, frame: object) -> list[object]:
        raise AssertionError("detector called")


@pytest.fixture
def handler() -> Handler:
    base = Settings()
    settings = replace(base, service=replace(base.service, source_buckets="uploads"))
    storage = Storage(NoS3(), OutputTarget("blurred", "out/", "AES256", ""), 1 << 20)
    return Handler(settings, NoDetector(), storage, Metrics())  # type: ignore[arg-type]


def _message(body: str) -> Message:
    return Message("id-1", "receipt-1", body, 1)


def _records(*where: tuple[str, str]) -> str:
    return json.dumps(
        {
            "Records": [
                {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": b}, "object": {"key": k, "size": 9}}}
                for b, k in where
            ]
        }
    )


def test_a_malformed_body_goes_to_the_dlq(handler):
    settled = handler.handle(_message("{not json"))
    assert (settled.action, settled.reason) == (Action.DEAD_LETTER, "malformed_message")


def test_s3s_test_event_is_deleted_as_nothing_to_do(handler):
    body = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "uploads"})
    settled = handler.handle(_message(body))
    assert (settled.action, settled.outcome) == (Action.DELETE, MessageOutcome.IGNORED)


def test_buckets_we_do_not_own_are_refused_before_any_s3_call_with_every_key(handler):
    settled = handler.handle(_message(_records(("theirs", "a.jpg"), ("other", "b.jpg"))))
    assert (settled.action, settled.reason, settled.keys) == (Action.DEAD_LETTER, "foreign_bucket", "a.jpg,b.jpg")
    assert handler.metrics.registry.get_sample_value("faceblur_photos_total", {"outcome": "failed"}) == 2


def test_our_own_outputs_are_skipped_and_the_message_deleted(handler):
    settled = handler.handle(_message(_records(("blurred", "out/a.jpg"))))
    assert (settled.action, settled.outcome) == (Action.DELETE, MessageOutcome.DONE)
