"""Turn one SQS message body into the S3 objects it announces.

Pure functions: no AWS calls, no I/O. Accepted shapes:

* S3 event notification ``{"Records": [...]}``; also what SNS delivers with raw message delivery on.
* SNS ``Notification`` envelope whose ``Message`` is a JSON string holding one of the other shapes.
* EventBridge ``aws.s3`` event (EventBridge rule -> SQS target, or via SNS).

Ignored, returning ``[]``: ``s3:TestEvent``, SNS subscription (un)confirmations, records whose
``eventName`` is not ``ObjectCreated:*`` and EventBridge detail-types other than ``Object Created``.

Key encoding: S3 notifications URL-encode the key form-style (AWS "Event message structure": "red
flower.jpg" becomes "red+flower.jpg"; moto also turns ``/`` into ``%2F``), so those keys go through
``unquote_plus``. EventBridge keys are taken verbatim: the AWS "EventBridge event message structure" page
documents no encoding, and moto emits ``key.name`` unchanged there; decoding them would corrupt keys
that contain ``+`` or ``%``. Either way ``ObjectRef.key`` is the real key, ready for GetObject.

Anything else raises ``MalformedMessage`` (the message goes to the DLQ with that reason). One bad record
rejects the whole message: SQS deletes or dead-letters whole messages, so processing the good records and
deleting would silently lose the bad one, while the DLQ keeps the original intact for a redrive (output
writes are idempotent, so re-processing the good records then is harmless). Only records we would act on
are validated: a non-create record is skipped without looking at its ``s3`` part.

Advisory fields never fail a message: an unparseable ``eventTime``/``time`` or a non-integer ``size``
becomes ``None``, since they feed logs and metrics, not the choice of object to fetch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from worker.config import is_bucket_name
from worker.errors import MalformedMessage

__all__ = ["ObjectRef", "describe", "parse_body"]

# Error messages quote at most this many characters of untrusted input (repr adds quotes/escapes).
_EXCERPT_CHARS = 60

_S3_TEST_EVENT = "s3:TestEvent"
_SNS_IGNORED_TYPES = frozenset({"SubscriptionConfirmation", "UnsubscribeConfirmation"})
_EVENTBRIDGE_CREATED = "Object Created"
# EventBridge has no eventName; its `reason` maps onto the notification names (AWS "EventBridge mapping").
_EVENTBRIDGE_REASONS = {
    "PutObject": "ObjectCreated:Put",
    "POST Object": "ObjectCreated:Post",
    "CopyObject": "ObjectCreated:Copy",
    "CompleteMultipartUpload": "ObjectCreated:CompleteMultipartUpload",
}


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One S3 object announced by a message; `key` is already decoded (the real object key)."""

    bucket: str
    key: str
    version_id: str | None = None
    size: int | None = None
    etag: str | None = None  # without surrounding quotes
    sequencer: str | None = None
    event_time: datetime | None = None  # timezone-aware UTC
    event_name: str | None = None  # e.g. "ObjectCreated:Put"
    region: str | None = None


def parse_body(body: str) -> list[ObjectRef]:
    """Return the created objects announced by an SQS message body, deduplicated, in message order.

    Returns ``[]`` for messages that announce nothing to process (test events, SNS confirmations,
    non-create events). Raises ``MalformedMessage`` for anything unparseable or unknown, including a
    message in which a single create record is invalid (see the module docstring for why).
    """
    if not body or body.isspace():
        raise MalformedMessage("message body is empty")
    doc = _load_json_object(body, "message body")
    return _dedupe(_dispatch(doc, inside_sns=False))


def describe(ref: ObjectRef) -> dict[str, object]:
    """Small dict for structured logs: identifies the object, never carries the message body."""
    return {
        "bucket": ref.bucket,
        "key": ref.key,
        "version_id": ref.version_id,
        "size": ref.size,
        "etag": ref.etag,
    }


