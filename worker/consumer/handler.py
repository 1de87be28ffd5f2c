"""One message to one settlement, with no threads of its own: the body parsed, every record checked against
SOURCE_BUCKETS, our own outputs skipped, `--force` read, one photo per object at a time, `process_object` run, and
the records' results combined by settlement.py's rules. The consumer only schedules (loop.py, inflight.py) and
settles (settler.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from worker.admission import MemoryBudget
from worker.config import Settings
from worker.consumer.settlement import Action, Settlement
from worker.consumer.sqs import Attr, Message
from worker.detect import Detector
from worker.errors import ForeignBucket, MalformedMessage
from worker.events import describe, parse_body
from worker.pipeline import Outcome, process_object
from worker.storage import Storage
from worker.telemetry import logs
from worker.telemetry.metrics import Metrics

log = logs.get("worker.consumer")


class Handler:
    def __init__(
        self,
        settings: Settings,
        detector: Detector,
        storage: Storage,
        metrics: Metrics,
        budget: MemoryBudget | None = None,
    ) -> None:
        self.settings = settings
        self.detector = detector
        self.storage = storage
        self.metrics = metrics
        self.budget = budget
        self._key_locks = KeyLocks()

    def handle(self, m: Message) -> Settlement:
        try:
            refs = parse_body(m.body)
        except MalformedMessage as exc:
            log.warning("malformed message", message_id=m.message_id, error=str(exc))
            return Settlement.failed(m, exc)
        if not refs:
            log.info("message ignored", message_id=m.message_id, why="test event or no created objects")
            return Settlement.ignored(m)
        refused: list[Settlement] = []
        force = m.attribute(Attr.FORCE) == "true"
        for ref in refs:
            if self._is_own_output(ref.bucket, ref.key):
                log.warning("ignored our own output", **describe(ref))
                continue
            try:
                if ref.bucket not in self.settings.source_buckets:
                    # A confused deputy otherwise: the event, not the operator, would choose what we read and
                    # publish. Refused before any S3 call.
                    raise ForeignBucket(f"bucket {ref.bucket!r} is not one of SOURCE_BUCKETS")
                # The same object twice in flight (a duplicate notification in one batch): the second waits, then
                # its idempotency check finds the first one's output.
                with self._key_locks.hold((ref.bucket, ref.key, ref.version_id, ref.etag)):
                    outcome = process_object(ref, self.storage, self.detector, self.settings, self.budget, force)
            except Exception as exc:
                settlement = Settlement.failed(m, exc, keys=ref.key)
                self.metrics.photos.labels("failed").inc()
                if settlement.action is Action.DEAD_LETTER:
                    log.warning(
                        "photo refused",
                        message_id=m.message_id,
                        reason=settlement.reason,
                        error=str(exc),
                        **describe(ref),
                    )
                    refused.append(settlement)
                    continue
                log.warning(
                    "photo failed, will retry",
                    message_id=m.message_id,
                    reason=settlement.reason,
                    error=str(exc),
                    receive_count=m.receive_count,
                    **describe(ref),
                )
                return settlement
            self._record(m, outcome)
        return Settlement.of_records(m, refused)

    def _is_own_output(self, bucket: str, key: str) -> bool:
        prefix = self.storage.target.prefix
        return bool(prefix) and bucket == self.storage.target.bucket and key.startswith(prefix)

    def _record(self, m: Message, o: Outcome) -> None:
        ref = o.ref
        if o.status == "skipped":
            self.metrics.photos.labels("skipped_duplicate").inc()
            log.info("photo already done", message_id=m.message_id, output_key=o.output_key, **describe(ref))
            return
        self.metrics.photos.labels("stored").inc()
        self.metrics.faces.observe(o.faces)
        for stage, seconds in o.timings.items():
            self.metrics.stage.labels(stage).observe(seconds)
        age = None
        if ref.event_time is not None:
            age = (datetime.now(UTC) - ref.event_time).total_seconds()
            if age >= 0:
                self.metrics.age.observe(age)
        log.info(
            "photo blurred",
            message_id=m.message_id,
            output_key=o.output_key,
            faces=o.faces,
            ms={k: round(v * 1000, 1) for k, v in o.timings.items()},
            age_s=round(age, 3) if age is not None else None,
            **describe(ref),
        )


class KeyLocks:
    """One lock per key, created on demand and dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[Any, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: Any) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)
