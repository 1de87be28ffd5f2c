"""Failure classes: each one decides what happens to the message that carried the photo.

PermanentError  -> retrying cannot help: send to the DLQ with `reason`, then delete.
TransientError  -> may work later: return to the queue with a growing visibility backoff.
Anything else   -> treated as transient (fail closed: never delete on an unknown error).
"""

from __future__ import annotations

DLQ_SEND_FAILED = "dlq_send_failed"  # a retry reason of no error class: the DLQ send failed, so the message is retried


class FaceblurError(Exception):
    """Base class; `reason` is a short machine-readable slug used in DLQ attributes and metric labels."""

    reason = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class PermanentError(FaceblurError):
    reason = "permanent"


class TransientError(FaceblurError):
    reason = "transient"


class MalformedMessage(PermanentError):
    reason = "malformed_message"


class NotAnImage(PermanentError):
    reason = "not_an_image"


class UnsupportedImage(PermanentError):
    reason = "unsupported_image"


class CorruptImage(PermanentError):
    reason = "corrupt_image"


class ImageTooLarge(PermanentError):
    """Too many pixels (declared in the header) or too many bytes: includes decompression bombs."""

    reason = "image_too_large"


class MetadataTooLarge(PermanentError):
    """More metadata (segments, chunks, profiles, text; compressed ones inflated) than MAX_METADATA_BYTES."""

    reason = "metadata_too_large"


class ImageTooComplex(PermanentError):
    """Valid pixels but a decoding cost out of proportion (a JPEG with hundreds of scans)."""

    reason = "image_too_complex"


class ForeignBucket(PermanentError):
    """The event names a bucket outside SOURCE_BUCKETS: nothing is read from it."""

    reason = "foreign_bucket"


class OutputConflict(PermanentError):
    """The output key holds an object this worker did not make from this source bucket: it is not overwritten."""

    reason = "output_conflict"


class ResourcesExhausted(TransientError):
    """ImageMagick ran out of its memory/map/disk limits: another try, with other photos done, will fit."""

    reason = "resources_exhausted"


class ObjectMissing(PermanentError):
    reason = "object_missing"


class DetectionFailed(TransientError):
    reason = "detection_failed"


class OutputRefused(TransientError):
    """The encoded output holds something outside the egress allow-list (imaging/egress.py). The photo is not at
    fault, our encoder is: nothing is written, and the message is retried like any other bug (another worker or a
    fixed release may succeed; after maxReceiveCount SQS parks it in the DLQ), so a valid photo is never lost."""

    reason = "output_refused"
