"""Carrying out settlements, in batches, on a thread of its own: deletes in one batch call, retries as a visibility
delay (`retry_delay`), DLQ sends before the delete. What each settlement means is decided in settlement.py; what
is still held is InFlight's (inflight.py)."""

from __future__ import annotations

import queue as stdqueue
import threading

from worker.config import ServiceSettings
from worker.consumer.inflight import InFlight
from worker.consumer.settlement import Action, MessageOutcome, Settlement, retry_delay
from worker.consumer.sqs import Queue
from worker.telemetry import logs
from worker.telemetry.metrics import Metrics

log = logs.get("worker.consumer")

BATCH = 10  # SQS's most entries in one DeleteMessageBatch


class Settler:
    def __init__(
        self, source: Queue, dlq: Queue | None, inflight: InFlight, service: ServiceSettings, metrics: Metrics
    ) -> None:
        self.source = source
        self.dlq = dlq
        self.inflight = inflight
        self.retry_base_seconds = service.retry_base_seconds
        self.retry_max_seconds = service.retry_max_seconds
        self.metrics = metrics
        self._pending: stdqueue.Queue[Settlement] = stdqueue.Queue()

    def put(self, s: Settlement) -> None:
        self._pending.put(s)

    def idle(self) -> bool:
        """No settlement waiting to be carried out."""
        return self._pending.empty()

    def run(self, halt: threading.Event) -> None:
        """The settler thread: up to BATCH settlements at a time, until `halt` is set and nothing is waiting."""
        while True:
            try:
                first = self._pending.get(timeout=0.2)
            except stdqueue.Empty:
                if halt.is_set():
                    return
                continue
            batch = [first]
            while len(batch) < BATCH:
                try:
                    batch.append(self._pending.get_nowait())
                except stdqueue.Empty:
                    break
            self.settle(batch)

    def settle(self, batch: list[Settlement]) -> None:
        """One batch: DLQ copies sent, retries given their delay, then every delete in one call."""
        deletes = []
        for s in batch:
            if s.action is Action.DEAD_LETTER:
                s = s.after_dlq_send(self._dead_letter(s))
            if s.action is Action.RETRY:
                self._retry(s)
            else:
                deletes.append(s)
        failed = {m.receipt for m in self.source.delete([s.message for s in deletes])}
        for s in deletes:
            if s.message.receipt in failed:
                # Left to its visibility timeout: the message returns (outputs are idempotent).
                log.warning("delete failed", message_id=s.message.message_id)
            self.metrics.messages.labels(s.outcome).inc()
        self.inflight.forget([s.message for s in batch])

    def _retry(self, s: Settlement) -> None:
        delay = retry_delay(s.message.receive_count, self.retry_base_seconds, self.retry_max_seconds)
        self.inflight.release([s.message], delay)
        self.metrics.retries.labels(s.reason).inc()
        self.metrics.messages.labels(MessageOutcome.RETRIED).inc()
        log.info(
            "message returned for retry",
            message_id=s.message.message_id,
            reason=s.reason,
            receive_count=s.message.receive_count,
            retry_in_s=delay,
        )

    def _dead_letter(self, s: Settlement) -> bool:
        """Send the DLQ copy; False if there is no DLQ or the send failed."""
        if self.dlq is None:
            return False
        try:
            self.dlq.send(s.message.body, s.dead_letter_attributes())
        except Exception as exc:
            log.error("DLQ send failed", message_id=s.message.message_id, error=str(exc))
            return False
        self.metrics.dlq.labels(s.reason).inc()
        log.warning("message sent to DLQ", message_id=s.message.message_id, reason=s.reason, keys=s.keys, error=s.error)
        return True
