"""Failure classes: each one decides what happens to the message that carried the photo.

PermanentError  -> retrying cannot help: send to the DLQ with `reason`, then delete.
TransientError  -> may work later: return to the queue with a growing visibility backoff.
Anything else   -> treated as transient (fail closed: never delete on an unknown error).
"""

from __future__ import annotations

import re
from typing import ClassVar

# The two retry reasons of no error class (every other reason is an error class's, so metrics.py derives its lists):
DLQ_SEND_FAILED = "dlq_send_failed"  # the DLQ send failed (or there is no DLQ), so the message is retried
INTERNAL_ERROR = "internal_error"  # the handler itself failed before it could name a reason


class FaceblurError(Exception):
    """Base class; `reason` is a short machine-readable slug used in DLQ attributes and metric labels."""

    reason = "error"
    # Every reason the class's own instances carry, when they carry others than `reason` (metrics start each at 0).
    reasons: ClassVar[tuple[str, ...]] = ()

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


class ObjectTooLarge(ImageTooLarge):
    """The S3 object is larger than MAX_OBJECT_BYTES (its listed size, Content-Length or the bytes read)."""

    reason = "object_too_large"


class ImageTooComplex(PermanentError):
    """Valid pixels but a decoding cost out of proportion (a JPEG with hundreds of scans)."""

    reason = "image_too_complex"


class ForeignBucket(PermanentError):
    """The event names a bucket outside SOURCE_BUCKETS: nothing is read from it."""

    reason = "foreign_bucket"


class OutputConflict(PermanentError):
    """The output key holds an object this worker did not make from this source bucket: it is not overwritten."""

    reason = "output_conflict"


class InvalidParameter(PermanentError):
    """botocore refused to send the call (a bucket name or key it will never accept): no retry changes it."""

    reason = "invalid_parameter"


class S3Error(TransientError):
    """An S3 call failed (an error answer, a network error): another try may succeed."""

    reason = "s3_error"


class AccessDenied(S3Error):
    """S3 answered 403; also its answer for a missing key when the role may not list the bucket."""

    reason = "access_denied"


class OutputChanged(TransientError):
    """Our conditional PUT lost to another writer of the output key: the next try looks at the output again."""

    reason = "output_changed"


class ResourcesExhausted(TransientError):
    """ImageMagick ran out of its memory/map/disk limits: another try, with other photos done, will fit."""

    reason = "resources_exhausted"


class ObjectMissing(PermanentError):
    reason = "object_missing"


class DetectionFailed(TransientError):
    reason = "detection_failed"


class RekognitionUnavailable(DetectionFailed):
    """DetectFaces still throttled or failing after REKOGNITION_MAX_ATTEMPTS / REKOGNITION_MAX_SECONDS."""

    reason = "rekognition_unavailable"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class RekognitionRefused(PermanentError):
    """Rekognition refused the image for a reason retrying cannot change; the reason names its error code."""

    CODES = frozenset(
        {
            "InvalidImageFormatException",
            "ImageTooLargeException",
            "InvalidParameterException",
            "InvalidS3ObjectException",
            "AccessDeniedException",
        }
    )
    reason = "rekognition_refused"
    reasons = tuple(sorted("rekognition_" + _snake(code.removesuffix("Exception")) for code in CODES))

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message, reason="rekognition_" + _snake(code.removesuffix("Exception")))
        self.code = code


class OutputRefused(TransientError):
    """The encoded output holds something outside the egress allow-list (imaging/egress.py). The photo is not at
    fault, our encoder is: nothing is written, and the message is retried like any other bug (another worker or a
    fixed release may succeed; after maxReceiveCount SQS parks it in the DLQ), so a valid photo is never lost."""

    reason = "output_refused"
