"""Helpers for the integration tests: a worker service in a background thread, polling, queue and S3 inspection,
message bodies in the shapes AWS delivers, sample photos and an independent image measure (numpy only).

Nothing here patches boto3 or moto: every AWS call goes over HTTP to the session's moto server. Where a test needs
to see what the worker did (a receive, a visibility change), it wraps the worker's own Queue object.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote_plus, unquote_plus

import numpy as np
from PIL import Image as PILImage
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.net import free_port as free_port  # shared with the soak and the benchmarks
from tests.helpers.net import http_get as http_get

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent.parent  # the project (where `python -m worker` runs)


# -- waiting --------------------------------------------------------------------------------------------------------
def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.1, what: str = "") -> T:
    """Poll until `predicate()` is truthy and return its value; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate!r} (last: {value!r})")
        time.sleep(interval)


# -- metrics --------------------------------------------------------------------------------------------------------
def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text -> {(sample name, sorted labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """One sample's value; 0 when the labelled child was never created (a counter that never moved)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def metric_total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    """A counter summed over all its labels."""
    return sum(v for (n, _), v in samples.items() if n == name)


def registry_value(service: Any, name: str, **labels: str) -> float:
    value = service.consumer.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


# -- SQS ------------------------------------------------------------------------------------------------------------
def queue_depth(sqs: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) as SQS reports them."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def queue_empty(sqs: Any, url: str) -> bool:
    return queue_depth(sqs, url) == (0, 0)


@dataclass
class QueuedMessage:
    message_id: str
    body: str
    attributes: dict[str, str]  # message attributes (StringValue)
    receive_count: int


def read_queue(sqs: Any, url: str) -> list[QueuedMessage]:
    """Every visible message with its attributes, left in the queue (made visible again afterwards)."""
    seen: dict[str, QueuedMessage] = {}
    receipts: list[str] = []
    while True:
        resp = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=30,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        )
        batch = resp.get("Messages", [])
        if not batch:
            break
        for m in batch:
            receipts.append(m["ReceiptHandle"])
            seen[m["MessageId"]] = QueuedMessage(
                m["MessageId"],
                m["Body"],
                {k: v.get("StringValue", "") for k, v in m.get("MessageAttributes", {}).items()},
                int(m.get("Attributes", {}).get("ApproximateReceiveCount", "0")),
            )
    for receipt in receipts:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=0)
    return list(seen.values())


def drain_queue(sqs: Any, url: str) -> int:
    """Delete every visible message (e.g. the s3:TestEvent a test does not care about). Returns how many."""
    n = 0
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not batch:
            return n
        for m in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            n += 1


def keys_in_body(body: str) -> list[str]:
    """Object keys named by an S3 notification body (the test's own decoding, independent of worker.events)."""
    doc = json.loads(body)
    return [unquote_plus(r["s3"]["object"]["key"]) for r in doc.get("Records", [])]


# -- S3 -------------------------------------------------------------------------------------------------------------
def object_keys(s3: Any, bucket: str) -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def get_bytes(s3: Any, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise
    return True


# -- message bodies, as AWS delivers them ---------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def s3_record(bucket: str, key: str, etag: str, size: int, event_name: str = "ObjectCreated:Put") -> dict[str, Any]:
    """One S3 event-notification record; the key URL-encoded form-style, as S3 does."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": _now(),
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:EXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": uuid.uuid4().hex[:16].upper()},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "faceblur",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}", "ownerIdentity": {"principalId": "EXAMPLE"}},
            "object": {
                "key": quote_plus(key, safe="/"),
                "size": size,
                "eTag": etag,
                "sequencer": uuid.uuid4().hex[:18].upper(),
            },
        },
    }


def s3_event(*records: dict[str, Any]) -> str:
    return json.dumps({"Records": list(records)})


def sns_envelope(message: str) -> str:
    """SNS -> SQS without raw message delivery: the notification is a JSON string inside `Message`."""
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:faceblur-uploads",
            "Subject": "Amazon S3 Notification",
            "Message": message,
            "Timestamp": _now(),
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-EXAMPLE.pem",
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
        }
    )


def eventbridge_event(bucket: str, key: str, etag: str, size: int) -> str:
    """EventBridge "Object Created" (EventBridge rule -> SQS target); the key is not URL-encoded there."""
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "123456789012",
            "time": _now()[:-5] + "Z",
            "region": "us-east-1",
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket},
                "object": {"key": key, "size": size, "etag": etag, "sequencer": uuid.uuid4().hex[:18].upper()},
                "request-id": uuid.uuid4().hex[:16].upper(),
                "requester": "123456789012",
                "source-ip-address": "127.0.0.1",
                "reason": "PutObject",
            },
        }
    )


# -- photos ---------------------------------------------------------------------------------------------------------
def skimage_photo(name: str) -> bytes:
    """A public-domain photo bundled with scikit-image (astronaut.png has one face; coffee/chelsea have none)."""
    import skimage.data

    return (Path(skimage.data.__file__).parent / name).read_bytes()


def synthetic_rgb(width: int = 64, height: int = 48, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus mild noise: photo-like, faceless, cheap to process."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1)
    noise = rng.normal(0, 8, size=base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(arr: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def synthetic_png(seed: int = 0, width: int = 64, height: int = 48) -> bytes:
    return png_bytes(synthetic_rgb(width, height, seed))


def decode_rgb(data: bytes) -> np.ndarray:
    with PILImage.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


# -- an independent measure of how much detail survives in a region ---------------------------------------------------
def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def gaussian_blur(gray: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, round(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(x * x) / (2 * sigma * sigma))
    kernel /= kernel.sum()
    padded = np.pad(gray, radius, mode="reflect")
    rows = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), 0, padded)
    return np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), 1, rows)


def detail_correlation(original: np.ndarray, output: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Pearson correlation of the high-pass (image minus a Gaussian blur at sigma = box width / 16) of the two
    images inside box = (x0, y0, x1, y1). ~1: the region's detail survives; ~0: it is gone."""
    x0, y0, x1, y1 = box
    sigma = (x1 - x0) / 16
    hp_a = luma(original) - gaussian_blur(luma(original), sigma)
    hp_b = luma(output) - gaussian_blur(luma(output), sigma)
    a = hp_a[y0:y1, x0:x1].ravel()
    b = hp_b[y0:y1, x0:x1].ravel()
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b) / denom if denom else 0.0


# -- a service running in a background thread -------------------------------------------------------------------------
class ServiceRunner:
    """Runs a built Service's consumer in a thread. With own_http the test, not Service.run, decides when the
    /metrics server stops (so /readyz can be read after the consumer was told to stop)."""

    def __init__(self, service: Any, own_http: bool = False) -> None:
        self.service = service
        self.own_http = own_http
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="service-under-test", daemon=True)

    def _run(self) -> None:
        try:
            if self.own_http:
                self.service.consumer.run()
            else:
                self.service.run()
        except BaseException as exc:
            self.error = exc

    @property
    def url(self) -> str:
        assert self.service.http is not None, "the service was built with metrics_port=0"
        return f"http://127.0.0.1:{self.service.http.port}"

    def value(self, name: str, **labels: str) -> float:
        return registry_value(self.service, name, **labels)

    def start(self) -> ServiceRunner:
        self.thread.start()
        return self

    def alive(self) -> bool:
        return self.thread.is_alive()

    def request_stop(self) -> None:
        self.service.consumer.stop()

    def join(self, timeout: float = 60.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the service did not stop"
        if self.own_http and self.service.http:
            self.service.http.stop()
            self.service.http = None
        if self.error is not None:
            raise AssertionError(f"the service thread crashed: {self.error!r}") from self.error

    def stop(self, timeout: float = 60.0) -> None:
        if self.thread.is_alive() or self.thread.ident is None:
            self.request_stop()
        if self.thread.ident is not None:
            self.join(timeout)


@dataclass
class RecordingQueue:
    """Wraps the worker's source Queue: records each receive and visibility change, then does the real call."""

    inner: Any
    received: list[tuple[float, str, int]] = field(default_factory=list)  # (monotonic, message id, receive count)
    visibility: list[tuple[float, str, int]] = field(default_factory=list)  # (monotonic, message id, seconds)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def receive(self, *args: Any, **kwargs: Any) -> Any:
        messages = self.inner.receive(*args, **kwargs)
        now = time.monotonic()
        with self.lock:
            self.received.extend((now, m.message_id, m.receive_count) for m in messages)
        return messages

    def set_visibility(self, messages: list[Any], seconds: int) -> Any:
        failed = self.inner.set_visibility(messages, seconds)
        now = time.monotonic()
        with self.lock:
            self.visibility.extend((now, m.message_id, seconds) for m in messages)
        return failed


class SlowDetector:
    """The real detector, made slow: each call sleeps first. Counts calls."""

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner = inner
        self.name = inner.name
        self.delay = delay
        self.calls = 0
        self.started = threading.Event()
        self.lock = threading.Lock()

    def detect(self, frame: Any) -> Any:
        with self.lock:
            self.calls += 1
        self.started.set()
        time.sleep(self.delay)
        return self.inner.detect(frame)
