"""The settler on in-memory queues: what is deleted, what reaches the DLQ with which attributes, which visibility a
retry gets, and what a failed delete or DLQ send leaves behind."""

from __future__ import annotations

import threading

import pytest
from helpers.memqueue import FakeClock, MemQueue, as_queue, sent_attributes

from worker.config import Settings
from worker.consumer.inflight import InFlight
from worker.consumer.settlement import Settlement
from worker.consumer.settler import Settler
from worker.consumer.sqs import Attr, Message
from worker.errors import CorruptImage, TransientError
from worker.telemetry.metrics import Metrics

SERVICE = Settings().service  # RETRY_BASE_SECONDS 10: a first retry waits 5-10 s


class Rig:
    def __init__(self, *, dlq: bool = True, messages: int = 3) -> None:
        self.clock = FakeClock()
        self.source = MemQueue("memory://source", clock=self.clock)
        self.dlq = MemQueue("memory://dlq", clock=self.clock) if dlq else None
        self.metrics = Metrics()
        self.inflight = InFlight(as_queue(self.source), 10, SERVICE, self.metrics)
        self.settler = Settler(
            as_queue(self.source), as_queue(self.dlq) if self.dlq else None, self.inflight, SERVICE, self.metrics
        )
        for i in range(messages):
            self.source.send(f'{{"n": {i}}}', {})
        self.received: list[Message] = []
        while len(self.received) < messages:  # at most 10 a receive, as SQS
            self.received += self.source.receive(messages, 0, now=0.0)
        for m in self.received:
            self.inflight.start(m)
            self.inflight.finish(m)

    def value(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def left(self) -> list[str]:
        return [s.message_id for s in self.source.stored()]


def _refused(m: Message) -> Settlement:
    return Settlement.failed(m, CorruptImage("broken header"), keys="a.jpg")


def test_done_and_refused_are_deleted_after_the_dlq_copy_and_a_retry_waits():
    rig = Rig()
    done, refused, retried = rig.received
    rig.settler.settle(
        [Settlement.done(done), _refused(refused), Settlement.failed(retried, TransientError("x", reason="s3_error"))]
    )
    # One delete call for both, the DLQ copy made before it.
    assert rig.source.calls.delete_batches == [[done.message_id, refused.message_id]]
    assert rig.left() == [retried.message_id]
    (copy,) = rig.dlq.stored()
    assert copy.body == refused.body
    assert sent_attributes(copy) == {
        Attr.REASON: "corrupt_image",
        Attr.ERROR: "broken header",
        Attr.SOURCE_MESSAGE_ID: refused.message_id,
        Attr.RECEIVE_COUNT: "1",
        Attr.FAILED_KEYS: "a.jpg",
    }
    ((mid, seconds),) = rig.source.calls.visibility
    assert mid == retried.message_id
    assert SERVICE.retry_base_seconds / 2 <= seconds <= SERVICE.retry_base_seconds
    assert rig.source.visible_in(retried.message_id) == seconds
    assert rig.inflight.drained()
    assert rig.value("faceblur_messages_total", outcome="done") == 1
    assert rig.value("faceblur_messages_total", outcome="dead_lettered") == 1
    assert rig.value("faceblur_messages_total", outcome="retried") == 1
    assert rig.value("faceblur_dlq_sends_total", reason="corrupt_image") == 1
    assert rig.value("faceblur_retries_total", reason="s3_error") == 1


@pytest.mark.parametrize("dlq", [True, False], ids=["dlq send fails", "no dlq"])
def test_a_refusal_whose_copy_was_not_sent_is_retried_never_deleted(dlq):
    rig = Rig(dlq=dlq, messages=1)
    if rig.dlq is not None:
        rig.dlq.send_error = RuntimeError("SQS unavailable")
    (m,) = rig.received
    rig.settler.settle([_refused(m)])
    assert rig.source.calls.deleted == []
    assert rig.left() == [m.message_id]
    ((mid, seconds),) = rig.source.calls.visibility
    assert (mid, SERVICE.retry_base_seconds / 2 <= seconds <= SERVICE.retry_base_seconds) == (m.message_id, True)
    assert rig.dlq is None or rig.dlq.stored() == []
    assert rig.value("faceblur_retries_total", reason="dlq_send_failed") == 1
    assert rig.value("faceblur_messages_total", outcome="retried") == 1
    assert rig.value("faceblur_messages_total", outcome="dead_lettered") == 0
    assert rig.value("faceblur_dlq_sends_total", reason="corrupt_image") == 0


def test_a_failed_delete_leaves_the_message_to_its_visibility_timeout():
    rig = Rig(messages=2)
    kept, deleted = rig.received
    rig.source.fail_deletes.add(kept.message_id)
    rig.settler.settle([Settlement.done(kept), Settlement.done(deleted)])
    assert rig.source.calls.deleted == [deleted.message_id]
    assert rig.left() == [kept.message_id]
    assert rig.source.calls.visibility == []  # not returned at once: it comes back when its visibility runs out
    assert rig.inflight.drained()  # no longer extended by the heartbeat
    rig.clock.advance(rig.source.visibility_seconds)
    (again,) = rig.source.receive(10, 0, now=0.0)
    assert (again.message_id, again.receive_count) == (kept.message_id, 2)


def test_the_thread_settles_in_batches_of_ten_and_stops_when_halted_and_idle():
    rig = Rig(messages=12)
    for m in rig.received:
        rig.settler.put(Settlement.done(m))
    halt = threading.Event()
    halt.set()  # already halted: it still settles everything waiting first
    thread = threading.Thread(target=rig.settler.run, args=(halt,))
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert [len(b) for b in rig.source.calls.delete_batches] == [10, 2]
    assert rig.left() == []
    assert rig.settler.idle()
    assert rig.inflight.drained()
