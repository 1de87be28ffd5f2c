"""Prometheus metrics, one registry per consumer (so tests and embedded stacks don't share counters).

Names and units follow Prometheus conventions: counters end in _total, durations are _seconds. Every label value
the worker knows of starts at 0, so `increase()` sees the first event; no `_created` series; the process's own
metrics (memory, CPU, file descriptors) and a build-info series are on the same registry.
"""

from __future__ import annotations

import contextlib

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from worker import __version__
from worker.admission import memory_limit
from worker.errors import DLQ_SEND_FAILED, INTERNAL_ERROR, FaceblurError, PermanentError, TransientError

_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_AGE_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)
_FACE_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50, 100, 200)
_CALL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)

MESSAGE_OUTCOMES = ("done", "ignored", "retried", "dead_lettered", "returned_on_shutdown")
PHOTO_OUTCOMES = ("stored", "skipped_duplicate", "failed")
STAGES = ("download", "admission", "decode", "detector_input", "detect", "blur", "encode", "upload", "total")
DETECTORS = ("local", "rekognition")


def _reasons(cls: type[FaceblurError]) -> set[str]:
    own = set(cls.reasons or (cls.reason,))  # a subclass of a class with several reasons carries them too
    return own | {r for sub in cls.__subclasses__() for r in _reasons(sub)}


# Derived from the error classes (worker/errors.py), so a new class's reason starts at 0 without being listed here.
DLQ_REASONS = tuple(sorted(_reasons(PermanentError) - {PermanentError.reason}))
RETRY_REASONS = tuple(sorted(_reasons(TransientError) - {TransientError.reason} | {DLQ_SEND_FAILED, INTERNAL_ERROR}))


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # half the exposition was unqueried _created
        self.registry = r = registry or CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        Gauge("faceblur_build_info", "The worker's version", ["version"], registry=r).labels(__version__).set(1)
        self.messages = Counter(
            "faceblur_messages_total",
            "SQS messages settled, by outcome (done, ignored, retried, dead_lettered, returned_on_shutdown)",
            ["outcome"],
            registry=r,
        )
        self.photos = Counter(
            "faceblur_photos_total",
            "Photos handled, by outcome (stored, skipped_duplicate, failed)",
            ["outcome"],
            registry=r,
        )
        self.faces = Histogram(
            "faceblur_faces_per_photo", "Faces found per stored photo", buckets=_FACE_BUCKETS, registry=r
        )
        self.stage = Histogram(
            "faceblur_stage_seconds", "Time per processing stage", ["stage"], buckets=_STAGE_BUCKETS, registry=r
        )
        self.age = Histogram(
            "faceblur_output_age_seconds",
            "From the upload's eventTime to its output being stored",
            buckets=_AGE_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("faceblur_in_flight_messages", "Messages received and not yet settled", registry=r)
        self.pool_size = Gauge("faceblur_pool_size", "Photos this worker processes at once", registry=r)
        self.retries = Counter(
            "faceblur_retries_total", "Messages returned to the queue for a retry, by reason", ["reason"], registry=r
        )
        self.dlq = Counter(
            "faceblur_dlq_sends_total", "Messages sent to the dead-letter queue, by reason", ["reason"], registry=r
        )
        self.queue = Gauge(
            "faceblur_queue_messages", "Approximate queue depth (GetQueueAttributes)", ["queue", "state"], registry=r
        )
        self.receive_errors = Counter("faceblur_receive_errors_total", "ReceiveMessage calls that failed", registry=r)
        self.heartbeats = Counter(
            "faceblur_visibility_extensions_total", "Visibility extensions of messages still in work", registry=r
        )
        self.last_poll = Gauge(
            "faceblur_last_poll_timestamp_seconds", "When the poll loop last completed a poll", registry=r
        )
        # Rekognition (DETECTOR=rekognition or both). Calls are DetectFaces attempts, retries included.
        self.rekognition_calls = Counter(
            "faceblur_rekognition_calls_total", "DetectFaces requests sent (every attempt)", registry=r
        )
        self.rekognition_throttles = Counter(
            "faceblur_rekognition_throttles_total",
            "DetectFaces attempts refused by throttling (ThrottlingException, ProvisionedThroughputExceeded)",
            registry=r,
        )
        self.rekognition_retries = Counter(
            "faceblur_rekognition_retries_total", "DetectFaces attempts that were retries of a failed one", registry=r
        )
        self.rekognition_seconds = Histogram(
            "faceblur_rekognition_seconds",
            "Time of one photo's Rekognition detection, token waits and retries included",
            buckets=_CALL_BUCKETS,
            registry=r,
        )
        self.rekognition_face_limit = Counter(
            "faceblur_rekognition_face_limit_total",
            "Photos where DetectFaces returned its maximum of 100 faces (the local detector ran too)",
            registry=r,
        )
        self.detector_faces = Counter(
            "faceblur_faces_total",
            "Faces each detector found (a photo with transparency is looked at twice: on white and on black)",
            ["detector"],
            registry=r,
        )
        self.memory_budget = Gauge(
            "faceblur_memory_budget_bytes",
            "Memory that photos in work may reserve together (MEMORY_BUDGET)",
            registry=r,
        )
        self.memory_reserved = Gauge(
            "faceblur_memory_reserved_bytes",
            "Memory reserved by photos in work now (estimated from headers)",
            registry=r,
        )
        self.memory_wait = Histogram(
            "faceblur_memory_wait_seconds",
            "Time a photo waited for memory before decoding",
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.single_detector_faces = Counter(
            "faceblur_faces_single_detector_total",
            "DETECTOR=both: faces found by only one of the detectors, by that detector",
            ["detector"],
            registry=r,
        )
        self.memory_limit = Gauge(
            "faceblur_memory_limit_bytes", "The task's memory: its cgroup limit, or the machine's RAM", registry=r
        )
        with contextlib.suppress(OSError):  # unknown: left at 0
            self.memory_limit.set(memory_limit())
        for labelled, values in (
            (self.messages, MESSAGE_OUTCOMES),
            (self.photos, PHOTO_OUTCOMES),
            (self.retries, RETRY_REASONS),
            (self.dlq, DLQ_REASONS),
            (self.detector_faces, DETECTORS),
            (self.single_detector_faces, DETECTORS),
        ):
            for value in values:
                labelled.labels(value)
        for stage in STAGES:
            self.stage.labels(stage)