def _dispatch(doc: dict[str, Any], *, inside_sns: bool) -> list[ObjectRef]:
    if "Records" in doc:
        return _parse_s3_notification(doc)
    if doc.get("Event") == _S3_TEST_EVENT:
        return []
    if "Type" in doc:
        if inside_sns:
            raise MalformedMessage("SNS envelope nested inside another SNS Message")
        return _parse_sns_envelope(doc)
    if "detail-type" in doc:
        return _parse_eventbridge(doc)
    raise MalformedMessage(f"unrecognised message shape (top-level keys: {_excerpt(', '.join(sorted(doc)))})")


def _parse_s3_notification(doc: dict[str, Any]) -> list[ObjectRef]:
    records = doc["Records"]
    if not isinstance(records, list):
        raise MalformedMessage(f"Records is {_json_type(records)}, expected an array")
    if not records:
        # S3 never sends an empty batch: a producer bug worth seeing in the DLQ, not silently deleting.
        raise MalformedMessage("Records is empty")
    refs = (_parse_s3_record(record, f"Records[{i}]") for i, record in enumerate(records))
    return [ref for ref in refs if ref is not None]


def _parse_s3_record(record: object, path: str) -> ObjectRef | None:
    rec = _require_object(record, path)
    # Minio-style producers prefix "s3:"; AWS and moto do not.
    event_name = _require_str(rec.get("eventName"), f"{path}.eventName").removeprefix("s3:")
    if not event_name.startswith("ObjectCreated:"):
        return None
    s3 = _require_object(rec.get("s3"), f"{path}.s3")
    bucket = _require_object(s3.get("bucket"), f"{path}.s3.bucket")
    obj = _require_object(s3.get("object"), f"{path}.s3.object")
    raw_key = _require_str(obj.get("key"), f"{path}.s3.object.key")
    return ObjectRef(
        bucket=_bucket_name(bucket.get("name"), f"{path}.s3.bucket.name"),
        key=_checked_key(_decode_key(raw_key, f"{path}.s3.object.key"), f"{path}.s3.object.key"),
        version_id=_optional_str(obj.get("versionId")),
        size=_optional_size(obj.get("size")),
        etag=_optional_etag(obj.get("eTag")),
        sequencer=_optional_str(obj.get("sequencer")),
        event_time=_parse_time(rec.get("eventTime")),
        event_name=event_name,
        region=_optional_str(rec.get("awsRegion")),
    )


def _parse_sns_envelope(doc: dict[str, Any]) -> list[ObjectRef]:
    # No signature check here: this is pure parsing, and the queue policy decides who may send.
    kind = doc["Type"]
    if kind == "Notification":
        return _parse_sns_notification(doc)
    if isinstance(kind, str) and kind in _SNS_IGNORED_TYPES:
        return []
    raise MalformedMessage(f"unsupported SNS message Type {_excerpt(kind)}")


def _parse_sns_notification(doc: dict[str, Any]) -> list[ObjectRef]:
    message = _require_str(doc.get("Message"), "SNS Message")
    inner = _load_json_object(message, "SNS Message")
    try:
        return _dispatch(inner, inside_sns=True)
    except MalformedMessage as exc:
        raise MalformedMessage(f"in SNS Message: {exc}") from exc


def _parse_eventbridge(doc: dict[str, Any]) -> list[ObjectRef]:
    source = doc.get("source")
    if source != "aws.s3":
        raise MalformedMessage(f"EventBridge event from unsupported source {_excerpt(source)}")
    if _require_str(doc.get("detail-type"), "detail-type") != _EVENTBRIDGE_CREATED:
        return []
    detail = _require_object(doc.get("detail"), "detail")
    bucket = _require_object(detail.get("bucket"), "detail.bucket")
    obj = _require_object(detail.get("object"), "detail.object")
    key = _checked_key(_require_str(obj.get("key"), "detail.object.key"), "detail.object.key")  # not URL-encoded
    # AWS documents "etag"; moto sends "eTag".
    etag = obj.get("etag", obj.get("eTag"))
    return [
        ObjectRef(
            bucket=_bucket_name(bucket.get("name"), "detail.bucket.name"),
            key=key,
            version_id=_optional_str(obj.get("version-id")),
            size=_optional_size(obj.get("size")),
            etag=_optional_etag(etag),
            sequencer=_optional_str(obj.get("sequencer")),
            event_time=_parse_time(doc.get("time")),
            event_name=_eventbridge_event_name(detail.get("reason")),
            region=_optional_str(doc.get("region")),
        )
    ]


