"""The Rekognition detector: box mapping for every EXIF orientation, clamping, what is sent, the 100-face rule,
error classification, retries and fail-closed behaviour. Calls go through real boto3 over HTTP to the fake
Rekognition endpoint (worker.dev.fake_rekognition); nothing patches boto3."""

from __future__ import annotations

import io
import re
import socket
import struct
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from helpers import exif as xf
from helpers.detectors import FixedDetector
from helpers.images import exif_segment, insert_segments, jpeg_bytes, to_stored
from PIL import Image as PILImage

from worker.config import RekognitionSettings, Settings
from worker.detect import Face
from worker.detect.combined import CombinedDetector
from worker.detect.rekognition import (
    MAX_BYTES,
    RekognitionDetector,
    Request,
    as_failure,
    build_request,
    faces_from_response,
    make_client,
    map_box,
    retryable,
    smallest_face,
    union,
)
from worker.dev.fake_rekognition import start_fake_rekognition
from worker.errors import DetectionFailed, PermanentError, RekognitionRefused
from worker.imaging import codec, egress
from worker.ratelimit import TokenBucket
from worker.telemetry.metrics import Metrics

ASTRONAUT = Path(skimage.data.__file__).parent / "astronaut.png"


# -- pure mapping -----------------------------------------------------------------------------------------------------
def test_upright_boxes_are_only_scaled():
    assert map_box({"Left": 0.25, "Top": 0.5, "Width": 0.5, "Height": 0.25}, (400, 200)) == (100, 100, 200, 50)


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ({"Left": -0.1, "Top": 0.2, "Width": 0.3, "Height": 0.3}, (0, 20, 20, 30)),  # cut by the left border
        ({"Left": 0.9, "Top": 0.9, "Width": 0.3, "Height": 0.3}, (90, 90, 10, 10)),  # cut by right and bottom
        ({"Left": -0.5, "Top": -0.5, "Width": 2.0, "Height": 2.0}, (0, 0, 100, 100)),  # larger than the image
    ],
)
def test_boxes_outside_the_image_are_clamped(box, expected):
    assert tuple(round(v, 6) for v in map_box(box, (100, 100))) == expected


@pytest.mark.parametrize(
    "box", [{"Left": 1.2, "Top": 0.1, "Width": 0.1, "Height": 0.1}, {"Left": 0.1, "Top": 0.1, "Width": 0, "Height": 0}]
)
def test_boxes_wholly_outside_or_empty_are_dropped(box):
    assert map_box(box, (100, 100)) is None
    assert faces_from_response([{"BoundingBox": box, "Confidence": 99}], Request(b"", (100, 100))) == []


def test_confidence_becomes_a_score_in_0_1():
    faces = faces_from_response(
        [{"BoundingBox": {"Left": 0.1, "Top": 0.1, "Width": 0.2, "Height": 0.2}, "Confidence": 99.5}],
        Request(b"", (10, 10)),
    )
    assert faces[0].score == pytest.approx(0.995)
    assert faces[0].source == "rekognition"


def test_union_merges_overlaps_and_keeps_the_rest():
    a = [Face(0, 0, 10, 10, 0.9, "rekognition"), Face(50, 50, 10, 10, 0.8, "rekognition")]
    b = [Face(1, 1, 10, 10, 0.5, "local"), Face(100, 100, 10, 10, 0.5, "local")]
    merged = union(a, b, 0.3)
    assert sorted((f.x, f.source) for f in merged) == [(0, "rekognition"), (50, "rekognition"), (100, "local")]


# -- error classification ---------------------------------------------------------------------------------------------
def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "DetectFaces"
    )


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (client_error("ThrottlingException"), "retry"),
        (client_error("ProvisionedThroughputExceededException"), "retry"),
        (client_error("InternalServerError", 500), "retry"),
        (client_error("ServiceUnavailable", 503), "retry"),
        (client_error("SomethingNew", 502), "retry"),  # any 5xx
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "retry"),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), "retry"),
        (client_error("InvalidImageFormatException"), "permanent"),
        (client_error("ImageTooLargeException"), "permanent"),
        (client_error("InvalidParameterException"), "permanent"),
        (client_error("InvalidS3ObjectException"), "permanent"),
        (client_error("AccessDeniedException"), "permanent"),
        (client_error("UnrecognizedClientException"), "fail"),  # unknown: not retried here, retried later
    ],
)
def test_error_classification(exc, kind):
    failure = as_failure(exc)
    if kind == "permanent":  # e.g. InvalidImageFormatException -> rekognition_invalid_image_format
        code = exc.response["Error"]["Code"].removesuffix("Exception")
        assert failure.reason == "rekognition_" + re.sub(r"(?<!^)(?=[A-Z])", "_", code).lower()
    else:
        assert failure.reason == {"retry": "rekognition_unavailable", "fail": "detection_failed"}[kind]
    assert isinstance(failure, PermanentError) == (kind == "permanent")
    assert retryable(exc) == (kind == "retry")


