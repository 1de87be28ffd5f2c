"""The in-flight registry on an in-memory queue: slots, the heartbeat, releases, and its one lock order keeping a
heartbeat from overwriting a release."""

from __future__ import annotations

import threading
import time

from helpers.memqueue import FakeClock, MemQueue, as_queue

from worker.config import Settings
from worker.consumer.inflight import InFlight
from worker.telemetry.metrics import Metrics

SERVICE = Settings().service


def _setup(slots: int = 2, count: int = 2) -> tuple[MemQueue, InFlight, list]:
    clock = FakeClock()
    q = MemQueue(clock=clock, visibility_seconds=30)
    for i in range(count):
        q.send(f"body {i}", {})
    inflight = InFlight(as_queue(q), slots, SERVICE, Metrics())
    return q, inflight, q.receive(count, 0, now=100.0)


def test_slots_are_taken_by_work_and_freed_when_it_finishes():
    _, inflight, (a, b) = _setup()
    assert inflight.wait_for_free_slot(timeout=0) == 2
    inflight.start(a)
    inflight.start(b)
    began = time.monotonic()
    assert inflight.wait_for_free_slot(timeout=0.2) == 0  # full: waits, then says so
    assert time.monotonic() - began >= 0.15
    threading.Timer(0.1, inflight.finish, (a,)).start()
    assert inflight.wait_for_free_slot(timeout=5) == 1  # woken by the finish, not by the timeout
    assert inflight.abandoned == 1
    assert not inflight.drained()  # finished work is still unsettled until forgotten or released
    inflight.forget([a, b])
    assert inflight.drained()
    assert inflight.metrics.registry.get_sample_value("faceblur_in_flight_messages") == 0


def test_the_heartbeat_extends_unsettled_messages_until_max_processing_seconds():
    q, inflight, (a, b) = _setup()
    b.received_at = 100.0 - SERVICE.max_processing_seconds  # in work for too long: left to expire
    inflight.start(a)
    inflight.start(b)
    inflight.heartbeat(now=100.0 + 1)
    assert q.calls.visibility == [(a.message_id, SERVICE.visibility_seconds)]
    assert q.visible_in(a.message_id) == SERVICE.visibility_seconds
    assert q.visible_in(b.message_id) == 30  # the queue's own timeout, unchanged
    assert inflight.metrics.registry.get_sample_value("faceblur_visibility_extensions_total") == 1


def test_a_released_message_is_no_longer_extended():
    q, inflight, (a, b) = _setup()
    inflight.start(a)
    inflight.start(b)
    inflight.finish(a)
    inflight.release([a], 0)  # returned: visible at once
    assert q.visible_in(a.message_id) == 0
    inflight.heartbeat(now=101.0)
    assert q.calls.visibility == [(a.message_id, 0), (b.message_id, SERVICE.visibility_seconds)]
    assert q.visible_in(a.message_id) == 0
    assert q.depth() == {"visible": 1, "in_flight": 1, "delayed": 0}


def test_a_heartbeat_in_progress_never_overwrites_a_release():
    """The heartbeat read the message as unsettled and is inside its SQS call when the settler releases it: the
    release waits for the visibility lock, so its delay is the last word."""
    q, inflight, (a, _) = _setup()
    inflight.start(a)
    in_call, go_on = threading.Event(), threading.Event()
    real = q.set_visibility

    def slow_first_call(messages, seconds):
        if not in_call.is_set():
            in_call.set()
            go_on.wait(5)
        return real(messages, seconds)

    q.set_visibility = slow_first_call  # type: ignore[method-assign]
    beat = threading.Thread(target=inflight.heartbeat, args=(101.0,))
    beat.start()
    assert in_call.wait(5)
    release = threading.Thread(target=inflight.release, args=([a], 7))
    release.start()
    release.join(0.2)
    assert release.is_alive(), "the release must wait for the heartbeat's call"
    go_on.set()
    beat.join(5)
    release.join(5)
    assert q.calls.visibility == [(a.message_id, SERVICE.visibility_seconds), (a.message_id, 7)]
    assert q.visible_in(a.message_id) == 7


def test_the_drain_waits_for_work_until_its_deadline():
    _, inflight, (a, b) = _setup()
    inflight.start(a)
    inflight.start(b)
    threading.Timer(0.1, inflight.finish, (a,)).start()
    unfinished = inflight.wait_for_work(deadline=time.monotonic() + 0.8)
    assert [m.message_id for m in unfinished] == [b.message_id]
    inflight.finish(b)
    assert inflight.wait_for_work(deadline=time.monotonic() + 5) == []
    assert inflight.abandoned == 0
