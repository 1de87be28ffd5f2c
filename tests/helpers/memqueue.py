"""An SQS queue in memory with worker.consumer.sqs.Queue's interface (receive, delete, set_visibility, send, depth,
url), for testing the handler, the settler and the in-flight registry without servers. It behaves as SQS does for
those calls (tests/integration/test_memqueue_parity.py holds it to a moto queue): a received message is invisible
for the queue's visibility timeout, counts its receives and gets a new receipt each time; a visibility change
starts from now; delete and set_visibility return the messages whose entry failed (here also any receipt but the
latest: SQS may accept a superseded one); sent attributes come back as SQS returns them. It records every call,
and can be told to fail: deletes of given message ids, any send.

Time is the `clock` given (time.monotonic by default); a FakeClock lets a test move it on.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker.consumer.sqs import Message, _attributes


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Stored:
    message_id: str
    body: str
    attributes: dict[str, dict[str, str]]
    receive_count: int = 0
    visible_at: float = 0.0
    receipt: str = ""  # the latest receive's


@dataclass
class Calls:
    received: list[str] = field(default_factory=list)  # message ids, in order
    deleted: list[str] = field(default_factory=list)  # message ids actually deleted
    delete_batches: list[list[str]] = field(default_factory=list)  # message ids of each delete call
    visibility: list[tuple[str, int]] = field(default_factory=list)  # (message id, seconds) of each change made
    sent: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (body, attributes as given)


class MemQueue:
    def __init__(
        self,
        url: str = "memory://queue",
        visibility_seconds: int = 30,
        clock: Callable[[], float] = time.monotonic,
        max_wait: float = 0.05,
    ) -> None:
        self.url = url
        self.visibility_seconds = visibility_seconds
        self.clock = clock
        self.max_wait = max_wait  # a long poll of an empty queue waits at most this long in real time
        self.calls = Calls()
        self.fail_deletes: set[str] = set()  # message ids whose delete entries fail (the message stays)
        self.send_error: Exception | None = None  # raised by send() when set
        self._messages: dict[str, Stored] = {}  # message id -> message, in send order
        self._ids = itertools.count(1)
        self._receipts = itertools.count(1)
        self._cond = threading.Condition()

    # -- the Queue interface ---------------------------------------------------------------------------------
    def receive(self, max_messages: int, wait_seconds: int, now: float, visibility: int | None = None) -> list[Message]:
        with self._cond:
            visible = self._visible()
            if not visible and wait_seconds > 0:
                self._cond.wait(min(wait_seconds, self.max_wait))
                visible = self._visible()
            out = []
            for stored in visible[: max(1, min(10, max_messages))]:
                stored.receive_count += 1
                stored.receipt = f"{stored.message_id}#{next(self._receipts)}"
                stored.visible_at = self.clock() + (self.visibility_seconds if visibility is None else visibility)
                self.calls.received.append(stored.message_id)
                out.append(
                    Message(
                        message_id=stored.message_id,
                        receipt=stored.receipt,
                        body=stored.body,
                        receive_count=stored.receive_count,
                        received_at=now,
                        attributes={k: dict(v) for k, v in stored.attributes.items()},
                    )
                )
            return out

    def delete(self, messages: list[Message]) -> list[Message]:
        with self._cond:
            self.calls.delete_batches.append([m.message_id for m in messages])
            failed = []
            for m in messages:
                stored = self._by_receipt(m.receipt)
                if m.message_id in self.fail_deletes or stored is None:
                    failed.append(m)
                    continue
                del self._messages[stored.message_id]
                self.calls.deleted.append(stored.message_id)
            return failed

    def set_visibility(self, messages: list[Message], seconds: int) -> list[Message]:
        with self._cond:
            failed = []
            for m in messages:
                stored = self._by_receipt(m.receipt)
                if stored is None:
                    failed.append(m)
                    continue
                stored.visible_at = self.clock() + seconds
                self.calls.visibility.append((m.message_id, seconds))
            self._cond.notify_all()
            return failed

    def send(self, body: str, attributes: dict[str, str]) -> None:
        if self.send_error is not None:
            raise self.send_error
        with self._cond:
            self.calls.sent.append((body, dict(attributes)))
            message_id = f"mem-{next(self._ids)}"
            self._messages[message_id] = Stored(message_id, body, _attributes(attributes), visible_at=self.clock())
            self._cond.notify_all()

    def depth(self) -> dict[str, int]:
        with self._cond:
            visible = len(self._visible())
            return {"visible": visible, "in_flight": len(self._messages) - visible, "delayed": 0}

    # -- for the tests ---------------------------------------------------------------------------------------
    def stored(self) -> list[Stored]:
        """Every message the queue holds, visible or not, in send order."""
        with self._cond:
            return list(self._messages.values())

    def visible_in(self, message_id: str) -> float:
        """Seconds until the message is visible again (<= 0: visible now)."""
        with self._cond:
            return self._messages[message_id].visible_at - self.clock()

    def _visible(self) -> list[Stored]:
        now = self.clock()
        return [s for s in self._messages.values() if s.visible_at <= now]

    def _by_receipt(self, receipt: str) -> Stored | None:
        return next((s for s in self._messages.values() if s.receipt == receipt), None)


def sent_attributes(stored: Stored) -> dict[str, str]:
    """A stored message's attributes as the worker reads them (Message.attribute)."""
    return {k: v.get("StringValue", "") for k, v in stored.attributes.items()}


def as_queue(q: MemQueue) -> Any:
    """A MemQueue where a worker.consumer.sqs.Queue is expected (the same calls, not the same class)."""
    return q
