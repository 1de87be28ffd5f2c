"""The messages this worker holds, in one place: those in work (`processing`, until the handler returns) and those
not yet settled (`unsettled`, until deleted, returned or given a retry delay), the condition that wakes the poll
loop and the drain when either changes, and the visibility changes that must not overtake each other.

Lock order, the only one: the visibility lock, then the state lock (the condition). The state lock is never held
during an SQS call and never while taking the visibility lock. The visibility lock is held across SQS calls on
purpose: release() takes messages out of `unsettled` and sets their visibility under it, heartbeat() reads
`unsettled` and extends what it read under it, so a heartbeat never overwrites a retry delay or a return
(visibility 0) made a moment earlier.

What a settlement means is not decided here (settlement.py, settler.py); the only SQS call is set_visibility.
"""

from __future__ import annotations

import threading
import time

from worker.config import ServiceSettings
from worker.consumer.sqs import Message, Queue
from worker.telemetry import logs
from worker.telemetry.metrics import Metrics

log = logs.get("worker.consumer")


class InFlight:
    def __init__(self, queue: Queue, slots: int, service: ServiceSettings, metrics: Metrics) -> None:
        self.queue = queue
        self.slots = slots
        self.visibility_seconds = service.visibility_seconds
        self.max_processing_seconds = service.max_processing_seconds
        self.metrics = metrics
        self._visibility = threading.Lock()  # taken first (see the module docstring)
        self._state = threading.Condition()  # taken second; guards the two dicts
        self._processing: dict[str, Message] = {}  # receipt -> message, until its work is done
        self._unsettled: dict[str, Message] = {}  # receipt -> message, until deleted/returned

    # -- a message's life --------------------------------------------------------------------------------------
    def start(self, m: Message) -> None:
        """Received and handed to a worker: it takes a slot and is unsettled."""
        with self._state:
            self._processing[m.receipt] = m
            self._unsettled[m.receipt] = m
            self._gauge()

    def finish(self, m: Message) -> None:
        """Its work is done (its settlement is on the way): the slot is free."""
        with self._state:
            self._processing.pop(m.receipt, None)
            self._state.notify_all()

    def forget(self, messages: list[Message]) -> None:
        """Settled (or left to their visibility timeout): no longer tracked, no longer extended."""
        with self._state:
            for m in messages:
                self._unsettled.pop(m.receipt, None)
            self._gauge()
            self._state.notify_all()

    def release(self, messages: list[Message], seconds: int) -> None:
        """Stop tracking (so no heartbeat extends them again) and set their visibility, atomically with respect to
        heartbeats. If the call fails, the visibility already set still brings the messages back."""
        with self._visibility:
            with self._state:
                for m in messages:
                    self._unsettled.pop(m.receipt, None)
                self._gauge()
            self.queue.set_visibility(messages, seconds)

    def heartbeat(self, now: float) -> None:
        """Extend the visibility of every unsettled message received less than MAX_PROCESSING_SECONDS ago."""
        with self._visibility:
            with self._state:
                pending = list(self._unsettled.values())
            extend = [m for m in pending if now - m.received_at < self.max_processing_seconds]
            if extend:
                self.queue.set_visibility(extend, self.visibility_seconds)
                self.metrics.heartbeats.inc(len(extend))
        for m in pending:
            if m not in extend:
                log.warning("message over MAX_PROCESSING_SECONDS, no longer extended", message_id=m.message_id)

    # -- waiting -----------------------------------------------------------------------------------------------
    def wait_for_free_slot(self, timeout: float) -> int:
        """The number of free slots, waiting up to `timeout` for one when all are taken (0: none yet, or woken)."""
        with self._state:
            if len(self._processing) >= self.slots:
                self._state.wait(timeout=timeout)
            return max(0, self.slots - len(self._processing))

    def wait_for_work(self, deadline: float) -> list[Message]:
        """Wait until no work is in progress or the monotonic deadline passes; returns the messages still in work."""
        with self._state:
            while self._processing and time.monotonic() < deadline:
                self._state.wait(timeout=0.5)
            return list(self._processing.values())

    def wake(self) -> None:
        """Wake whoever waits (the poll loop waiting for a slot): something else changed, such as a stop."""
        with self._state:
            self._state.notify_all()

    def drained(self) -> bool:
        """Nothing left unsettled."""
        with self._state:
            return not self._unsettled

    @property
    def abandoned(self) -> int:
        """Messages still in work (after the drain: those returned to the queue unfinished)."""
        with self._state:
            return len(self._processing)

    def _gauge(self) -> None:
        self.metrics.in_flight.set(len(self._unsettled))
