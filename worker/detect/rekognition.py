"""Amazon Rekognition DetectFaces as a Detector: rate-limited, retried with full-jitter backoff, failing closed.

What is sent (Rekognition's set quotas: raw bytes <= 5 MB, JPEG or PNG, each side >= 80 px): always the visible
image, as the Frame encodes it (an upright JPEG made and checked by the imaging layer), never the uploaded file,
which may hold what a viewer never sees. Its long side is at most UPLOAD_LONG_SIDE (1920 px). Rekognition's
documented minimum face is 40x40 px *in a 1920x1080 image*, and "images with dimensions higher than 1920x1080 need
a larger minimum face size proportionally": the minimum is relative to the image, so shrinking a larger photo to
1920 px loses no face Rekognition could have found in the original, while a 1920 px JPEG stays far below 5 MB.
Images under 80 px a side are enlarged to 80 px. (An S3Object reference would avoid the upload for same-region
sources up to 15 MB, but it would send the file as uploaded: not done.)

The JPEG carries no orientation, so Rekognition corrects nothing: the boxes it returns are in the upright frame,
as ratios of its size. Ratios outside [0, 1] (faces cut by the border) are clamped.

Retries: throttling (ThrottlingException, ProvisionedThroughputExceededException), InternalServerError,
ServiceUnavailable, any 5xx and connection errors are retried by tenacity with exponential backoff and full jitter,
bounded by REKOGNITION_MAX_ATTEMPTS and REKOGNITION_MAX_SECONDS; every attempt first takes a token from the
process-wide bucket (REKOGNITION_TPS). Exhausted -> DetectionFailed (transient: no output, the message returns to
the queue with its own growing delay). Refusals that no retry can change (invalid image, too large, invalid
parameter, S3 object, access denied) -> RekognitionRefused (permanent: DLQ with the reason), or the local
detector's answer with REKOGNITION_FALLBACK=local.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_before_delay, wait_random_exponential

from worker.aws import Aws, from_environment
from worker.config import Settings
from worker.detect import Face, Frame
from worker.errors import DetectionFailed, FaceblurError, RekognitionRefused, RekognitionUnavailable
from worker.geometry import union
from worker.ratelimit import TokenBucket, shared
from worker.telemetry import logs
from worker.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from worker.detect.local import LocalDetector

log = logs.get("worker.detect.rekognition")

MAX_BYTES = 5 * 1024 * 1024  # Rekognition: "maximum image size as raw bytes passed in as parameter is 5 MB"
MIN_SIDE = 80  # Rekognition: "the minimum image dimensions is 80 pixels for both height and width"
UPLOAD_LONG_SIDE = 1920  # see the module docstring: the minimum face size is relative above 1920x1080
MAX_LONG_SIDE = 4096  # never upload more than this, even when enlarging a thin image to 80 px
FACE_LIMIT = 100  # DetectFaces returns at most the 100 largest faces
MIN_FACE = 40  # Rekognition: "the minimum face size ... is 40x40 pixels" in a 1920x1080 image
JPEG_QUALITY = 90

THROTTLE_CODES = frozenset({"ThrottlingException", "ProvisionedThroughputExceededException"})
SERVER_CODES = frozenset({"InternalServerError", "ServiceUnavailable", "ServiceUnavailableException"})


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def retryable(exc: BaseException) -> bool:
    """Throttling, server errors (5xx) and connection problems: another attempt may succeed."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in RekognitionRefused.CODES:
            return False
        return code in THROTTLE_CODES or code in SERVER_CODES or _status(exc) >= 500
    return isinstance(exc, BotoConnectionError | HTTPClientError)


