"""The message handler without servers: the rules decided before any S3 call, and how a message's
records combine into one settlement; then those settlements carried out by the settler, and the whole consumer, on
in-memory queues (helpers/memqueue.py). What reaches S3 is tested end to end on moto (tests/integration)."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest
from helpers.memqueue import MemQueue, as_queue, sent_attributes

from worker.config import Settings
from worker.consumer.handler import Handler
from worker.consumer.inflight import InFlight
from worker.consumer.loop import Consumer
from worker.consumer.settlement import Action, MessageOutcome
from worker.consumer.settler import Settler
from worker.consumer.sqs import Attr, Message
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


# -- the handler's settlements carried out, on in-memory queues --------------------------------------------------------
def _queues() -> tuple[MemQueue, MemQueue]:
    source, dlq = MemQueue("memory://source"), MemQueue("memory://dlq")
    source.send("{not json", {})
    source.send(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "uploads"}), {})
    source.send(_records(("theirs", "a.jpg"), ("other", "b.jpg")), {Attr.FORCE: "true"})
    source.send(_records(("blurred", "out/a.jpg")), {})
    return source, dlq


def _dlq_copies(dlq: MemQueue) -> dict[str, dict[str, str]]:
    return {a[Attr.REASON]: a for a in (sent_attributes(s) for s in dlq.stored())}


def test_settled_through_the_settler_every_message_is_deleted_and_the_refused_ones_copied_to_the_dlq(handler):
    source, dlq = _queues()
    inflight = InFlight(as_queue(source), 4, handler.settings.service, handler.metrics)
    settler = Settler(as_queue(source), as_queue(dlq), inflight, handler.settings.service, handler.metrics)
    received = source.receive(10, 0, now=0.0)
    for m in received:
        inflight.start(m)
    settler.settle([handler.handle(m) for m in received])
    assert source.stored() == []
    assert sorted(source.calls.deleted) == sorted(m.message_id for m in received)
    copies = _dlq_copies(dlq)
    assert set(copies) == {"malformed_message", "foreign_bucket"}
    assert copies["foreign_bucket"][Attr.FAILED_KEYS] == "a.jpg,b.jpg"
    assert copies["foreign_bucket"][Attr.SOURCE_MESSAGE_ID] == received[2].message_id
    assert source.calls.visibility == []


def test_the_consumer_runs_on_in_memory_queues_until_idle(handler):
    """The whole loop (poll, pool, settler, housekeeper, drain) without a server."""
    source, dlq = _queues()
    consumer = Consumer(handler.settings, handler, as_queue(source), as_queue(dlq))
    runner = threading.Thread(target=consumer.run, kwargs={"until_idle": True})
    runner.start()
    runner.join(30)
    assert not runner.is_alive()
    assert consumer.stopped.is_set()
    assert consumer.abandoned == 0
    assert source.stored() == []
    assert set(_dlq_copies(dlq)) == {"malformed_message", "foreign_bucket"}
    value = handler.metrics.registry.get_sample_value
    assert value("faceblur_messages_total", {"outcome": "dead_lettered"}) == 2
    assert value("faceblur_messages_total", {"outcome": "ignored"}) == 1
    assert value("faceblur_messages_total", {"outcome": "done"}) == 1