def test_the_refusal_is_permanent_with_a_reason():
    exc = RekognitionRefused("no", "InvalidImageFormatException")
    assert isinstance(exc, PermanentError)
    assert exc.reason == "rekognition_invalid_image_format"


# -- against the fake endpoint ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fake():
    server = start_fake_rekognition()
    yield server
    server.stop()


@pytest.fixture
def endpoint(fake, monkeypatch):
    fake.configure(throttle_rate=0.0, throttle_burst=(0, 0), error_rate=0.0, fail_with="", delay_seconds=0.0)
    fake.configure(extra_faces=0, seed=0)
    fake.reset_counts()
    for k, v in {
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_ENDPOINT_URL_REKOGNITION", fake.endpoint)
    return fake


@pytest.fixture(autouse=True)
def _imaging(runtime):
    """ImageMagick configured and policy checked, as the worker starts."""


def settings(**rk) -> Settings:
    base = dict(max_attempts=4, max_seconds=20, backoff_seconds=0.01, backoff_max_seconds=0.05, timeout_seconds=5)
    return replace(Settings(), rekognition=RekognitionSettings(**{**base, **rk}))


def detector(s: Settings | None = None, local=None, sleep=None, **kw) -> RekognitionDetector:
    s = s or settings()
    return RekognitionDetector(
        s,
        client=make_client(s),
        metrics=Metrics(),
        bucket=TokenBucket(1000),
        local=local,
        sleep=sleep or (lambda _: None),
        **kw,
    )


def value(det, attr: str) -> float:
    return det.metrics.registry.get_sample_value(getattr(det.metrics, attr)._name + "_total") or 0.0


def photo(data: bytes) -> codec.Photo:
    return codec.decode(data, codec.read_header(data, Settings().image))


@pytest.fixture(scope="module")
def astronaut_box(runtime) -> tuple[float, float, float, float]:
    """The astronaut's face according to the local detector (what the fake answers with), upright pixels."""
    _, local = runtime
    with photo(ASTRONAUT.read_bytes()) as p:
        faces = local.detect(p)
    assert len(faces) == 1
    f = faces[0]
    return f.x, f.y, f.w, f.h


def upright_astronaut() -> np.ndarray:
    with PILImage.open(ASTRONAUT) as im:
        return np.asarray(im.convert("RGB"))


def jpeg_with_orientation(arr: np.ndarray, orientation: int) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, "JPEG", quality=92)
    return insert_segments(buf.getvalue(), [exif_segment(xf.orientation_only(orientation))])


def png_with_orientation(arr: np.ndarray, orientation: int) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, "PNG")
    data = buf.getvalue()
    tiff = xf.orientation_only(orientation)
    chunk = struct.pack(">I", len(tiff)) + b"eXIf" + tiff + struct.pack(">I", zlib.crc32(b"eXIf" + tiff) & 0xFFFFFFFF)
    end_of_ihdr = 8 + 25
    return data[:end_of_ihdr] + chunk + data[end_of_ihdr:]


def assert_reencoded(request: Request, upload: bytes) -> None:
    """The visible image as a fresh JPEG, never the upload's bytes, with nothing egress would not let out (so no
    EXIF orientation: the boxes Rekognition returns are upright)."""
    assert request.data != upload
    assert request.data.startswith(b"\xff\xd8\xff")
    with PILImage.open(io.BytesIO(request.data)) as sent:
        size = sent.size
    assert egress.refusal(request.data, "jpeg", size) is None


def close_to(face: Face, box: tuple[float, float, float, float], tol: float = 6.0) -> bool:
    return all(abs(a - b) <= tol for a, b in zip((face.x, face.y, face.w, face.h), box, strict=True))


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_face_box_is_upright_for_every_orientation_and_format(endpoint, astronaut_box, fmt, orientation):
    stored = to_stored(upright_astronaut(), orientation)
    if fmt == "jpeg":
        data = jpeg_with_orientation(stored, orientation)
    elif fmt == "png":
        data = png_with_orientation(stored, orientation)
    else:
        buf = io.BytesIO()
        PILImage.fromarray(upright_astronaut()).save(buf, "WEBP", quality=92)
        data = buf.getvalue()
    det = detector()
    with photo(data) as p:
        assert p.size == (512, 512)
        (view,) = p.views()
        request = build_request(view)
        faces = det.detect(view)
    # Always the visible image, upright: the file itself may carry what a viewer never sees.
    assert_reencoded(request, data)
    assert len(faces) == 1, faces
    assert close_to(faces[0], astronaut_box), (faces[0], astronaut_box)