def as_failure(exc: BaseException, attempts: int = 1, seconds: float = 0.0) -> FaceblurError:
    """What a DetectFaces error that ended the retries means for the photo: a refusal no retry can change
    (permanent: DLQ with the code), Rekognition unavailable (retries exhausted: the message is retried later), or
    an unknown refusal (not retried here, but the message will be, later)."""
    code = error_code(exc) or type(exc).__name__
    if code in RekognitionRefused.CODES:
        return RekognitionRefused(f"Rekognition refused the image: {code}: {exc}", code)
    if retryable(exc):
        return RekognitionUnavailable(
            f"Rekognition DetectFaces failed after {attempts} attempts in {seconds:.1f} s: {code}"
        )
    return DetectionFailed(f"Rekognition DetectFaces failed: {code}: {exc}")


# -- what is sent and how the answer maps back ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Request:
    data: bytes  # an upright JPEG of the frame
    size: tuple[int, int]  # (width, height) of the upright frame the returned ratios refer to


def smallest_face(size: tuple[int, int]) -> float:
    """Rekognition's smallest face in a photo of this size, in its pixels: 40 px up to 1920 px, then in proportion."""
    return MIN_FACE * max(1.0, max(size) / UPLOAD_LONG_SIDE)


def build_request(frame: Frame, long_side: int = UPLOAD_LONG_SIDE) -> Request:
    """The visible image as an upright JPEG: long side <= long_side (never enlarged) unless a side would fall under
    80 px. Never the uploaded file: it may hold what a viewer never sees (pixels under transparency, bits below 8,
    a colour profile Rekognition would not apply), and its bytes must not decide."""
    w, h = frame.size
    scale = min(1.0, long_side / max(w, h))
    if min(w, h) * scale < MIN_SIDE:
        scale = min(MIN_SIDE / min(w, h), MAX_LONG_SIDE / max(w, h))
    data = frame.jpeg(scale, JPEG_QUALITY)
    if len(data) > MAX_BYTES:
        data = frame.jpeg(scale, 70)
    return Request(data, (w, h))


