"""The in-memory queue the unit tests use (helpers/memqueue.py) behaves as SQS does for every call the consumer
makes: the same scenario on it and on a moto server queue, driven through worker.consumer.sqs.Queue, sees the same."""

from __future__ import annotations

import time
import uuid
from typing import Any

from helpers.memqueue import MemQueue

from worker.consumer.sqs import Attr, Message, Queue

VISIBILITY = 30


def _scenario(q: Any) -> list[Any]:
    """What the consumer's calls return, with message ids and receipts replaced by bodies (they differ)."""
    seen: list[Any] = []

    def received(messages: list[Message]) -> list[tuple[str, int, dict[str, str]]]:
        return sorted(
            (m.body, m.receive_count, {a: m.attribute(a) for a in (Attr.REASON, Attr.ERROR, Attr.FAILED_KEYS)})
            for m in messages
        )

    q.send("first", {Attr.REASON: "corrupt_image", Attr.ERROR: ""})  # an empty value is sent as "-"
    q.send("second", {Attr.REASON: "x" * 1100})  # cut at 1024 characters
    seen.append(q.depth())
    got = q.receive(10, 1, time.monotonic())
    seen.append(received(got))
    seen.append(q.depth())
    first, second = sorted(got, key=lambda m: m.body)
    seen.append(q.set_visibility([first], 0))  # returned at once
    seen.append(q.depth())
    again = q.receive(10, 1, time.monotonic())
    seen.append(received(again))  # only the returned one, received a second time
    seen.append([m.body for m in q.delete([again[0], second])])
    seen.append(q.depth())
    seen.append(q.receive(10, 1, time.monotonic()))  # nothing left
    q.send("third", {})
    (third,) = q.receive(1, 1, time.monotonic())
    seen.append(received([third]))
    seen.append(q.set_visibility([third], 60))
    seen.append(q.depth())
    bogus = Message("none", "not-a-receipt-handle", "bogus", 1)
    seen.append([m.body for m in q.delete([bogus, third])])  # the bogus entry fails, the real one is deleted
    seen.append(q.depth())
    return seen


def test_the_in_memory_queue_behaves_as_an_sqs_queue(sqs):
    url = sqs.create_queue(
        QueueName=f"parity-{uuid.uuid4().hex[:8]}", Attributes={"VisibilityTimeout": str(VISIBILITY)}
    )["QueueUrl"]
    try:
        on_sqs = _scenario(Queue(sqs, url))
    finally:
        sqs.delete_queue(QueueUrl=url)
    in_memory = _scenario(MemQueue(visibility_seconds=VISIBILITY))
    assert in_memory == on_sqs
    # And what was seen is what the consumer relies on, not two equal surprises.
    assert on_sqs[1][0] == ("first", 1, {Attr.REASON: "corrupt_image", Attr.ERROR: "-", Attr.FAILED_KEYS: ""})
    assert on_sqs[1][1][2][Attr.REASON] == "x" * 1024
    assert on_sqs[5] == [("first", 2, {Attr.REASON: "corrupt_image", Attr.ERROR: "-", Attr.FAILED_KEYS: ""})]
    assert on_sqs[-2:] == [["bogus"], {"visible": 0, "in_flight": 0, "delayed": 0}]