def _eventbridge_event_name(reason: object) -> str:
    # moto sends reason "ObjectCreated"; unknown reasons still name the event family.
    if isinstance(reason, str) and reason in _EVENTBRIDGE_REASONS:
        return _EVENTBRIDGE_REASONS[reason]
    return "ObjectCreated"


def _decode_key(raw: str, path: str) -> str:
    try:
        # errors="strict": a wrong key from U+FFFD replacement would only fail later, as a missing object.
        key = unquote_plus(raw, errors="strict")
    except UnicodeDecodeError as exc:
        raise MalformedMessage(f"{path} is not valid percent-encoded UTF-8: {_excerpt(raw)}") from exc
    if not key:
        raise MalformedMessage(f"{path} decodes to an empty key")
    return key


def _bucket_name(value: object, path: str) -> str:
    """A plain bucket name, never an ARN or an alias: botocore would build the endpoint host from those."""
    name = _require_str(value, path)
    if not is_bucket_name(name):
        raise MalformedMessage(f"{path} is not an S3 bucket name: {_excerpt(name)}")
    return name


def _checked_key(key: str, path: str) -> str:
    if len(key.encode()) > 1024:  # S3's limit: no such object can exist
        raise MalformedMessage(f"{path} is longer than S3's 1024 bytes")
    return key


def _parse_time(value: object) -> datetime | None:
    """ISO-8601 (S3 sends ...Z) or epoch seconds -> aware UTC datetime; anything else -> None."""
    try:
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value)
            # AWS timestamps are UTC; a missing offset means UTC, not local time.
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _optional_size(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _optional_etag(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip('"') or None


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _dedupe(refs: list[ObjectRef]) -> list[ObjectRef]:
    seen: set[tuple[str, str, str | None, str | None, str | None]] = set()
    unique = []
    for ref in refs:
        identity = (ref.bucket, ref.key, ref.version_id, ref.etag, ref.sequencer)
        if identity not in seen:
            seen.add(identity)
            unique.append(ref)
    return unique


def _load_json_object(text: str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedMessage(
            f"{what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            f"starts with {_excerpt(text)}"
        ) from exc
    except (ValueError, RecursionError) as exc:  # over-long integers, absurd nesting
        raise MalformedMessage(f"{what} is not usable JSON ({_excerpt(str(exc))})") from exc
    if not isinstance(doc, dict):
        raise MalformedMessage(f"{what} is {_json_type(doc)}, expected a JSON object")
    return doc


def _require_object(value: object, path: str) -> dict[str, Any]:
    if value is None:
        raise MalformedMessage(f"{path} is missing")
    if not isinstance(value, dict):
        raise MalformedMessage(f"{path} is {_json_type(value)}, expected an object")
    return value


def _require_str(value: object, path: str) -> str:
    if value is None:
        raise MalformedMessage(f"{path} is missing")
    if not isinstance(value, str):
        raise MalformedMessage(f"{path} is {_json_type(value)}, expected a string")
    if not value:
        raise MalformedMessage(f"{path} is empty")
    return value


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _excerpt(value: object) -> str:
    """repr() of at most _EXCERPT_CHARS characters: bounded, and control characters stay escaped."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > _EXCERPT_CHARS:
        text = text[:_EXCERPT_CHARS] + "…"
    return repr(text)
