"""The consumer: one long poll at a time, never more messages than free slots, a worker pool, and a two-stage
shutdown under one deadline. What is held is InFlight's (inflight.py), settling is the Settler's (settler.py), what
a message means is the Handler's (handler.py) and settlement.py's.

Threads: the poll loop (caller's thread), a pool of WORKER_CONCURRENCY photo workers (each runs handler.py on one
message), a settler (settler.py: batch deletes, retries, DLQ sends) and a housekeeper (visibility heartbeat, queue
depth).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from worker.config import Settings
from worker.consumer.handler import Handler
from worker.consumer.inflight import InFlight
from worker.consumer.settlement import MessageOutcome, Settlement
from worker.consumer.settler import Settler
from worker.consumer.sqs import Message, Queue
from worker.telemetry import logs

log = logs.get("worker.consumer")


class Consumer:
    def __init__(self, settings: Settings, handler: Handler, source: Queue, dlq: Queue | None) -> None:
        self.svc = settings.service
        self.handler = handler
        self.dlq = dlq
        self.metrics = handler.metrics
        self.slots = settings.concurrency
        self.pool = ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="photo")
        self.inflight = InFlight(source, self.slots, self.svc, self.metrics)
        self.settler = Settler(source, dlq, self.inflight, self.svc, self.metrics)
        self.source = source
        self.stopping = threading.Event()  # stop receiving
        self.stopped = threading.Event()  # everything settled, threads done
        self._halt = threading.Event()  # tells the settler and housekeeper to finish
        self.last_tick = time.monotonic()
        self.ready = False
        self.metrics.pool_size.set(self.slots)

    @property
    def source(self) -> Queue:
        return self._source

    @source.setter
    def source(self, queue: Queue) -> None:
        """One source queue for the poll, the heartbeat and the settler (replaced before run(), all three follow)."""
        self._source = self.inflight.queue = self.settler.source = queue

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
            threading.Thread(target=self.settler.run, args=(self._halt,), name="settler", daemon=True),
            threading.Thread(target=self._housekeeper, name="housekeeper", daemon=True),
        ]
        for t in threads:
            t.start()
        self.ready = True
        log.info("consumer started", queue=self.source.url, concurrency=self.slots, detector=self.handler.detector.name)
        try:
            while not self.stopping.is_set():
                free = self.inflight.wait_for_free_slot(timeout=1.0)
                if free == 0:
                    self._tick()  # waiting for a slot is not being stuck
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
                if until_idle and not messages and self.inflight.drained():
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
        self.inflight.wake()

    def _tick(self) -> None:
        self.last_tick = time.monotonic()
        self.metrics.last_poll.set(time.time())

    def _start(self, m: Message) -> None:
        self.inflight.start(m)
        self.pool.submit(self._work, m)

    def _work(self, m: Message) -> None:
        settlement = Settlement.unhandled(m)
        try:
            settlement = self.handler.handle(m)
        except BaseException as exc:  # never lose a message to a bug: it goes back to the queue
            log.exception("unexpected error", message_id=m.message_id)
            settlement = Settlement.unhandled(m, exc)
        finally:
            self.inflight.finish(m)
            self.settler.put(settlement)

    def _return(self, messages: list[Message]) -> None:
        if not messages:
            return
        self.inflight.release(messages, 0)
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
        self.inflight.heartbeat(now)

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
        unfinished = self.inflight.wait_for_work(deadline)
        if unfinished:
            log.warning("grace period over, returning unfinished messages", count=len(unfinished))
            self._return(unfinished)
        # Let the settler flush what finished in time.
        while not self._drained() and time.monotonic() < deadline + 5:
            time.sleep(0.05)
        self.pool.shutdown(wait=False, cancel_futures=True)
        log.info("consumer stopped", unfinished=len(unfinished))

    def _drained(self) -> bool:
        return self.inflight.drained() and self.settler.idle()

    @property
    def abandoned(self) -> int:
        return self.inflight.abandoned