def map_box(box: Mapping[str, float], size: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """A BoundingBox (ratios of `size`, the upright frame) -> (x, y, w, h) in its pixels; clamped to the image;
    None if empty."""
    left, top = float(box.get("Left", 0.0)), float(box.get("Top", 0.0))
    x0, y0 = min(max(left, 0.0), 1.0), min(max(top, 0.0), 1.0)
    x1 = min(max(left + float(box.get("Width", 0.0)), 0.0), 1.0)
    y1 = min(max(top + float(box.get("Height", 0.0)), 0.0), 1.0)
    if x1 <= x0 or y1 <= y0:
        return None
    w, h = size
    return x0 * w, y0 * h, (x1 - x0) * w, (y1 - y0) * h


def faces_from_response(details: Sequence[Mapping[str, Any]], request: Request) -> list[Face]:
    faces = []
    for d in details:
        box = map_box(d.get("BoundingBox", {}), request.size)
        if box is not None:
            score = min(max(float(d.get("Confidence", 100.0)) / 100.0, 0.0), 1.0)
            x, y, w, h = box
            faces.append(Face(x, y, w, h, score=score, source="rekognition"))
    return faces


# -- the client -------------------------------------------------------------------------------------------------------
def make_client(settings: Settings, aws: Aws | None = None) -> Any:
    """The endpoint comes from boto3's own settings (AWS_ENDPOINT_URL_REKOGNITION, AWS_ENDPOINT_URL, profiles)."""
    timeout = settings.rekognition.timeout_seconds
    config = Config(
        # One HTTP request per call: our tenacity loop is the only retry layer. botocore's own retries would
        # multiply with it (up to 5 x REKOGNITION_MAX_ATTEMPTS requests a photo), would ignore
        # REKOGNITION_MAX_SECONDS and would send requests that never took a token from the rate limiter.
        # Note: in a botocore Config, "max_attempts" counts *retries* (max_attempts=1 still allows one retry, seen
        # against the fake endpoint); "total_max_attempts" counts the first request too, so 1 means no retry.
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=min(5.0, timeout),
        read_timeout=timeout,
        max_pool_connections=max(10, settings.concurrency + 4),
    )
    return (aws or from_environment()).client("rekognition", config=config)


class RekognitionDetector:
    name = "rekognition"

    def __init__(
        self,
        settings: Settings,
        client: Any = None,
        metrics: Metrics | None = None,
        bucket: TokenBucket | None = None,
        local: LocalDetector | None = None,
        alone: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.rk = settings.rekognition
        self.client = client if client is not None else make_client(settings)
        self.metrics = metrics or Metrics()
        self.bucket = bucket or shared(self.rk.tps)
        self._local = local
        self._local_lock = threading.Lock()
        self.alone = alone
        self._sleep = sleep

    @property
    def local(self) -> LocalDetector:
        with self._local_lock:
            if self._local is None:
                from worker.detect.local import LocalDetector

                self._local = LocalDetector(self.settings.detect, metrics=self.metrics)
            return self._local

    def detect(self, frame: Frame) -> list[Face]:
        start = time.perf_counter()
        try:
            return self._detect(frame)
        finally:
            self.metrics.rekognition_seconds.observe(time.perf_counter() - start)

    def _detect(self, frame: Frame) -> list[Face]:
        try:
            request = build_request(frame)
        except Exception as exc:
            raise DetectionFailed(f"could not prepare the Rekognition input: {exc}") from exc
        try:
            response = self.call(request.data)
        except RekognitionRefused as exc:
            if self.rk.fallback != "local":
                raise
            log.warning("Rekognition refused the image; using the local detector", code=exc.code, error=str(exc))
            return self.local.detect(frame)  # it counts its own faces
        details = response.get("FaceDetails", [])
        faces = faces_from_response(details, request)
        self.metrics.detector_faces.labels(self.name).inc(len(faces))
        if len(details) >= FACE_LIMIT:
            self.metrics.rekognition_face_limit.inc()
            log.warning("DetectFaces returned its maximum of faces; adding the local detector's", faces=len(details))
            if self.alone:
                return union(faces, self.local.detect(frame), self.settings.detect.nms_iou)
        if self.alone:
            # Rekognition's smallest face is 40 px, and grows with the photo above 1920 px: the local detector's
            # fine levels look for the faces from DETECT_MIN_FACE up to that size, so the promise holds here too.
            small = self.local.detect_small(frame, smallest_face(frame.size))
            faces = union(faces, small, self.settings.detect.nms_iou)
        return faces

    def call(self, data: bytes) -> dict[str, Any]:
        """One DetectFaces answer, with rate limiting and retries; raises DetectionFailed or RekognitionRefused."""
        rk = self.rk
        started = time.monotonic()
        retrying = Retrying(
            retry=retry_if_exception(retryable),
            wait=wait_random_exponential(multiplier=rk.backoff_seconds, max=rk.backoff_max_seconds),
            stop=stop_after_attempt(rk.max_attempts) | stop_before_delay(rk.max_seconds),
            sleep=self._sleep,
            reraise=True,
        )
        attempts = 0

        def attempt() -> dict[str, Any]:
            nonlocal attempts
            left = rk.max_seconds - (time.monotonic() - started)
            if left <= 0 or not self.bucket.acquire(timeout=left):
                raise DetectionFailed(f"no Rekognition call slot within REKOGNITION_MAX_SECONDS ({rk.max_seconds} s)")
            attempts += 1
            if attempts > 1:
                self.metrics.rekognition_retries.inc()
            self.metrics.rekognition_calls.inc()
            try:
                return self.client.detect_faces(Image={"Bytes": data}, Attributes=["DEFAULT"])
            except ClientError as exc:
                if error_code(exc) in THROTTLE_CODES:
                    self.metrics.rekognition_throttles.inc()
                raise

        try:
            return retrying(attempt)
        except DetectionFailed:
            raise
        except Exception as exc:
            raise as_failure(exc, attempts, time.monotonic() - started) from exc
