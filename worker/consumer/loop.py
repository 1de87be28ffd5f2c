"""The consumer: one long poll at a time, never more messages than free slots, a heartbeat for work in
progress, settlement in batches, and a two-stage shutdown under one deadline.

Threads: the poll loop (caller's thread), a pool of WORKER_CONCURRENCY photo workers (each runs handler.py on one
message), a settler (batch deletes, retries, DLQ sends) and a housekeeper (visibility heartbeat, queue depth).
"""

from __future__ import annotations

import queue as stdqueue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from worker.config import Settings
from worker.consumer.handler import Handler
from worker.consumer.settlement import Action, MessageOutcome, Settlement, retry_delay
from worker.consumer.sqs import Message, Queue
from worker.telemetry import logs

log = logs.get("worker.consumer")


class Consumer:
    def __init__(self, settings: Settings, handler: Handler, source: Queue, dlq: Queue | None) -> None:
        self.svc = settings.service
        self.handler = handler
        self.source = source
        self.dlq = dlq
        self.metrics = handler.metrics
        self.slots = settings.concurrency
        self.pool = ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="photo")
        self._lock = threading.Condition()
        self._processing: dict[str, Message] = {}  # receipt -> message, until its work is done
        self._unsettled: dict[str, Message] = {}  # receipt -> message, until deleted/returned
        self._settle_q: stdqueue.Queue[Settlement] = stdqueue.Queue()
        self.stopping = threading.Event()  # stop receiving
        self.stopped = threading.Event()  # everything settled, threads done
        self._halt = threading.Event()  # tells the settler and housekeeper to finish
        # Serialises visibility changes: a heartbeat must never overwrite a retry delay or a return (visibility 0)
        # that the settler or the drain made a moment earlier.
        self._visibility_lock = threading.Lock()
        self.last_tick = time.monotonic()
        self.ready = False
        self.metrics.pool_size.set(self.slots)

    # -- health ------------------------------------------------------------------------------------------
    def healthy(self) -> tuple[bool, str]:
        idle = time.monotonic() - self.last_tick
        if idle > self.svc.stuck_seconds:
            return False, f"poll loop silent for {idle:.0f} s"
        return True, "ok"

    def is_ready(self) -> tuple[bool, str]:
        if self.stopping.is_set():
            return False, "shutting down"
        return (True, "ok") if self.ready else (False, "starting")

    # -- the loop ----------------------------------------------------------------------------------------
    def run(self, until_idle: bool = False) -> None:
        """Poll until stop() (or, with until_idle, until a poll returns nothing and no work is left)."""
        threads = [
            threading.Thread(target=self._settler, name="settler", daemon=True),
            threading.Thread(target=self._housekeeper, name="housekeeper", daemon=True),
        ]
        for t in threads:
            t.start()
        self.ready = True
        log.info("consumer started", queue=self.source.url, concurrency=self.slots, detector=self.handler.detector.name)
        try:
            while not self.stopping.is_set():
                free = self._wait_for_free_slot()
                if free == 0:
                    continue
                try:
                    messages = self.source.receive(free, self.svc.wait_seconds, time.monotonic())
                except Exception as exc:  # network or throttling beyond botocore's retries: keep polling
                    self.metrics.receive_errors.inc()
                    log.warning("receive failed", error=str(exc))
                    self.stopping.wait(1.0)
                    continue
                finally:
                    self._tick()
                if self.stopping.is_set():
                    self._return(messages)  # arrived after the stop signal: back to the queue at once
                    break
                for m in messages:
                    self._start(m)
                if until_idle and not messages and not self._unsettled:
                    break
        finally:
            if self.stopping.is_set():
                log.info("stop requested: finishing in-flight work", grace_s=self.svc.shutdown_grace_seconds)
            self._drain()
            self._halt.set()
            for t in threads:
                t.join(timeout=10)
            self.stopped.set()

    def stop(self) -> None:
        self.stopping.set()
        with self._lock:
            self._lock.notify_all()

    def _tick(self) -> None:
        self.last_tick = time.monotonic()
        self.metrics.last_poll.set(time.time())

    def _wait_for_free_slot(self) -> int:
        with self._lock:
            while len(self._processing) >= self.slots and not self.stopping.is_set():
                self._tick()  # waiting for a slot is not being stuck
                self._lock.wait(timeout=1.0)
            return self.slots - len(self._processing)

    def _start(self, m: Message) -> None:
        with self._lock:
            self._processing[m.receipt] = m
            self._unsettled[m.receipt] = m
            self.metrics.in_flight.set(len(self._unsettled))
        self.pool.submit(self._work, m)

    # -- one message -------------------------------------------------------------------------------------
    def _work(self, m: Message) -> None:
        settlement = Settlement.retry(m, "internal_error", "unhandled")
        try:
            settlement = self.handler.handle(m)
        except BaseException as exc:  # never lose a message to a bug: it goes back to the queue
            log.exception("unexpected error", message_id=m.message_id)
            settlement = Settlement.retry(m, type(exc).__name__, str(exc))
        finally:
            with self._lock:
                self._processing.pop(m.receipt, None)
                self._lock.notify_all()
            self._settle_q.put(settlement)

    # -- settlement --------------------------------------------------------------------------------------
    def _settler(self) -> None:
        while True:
            try:
                first = self._settle_q.get(timeout=0.2)
            except stdqueue.Empty:
                if self._halt.is_set():
                    return
                continue
            batch = [first]
            while len(batch) < 10:
                try:
                    batch.append(self._settle_q.get_nowait())
                except stdqueue.Empty:
                    break
            self._settle(batch)

    def _drained(self) -> bool:
        with self._lock:
            return not self._unsettled and self._settle_q.empty()

    def _settle(self, batch: list[Settlement]) -> None:
        deletes = [s for s in batch if s.action is Action.DELETE]
        for s in batch:
            if s.action is Action.DEAD_LETTER:
                if self._dead_letter(s):
                    deletes.append(s)
                else:
                    self._retry(s.dlq_unsent())
            elif s.action is Action.RETRY:
                self._retry(s)
        failed = {m.receipt for m in self.source.delete([s.message for s in deletes])}
        for s in deletes:
            if s.message.receipt in failed:
                # Stays unsettled: visibility runs out and the message returns (outputs are idempotent).
                log.warning("delete failed", message_id=s.message.message_id)
            self.metrics.messages.labels(s.outcome).inc()
        self._forget([s.message for s in batch])

    def _release(self, messages: list[Message], seconds: int) -> None:
        """Stop tracking (so no heartbeat extends them again) and set their visibility, atomically w.r.t. heartbeats.
        If the call fails, the visibility already set still brings the messages back."""
        with self._visibility_lock:
            with self._lock:
                for m in messages:
                    self._unsettled.pop(m.receipt, None)
                self.metrics.in_flight.set(len(self._unsettled))
            self.source.set_visibility(messages, seconds)

    def _retry(self, s: Settlement) -> None:
        delay = retry_delay(s.message.receive_count, self.svc.retry_base_seconds, self.svc.retry_max_seconds)
        self._release([s.message], delay)
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

    def _forget(self, messages: list[Message]) -> None:
        with self._lock:
            for m in messages:
                self._unsettled.pop(m.receipt, None)
            self.metrics.in_flight.set(len(self._unsettled))
            self._lock.notify_all()

    def _return(self, messages: list[Message]) -> None:
        if not messages:
            return
        self._release(messages, 0)
        self.metrics.messages.labels(MessageOutcome.RETURNED_ON_SHUTDOWN).inc(len(messages))
        log.info("messages returned to the queue", count=len(messages))

    # -- heartbeat and queue depth -----------------------------------------------------------------------
    def _housekeeper(self) -> None:
        next_beat = time.monotonic() + self.svc.heartbeat_seconds
        next_depth = time.monotonic()
        while not self._halt.wait(0.5):
            now = time.monotonic()
            if now >= next_beat:
                self.heartbeat(now)
                next_beat = now + self.svc.heartbeat_seconds
            if now >= next_depth:
                self._read_depth()
                next_depth = now + self.svc.queue_depth_seconds

    def heartbeat(self, now: float) -> None:
        with self._visibility_lock:
            with self._lock:
                pending = list(self._unsettled.values())
            extend = [m for m in pending if now - m.received_at < self.svc.max_processing_seconds]
            if extend:
                self.source.set_visibility(extend, self.svc.visibility_seconds)
                self.metrics.heartbeats.inc(len(extend))
        for m in pending:
            if m not in extend:
                log.warning("message over MAX_PROCESSING_SECONDS, no longer extended", message_id=m.message_id)

    def _read_depth(self) -> None:
        for name, q in (("source", self.source), ("dlq", self.dlq)):
            if q is None:
                continue
            try:
                for state, n in q.depth().items():
                    self.metrics.queue.labels(name, state).set(n)
            except Exception as exc:
                log.debug("queue depth unavailable", queue=name, error=str(exc))

    # -- shutdown ----------------------------------------------------------------------------------------
    def _drain(self) -> None:
        """Finish in-flight work within the grace period, then return whatever is left to the queue."""
        deadline = time.monotonic() + self.svc.shutdown_grace_seconds
        with self._lock:
            while self._processing and time.monotonic() < deadline:
                self._lock.wait(timeout=0.5)
            unfinished = list(self._processing.values())
        if unfinished:
            log.warning("grace period over, returning unfinished messages", count=len(unfinished))
            self._return(unfinished)
        # Let the settler flush what finished in time.
        while not self._drained() and time.monotonic() < deadline + 5:
            time.sleep(0.05)
        self.pool.shutdown(wait=False, cancel_futures=True)
        log.info("consumer stopped", unfinished=len(unfinished))

    @property
    def abandoned(self) -> int:
        with self._lock:
            return len(self._processing)