def test_large_or_webp_sources_are_sent_as_a_downscaled_jpeg(endpoint, runtime):
    big = np.asarray(PILImage.fromarray(upright_astronaut()).resize((2600, 2600)))
    noisy = np.clip(big.astype(np.int16) + np.random.default_rng(0).integers(-40, 40, big.shape), 0, 255)
    data = png_with_orientation(noisy.astype(np.uint8), 1)
    assert len(data) > MAX_BYTES
    with photo(data) as p:
        request = build_request(p)
        faces = detector().detect(p)
    assert_reencoded(request, data)
    assert len(request.data) <= MAX_BYTES
    with PILImage.open(io.BytesIO(request.data)) as sent:
        assert max(sent.size) == 1920
    assert len(faces) == 1
    assert faces[0].w > 400  # mapped back to the 2600 px photo (the face is ~91 px wide at 512)


def test_tiny_images_are_enlarged_to_rekognitions_minimum(endpoint):
    arr = np.asarray(PILImage.fromarray(upright_astronaut()).resize((64, 40)))
    data = jpeg_with_orientation(arr, 1)
    with photo(data) as p:
        request = build_request(p)
        detector().detect(p)  # no InvalidParameterException
    assert_reencoded(request, data)
    with PILImage.open(io.BytesIO(request.data)) as sent:
        assert min(sent.size) >= 80


def test_throttling_is_retried_and_counted(endpoint, astronaut_box):
    endpoint.configure(throttle_burst=(3, 100))  # the first 3 calls are throttled
    sleeps: list[float] = []
    det = detector(settings(max_attempts=5), sleep=sleeps.append)
    with photo(ASTRONAUT.read_bytes()) as p:
        faces = det.detect(p)
    assert close_to(faces[0], astronaut_box)
    counts = endpoint.snapshot()
    assert counts["calls"] == 4
    assert counts["throttles"] == 3
    assert value(det, "rekognition_calls") == 4
    assert value(det, "rekognition_throttles") == 3
    assert value(det, "rekognition_retries") == 3
    assert len(sleeps) == 3
    assert all(0 <= s <= 0.05 for s in sleeps)


def test_exhausted_retries_fail_closed(endpoint):
    endpoint.configure(error_rate=1.0)
    det = detector(settings(max_attempts=3))
    with photo(ASTRONAUT.read_bytes()) as p, pytest.raises(DetectionFailed) as info:
        det.detect(p)
    assert info.value.reason == "rekognition_unavailable"
    assert endpoint.snapshot()["calls"] == 3 == endpoint.snapshot()["server_errors"]
    assert value(det, "rekognition_retries") == 2


def test_the_time_budget_bounds_the_retries(endpoint):
    endpoint.configure(throttle_rate=1.0)
    clock = {"slept": 0.0}

    def sleep(seconds: float) -> None:
        clock["slept"] += seconds

    # Huge backoff steps against a 1 s budget: tenacity stops before a wait would cross it.
    det = detector(settings(max_attempts=50, max_seconds=1, backoff_seconds=5, backoff_max_seconds=5), sleep=sleep)
    with photo(ASTRONAUT.read_bytes()) as p, pytest.raises(DetectionFailed):
        det.detect(p)
    assert endpoint.snapshot()["calls"] < 50


@pytest.mark.parametrize(
    "code",
    [
        "InvalidImageFormatException",
        "ImageTooLargeException",
        "InvalidParameterException",
        "InvalidS3ObjectException",
        "AccessDeniedException",
    ],
)
def test_permanent_refusals_are_not_retried(endpoint, code):
    endpoint.configure(fail_with=code)
    det = detector()
    with photo(ASTRONAUT.read_bytes()) as p, pytest.raises(RekognitionRefused) as info:
        det.detect(p)
    assert info.value.code == code
    assert info.value.reason.startswith("rekognition_")
    assert endpoint.snapshot()["calls"] == 1


