"""S3 object I/O for one photo: size check, versioned GET, idempotency HEAD, encrypted PUT with provenance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from worker import __version__
from worker.errors import ImageTooLarge, ObjectMissing, TransientError
from worker.events import ObjectRef

_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchVersion", "NoSuchBucket"}


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


def _transient(what: str, exc: Exception) -> TransientError:
    reason = "s3_error"
    if isinstance(exc, ClientError) and _code(exc) in {"AccessDenied", "403"}:
        # Also what S3 answers for a missing key when the role may not list the bucket: retried, then the DLQ.
        reason = "access_denied"
    return TransientError(f"{what}: {exc}", reason=reason)


class Storage:
    def __init__(self, s3: Any, target: OutputTarget, max_bytes: int) -> None:
        self.s3 = s3
        self.target = target
        self.max_bytes = max_bytes

    def _version(self, ref: ObjectRef) -> dict[str, str]:
        # moto and unversioned buckets report "null"; GetObject accepts it, but it adds nothing.
        return {"VersionId": ref.version_id} if ref.version_id and ref.version_id != "null" else {}

    def _check_size(self, size: int | None, ref: ObjectRef) -> None:
        if size is not None and size > self.max_bytes:
            raise ImageTooLarge(
                f"s3://{ref.bucket}/{ref.key} is {size} bytes; MAX_OBJECT_BYTES is {self.max_bytes}",
                reason="object_too_large",
            )

    def fetch(self, ref: ObjectRef) -> tuple[bytes, str | None]:
        """Download the source photo. Returns (bytes, etag). Oversize objects are refused before the GET."""
        self._check_size(ref.size, ref)
        try:
            resp = self.s3.get_object(Bucket=ref.bucket, Key=ref.key, **self._version(ref))
            self._check_size(int(resp.get("ContentLength", 0)), ref)
            body = resp["Body"]
            try:
                data = body.read(self.max_bytes + 1)
            finally:
                body.close()
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise ObjectMissing(f"s3://{ref.bucket}/{ref.key} does not exist (deleted before processing?)") from exc
            raise _transient(f"GET s3://{ref.bucket}/{ref.key}", exc) from exc
        except BotoCoreError as exc:
            raise _transient(f"GET s3://{ref.bucket}/{ref.key}", exc) from exc
        self._check_size(len(data), ref)
        return data, (resp.get("ETag") or "").strip('"') or None

    def already_done(self, ref: ObjectRef) -> bool:
        """True when the output exists and was made from this very source version (a redelivery)."""
        if not (ref.etag or (ref.version_id and ref.version_id != "null")):
            return False  # nothing to compare with: process again (idempotent overwrite)
        try:
            head = self.s3.head_object(Bucket=self.target.bucket, Key=self.target.key_for(ref.key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise _transient(f"HEAD output for {ref.key}", exc) from exc
        except BotoCoreError as exc:
            raise _transient(f"HEAD output for {ref.key}", exc) from exc
        meta = head.get("Metadata", {})
        same_etag = bool(ref.etag) and meta.get("source-etag") == ref.etag
        same_version = (
            bool(ref.version_id) and ref.version_id != "null" and meta.get("source-version") == ref.version_id
        )
        return same_etag or same_version

    def store(
        self, ref: ObjectRef, data: bytes, content_type: str, *, etag: str | None, faces: int, detector: str
    ) -> str:
        key = self.target.key_for(ref.key)
        extra: dict[str, Any] = {"ServerSideEncryption": self.target.sse}
        if self.target.sse == "aws:kms" and self.target.kms_key_id:
            extra["SSEKMSKeyId"] = self.target.kms_key_id
        metadata = {
            "source-etag": etag or ref.etag or "",
            "source-version": ref.version_id or "",
            "faces": str(faces),
            "detector": detector,
            "worker-version": __version__,
        }
        try:
            self.s3.put_object(
                Bucket=self.target.bucket, Key=key, Body=data, ContentType=content_type, Metadata=metadata, **extra
            )
        except (ClientError, BotoCoreError) as exc:
            raise _transient(f"PUT s3://{self.target.bucket}/{key}", exc) from exc
        return key
