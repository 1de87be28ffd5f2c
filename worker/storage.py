"""S3 object I/O for one photo: size check, versioned GET, idempotency HEAD, encrypted PUT with provenance."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from worker import __version__
from worker.errors import (
    AccessDenied,
    FaceblurError,
    InvalidParameter,
    ObjectMissing,
    ObjectTooLarge,
    OutputChanged,
    S3Error,
)
from worker.events import ObjectRef

if TYPE_CHECKING:  # a type only: storage does not load the imaging stack
    from worker.imaging.egress import Output

_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchVersion", "NoSuchBucket"}
# A conditional PUT lost: someone wrote the output after we looked (412), or at the same moment (409).
_WRITE_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


@dataclass(frozen=True, slots=True)
class OutputState:
    etag: str | None  # the output's ETag; None = no output yet
    same_source: bool  # it was made from this very source version: a redelivery, nothing to do
    write_id: str = ""  # the id of the PUT that wrote it ("" = not written by this worker)
    source_bucket: str = ""  # the bucket of the photo it was made from ("" = not recorded)

    def replaceable_by(self, ref: ObjectRef) -> bool:
        """Only an output this worker made from the same source bucket may be replaced by a newer version: never
        an object someone else put there, never one made from another source bucket's photo of the same key."""
        return self.etag is None or (bool(self.write_id) and self.source_bucket in ("", ref.bucket))


@dataclass(frozen=True, slots=True)
class OutputTarget:
    bucket: str
    prefix: str = ""
    sse: str = "AES256"
    kms_key_id: str = ""

    def key_for(self, source_key: str) -> str:
        return f"{self.prefix}{source_key}"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _transient(what: str, exc: Exception) -> FaceblurError:
    if isinstance(exc, ParamValidationError):  # a bucket or key botocore refuses to send: no retry changes it
        return InvalidParameter(f"{what}: {exc}")
    if isinstance(exc, ClientError) and _code(exc) in {"AccessDenied", "403"}:
        # Also what S3 answers for a missing key when the role may not list the bucket: retried, then the DLQ.
        return AccessDenied(f"{what}: {exc}")
    return S3Error(f"{what}: {exc}")


def _version(ref: ObjectRef) -> str | None:
    # moto and unversioned buckets report "null": a version id that names nothing.
    return ref.version_id if ref.version_id and ref.version_id != "null" else None


def _etag(response: dict[str, Any]) -> str | None:
    return (response.get("ETag") or "").strip('"') or None


@contextmanager
def _reading_source(ref: ObjectRef, verb: str) -> Iterator[None]:
    """S3 errors reading a source object: gone -> ObjectMissing (permanent), anything else -> retried."""
    try:
        yield
    except ClientError as exc:
        if _code(exc) in _MISSING:
            raise ObjectMissing(f"s3://{ref.bucket}/{ref.key} does not exist (deleted before processing?)") from exc
        raise _transient(f"{verb} s3://{ref.bucket}/{ref.key}", exc) from exc
    except BotoCoreError as exc:
        raise _transient(f"{verb} s3://{ref.bucket}/{ref.key}", exc) from exc


class Storage:
    def __init__(self, s3: Any, target: OutputTarget, max_bytes: int) -> None:
        self.s3 = s3
        self.target = target
        self.max_bytes = max_bytes

    def _check_size(self, size: int | None, ref: ObjectRef) -> None:
        if size is not None and size > self.max_bytes:
            raise ObjectTooLarge(f"s3://{ref.bucket}/{ref.key} is {size} bytes; MAX_OBJECT_BYTES is {self.max_bytes}")

    def fetch(self, ref: ObjectRef) -> tuple[bytes, str | None]:
        """Download the source photo. Returns (bytes, etag). Oversize objects are refused before the GET."""
        self._check_size(ref.size, ref)
        version = _version(ref)
        with _reading_source(ref, "GET"):
            resp = self.s3.get_object(Bucket=ref.bucket, Key=ref.key, **({"VersionId": version} if version else {}))
            self._check_size(int(resp.get("ContentLength", 0)), ref)
            body = resp["Body"]
            try:
                data = body.read(self.max_bytes + 1)
            finally:
                body.close()
        self._check_size(len(data), ref)
        return data, _etag(resp)

    def output_state(self, ref: ObjectRef, fetched_etag: str | None = None) -> OutputState:
        """One HEAD of the output: does it exist, and was it made from this very source version (a redelivery)?"""
        key = self.target.key_for(ref.key)
        try:
            head = self.s3.head_object(Bucket=self.target.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return OutputState(None, False)
            raise _transient(f"HEAD output {key}", exc) from exc
        except BotoCoreError as exc:
            raise _transient(f"HEAD output {key}", exc) from exc
        meta = head.get("Metadata", {})
        etags = {e for e in (ref.etag, fetched_etag) if e}
        version = _version(ref)
        same = meta.get("source-etag") in etags or (version is not None and meta.get("source-version") == version)
        return OutputState(head.get("ETag"), same, meta.get("write-id", ""), meta.get("source-bucket", ""))

    def identify(self, ref: ObjectRef) -> ObjectRef:
        """The event's ref with the source's ETag and version when it named neither (EventBridge, hand-made
        events): one HEAD of the source, so that a redelivery is recognised by the output HEAD that follows
        instead of being downloaded, blurred and written again."""
        if ref.etag or _version(ref):
            return ref
        with _reading_source(ref, "HEAD"):
            head = self.s3.head_object(Bucket=ref.bucket, Key=ref.key)
        self._check_size(int(head.get("ContentLength", 0)), ref)
        return replace(ref, etag=_etag(head), version_id=head.get("VersionId") or ref.version_id)

    def store(
        self,
        ref: ObjectRef,
        data: Output,  # only what passed egress is ever written
        content_type: str,
        *,
        etag: str | None,
        faces: int,
        detector: str,
        replacing: str | None,
    ) -> str | None:
        """Write the output only over what was there when we looked (`replacing`: its ETag, None = nothing).
        Conditional writes make a PUT whose answer was lost (and retried) or a second worker's PUT of the same
        photo fail instead of writing a second version. Returns the key when this call's PUT landed (also when
        only a retry of it was refused), None when another PUT made the output from the same source meanwhile."""
        key = self.target.key_for(ref.key)
        extra: dict[str, Any] = {"ServerSideEncryption": self.target.sse}
        if self.target.sse == "aws:kms" and self.target.kms_key_id:
            extra["SSEKMSKeyId"] = self.target.kms_key_id
        extra.update({"IfMatch": replacing} if replacing else {"IfNoneMatch": "*"})
        metadata = {
            "source-bucket": ref.bucket,
            "source-etag": etag or ref.etag or "",
            "source-version": ref.version_id or "",
            "faces": str(faces),
            "detector": detector,
            "worker-version": __version__,
            "write-id": uuid.uuid4().hex,  # tells our own landed PUT from someone else's when a retry is refused
        }
        try:
            self.s3.put_object(
                Bucket=self.target.bucket, Key=key, Body=data, ContentType=content_type, Metadata=metadata, **extra
            )
        except ClientError as exc:
            if _code(exc) not in _WRITE_CONFLICT:
                raise _transient(f"PUT s3://{self.target.bucket}/{key}", exc) from exc
            now = self.output_state(ref, etag)
            if now.write_id == metadata["write-id"]:
                return key  # the first attempt landed; botocore's retry of it was refused
            if now.same_source:
                return None
            raise OutputChanged(f"PUT {key}: the output changed meanwhile") from exc
        except BotoCoreError as exc:
            raise _transient(f"PUT s3://{self.target.bucket}/{key}", exc) from exc
        return key