def test_permanent_refusal_falls_back_to_local_when_configured(endpoint):
    endpoint.configure(fail_with="InvalidImageFormatException")
    local = FixedDetector([Face(1, 2, 30, 40, 0.9)])
    det = detector(settings(fallback="local"), local=local)
    with photo(ASTRONAUT.read_bytes()) as p:
        assert det.detect(p) == local.faces
    assert local.calls == 1


def test_unknown_refusals_fail_without_retrying(endpoint):
    endpoint.configure(fail_with="UnrecognizedClientException")
    det = detector()
    with photo(ASTRONAUT.read_bytes()) as p, pytest.raises(DetectionFailed):
        det.detect(p)
    assert endpoint.snapshot()["calls"] == 1


def test_connection_errors_are_retried_then_fail_closed(monkeypatch, runtime):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    for k, v in {"AWS_ACCESS_KEY_ID": "l", "AWS_SECRET_ACCESS_KEY": "l", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_ENDPOINT_URL_REKOGNITION", f"http://127.0.0.1:{port}")
    det = detector(settings(max_attempts=3))
    with photo(ASTRONAUT.read_bytes()) as p, pytest.raises(DetectionFailed):
        det.detect(p)
    assert value(det, "rekognition_calls") == 3


def test_slow_answers_time_out_and_are_retried(endpoint, astronaut_box):
    endpoint.configure(delay_seconds=1.5)
    det = detector(settings(max_attempts=2, timeout_seconds=0.5))
    with photo(ASTRONAUT.read_bytes()) as p, pytest.raises(DetectionFailed):
        det.detect(p)
    assert value(det, "rekognition_calls") == 2


def test_a_full_answer_of_100_faces_adds_the_local_detector(endpoint, astronaut_box):
    endpoint.configure(extra_faces=120)
    extra = Face(400, 400, 50, 50, 0.8, "local")
    local = FixedDetector([extra])
    det = detector(local=local)
    with photo(ASTRONAUT.read_bytes()) as p:
        faces = det.detect(p)
    assert local.calls == 1
    assert extra in faces
    assert len(faces) == 101
    assert det.metrics.registry.get_sample_value("faceblur_rekognition_face_limit_total") == 1


def test_fewer_than_100_faces_run_only_the_local_small_face_levels(endpoint):
    endpoint.configure(extra_faces=50)
    local = FixedDetector([])
    with photo(ASTRONAUT.read_bytes()) as p:
        faces = detector(local=local).detect(p)
    assert (local.calls, local.small_calls) == (0, 1)
    assert len(faces) == 51


def test_small_faces_rekognition_cannot_see_in_a_big_photo_are_found_locally(endpoint):
    """Rekognition's smallest face in a 12 MP photo is ~84 px: a 36 px face there is the local fine levels' job."""
    face = np.asarray(PILImage.fromarray(upright_astronaut()[20:240, 140:320]).resize((48, 48)))
    canvas = np.full((3024, 4032, 3), 118, np.uint8)
    canvas[1500:1548, 2000:2048] = face
    data = jpeg_bytes(canvas)
    assert smallest_face((4032, 3024)) == pytest.approx(84)
    with photo(data) as p:
        alone = detector(alone=False).detect(p)  # what Rekognition itself answers
        faces = detector().detect(p)
    assert alone == []
    assert len(faces) == 1, faces
    assert faces[0].source == "local"
    assert abs(faces[0].x + faces[0].w / 2 - 2024) < 12
    assert abs(faces[0].y + faces[0].h / 2 - 1524) < 12


def test_both_mode_unites_and_counts_single_detector_faces(endpoint, astronaut_box):
    metrics = Metrics()
    s = settings()
    remote = RekognitionDetector(
        s, client=make_client(s), metrics=metrics, bucket=TokenBucket(1000), sleep=lambda _: None, alone=False
    )
    only_local = Face(400, 400, 50, 50, 0.8, "local")
    local = FixedDetector([Face(*astronaut_box, 0.9, "local"), only_local])
    local.name = "local"
    both = CombinedDetector(remote, local, 0.3, metrics)
    with photo(ASTRONAUT.read_bytes()) as p:
        faces = both.detect(p)
    assert len(faces) == 2
    assert only_local in faces
    get = metrics.registry.get_sample_value
    assert get("faceblur_faces_single_detector_total", {"detector": "local"}) == 1
    assert get("faceblur_faces_single_detector_total", {"detector": "rekognition"}) == 0
    assert get("faceblur_faces_total", {"detector": "rekognition"}) == 1
    # The real local detector counts its own faces (test_metrics.py); this double counts none.
    assert get("faceblur_faces_total", {"detector": "local"}) == 0
