"""A fake Amazon Rekognition endpoint for DetectFaces: a small threaded HTTP server on 127.0.0.1.

It speaks the real AWS JSON 1.1 protocol (POST /, `X-Amz-Target: RekognitionService.DetectFaces`,
`Content-Type: application/x-amz-json-1.1`), so boto3 builds, signs and parses real requests; point a client at it
with boto3's own `AWS_ENDPOINT_URL_REKOGNITION`. Faces come from the local CenterFace detector on the image decoded
with the project's codec, reported as Rekognition documents it: for a JPEG the Exif orientation is applied and the
boxes are of the upright image; a PNG is not corrected (boxes of the stored pixels, even with an eXIf chunk).
Images are refused as Rekognition does: not JPEG/PNG -> InvalidImageFormatException, over 5 MB ->
ImageTooLargeException, a side under 80 px -> InvalidParameterException.

Faults can be injected: ThrottlingException at a rate (seeded RNG) or in bursts (the first n of every m calls),
5xx InternalServerError at a rate, one fixed error for every call, slow answers. Calls, throttles, server errors and
refusals are counted.

    python -m worker.dev.fake_rekognition --port 9400 --throttle-rate 0.5
    AWS_ENDPOINT_URL_REKOGNITION=http://127.0.0.1:9400 DETECTOR=rekognition python -m worker run
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import random
import sys
import threading
import time
from dataclasses import dataclass, field, fields, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from worker import process
from worker.config import DetectSettings, ImageSettings
from worker.errors import FaceblurError
from worker.geometry import orient_box

TARGET = "RekognitionService.DetectFaces"
MAX_BYTES = 5 * 1024 * 1024
MIN_SIDE = 80
FACE_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Behaviour:
    throttle_rate: float = 0.0  # probability that a call is answered ThrottlingException
    throttle_burst: tuple[int, int] = (0, 0)  # (n, m): the first n calls of every m are throttled
    error_rate: float = 0.0  # probability of a 500 InternalServerError
    fail_with: str = ""  # answer every call with this error code (e.g. InvalidImageFormatException)
    delay_seconds: float = 0.0  # sleep before answering (after the throttling/error decision)
    extra_faces: int = 0  # add this many small synthetic faces (answers are capped at 100, like DetectFaces)
    seed: int = 0


@dataclass
class Counts:
    calls: int = 0
    throttles: int = 0
    server_errors: int = 0
    refusals: int = 0  # 4xx other than throttling
    answered: int = 0  # 200 responses

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_SERVER_ERRORS = {"InternalServerError": 500, "ServiceUnavailableException": 503}


class Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class FakeRekognition:
    behaviour: Behaviour = field(default_factory=Behaviour)
    host: str = "127.0.0.1"
    port: int = 0
    counts: Counts = field(default_factory=Counts)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.behaviour.seed)
        self._cache: dict[bytes, list[dict[str, Any]]] = {}
        self._detector: Any = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control ------------------------------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        assert self._server is not None, "not started"
        return f"http://{self.host}:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """boto3's own setting that sends Rekognition (only) to this server."""
        return {"AWS_ENDPOINT_URL_REKOGNITION": self.endpoint}

    def configure(self, **changes: Any) -> None:
        """Change the injected faults (and reseed the RNG when `seed` is given)."""
        with self._lock:
            self.behaviour = replace(self.behaviour, **changes)
            if "seed" in changes:
                self._rng = random.Random(self.behaviour.seed)

    def reset_counts(self) -> None:
        with self._lock:
            self.counts = Counts()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return self.counts.as_dict()

    def start(self) -> FakeRekognition:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = _Server((self.host, self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-rekognition", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> FakeRekognition:
        return self if self._server else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour ----------------------------------------------------------------------------------------------------
    def decide(self) -> tuple[str, float]:
        """Count the call and pick its fate: '' (answer), or an error code. Returns (code, delay)."""
        with self._lock:
            b = self.behaviour
            self.counts.calls += 1
            n = self.counts.calls
            # Draw both numbers on every call, so the sequence of fates depends only on the seed.
            throttle_draw, error_draw = self._rng.random(), self._rng.random()
            burst_n, burst_m = b.throttle_burst
            code = ""
            if b.fail_with:
                code = b.fail_with
            elif (burst_m and (n - 1) % burst_m < burst_n) or throttle_draw < b.throttle_rate:
                code = "ThrottlingException"
            elif error_draw < b.error_rate:
                code = "InternalServerError"
            if code == "ThrottlingException":
                self.counts.throttles += 1
            elif code in _SERVER_ERRORS:
                self.counts.server_errors += 1
            elif code:
                self.counts.refusals += 1
            return code, b.delay_seconds

    def detect_faces(self, body: dict[str, Any]) -> dict[str, Any]:
        image = body.get("Image") or {}
        if "Bytes" not in image:
            raise Refused("InvalidParameterException", "the fake supports Image.Bytes only")
        try:
            data = base64.b64decode(image["Bytes"], validate=True)
        except (binascii.Error, TypeError) as exc:
            raise Refused("InvalidParameterException", "Image.Bytes is not base64") from exc
        if len(data) > MAX_BYTES:
            raise Refused("ImageTooLargeException", "Image size is too large.")
        key = hashlib.sha256(data).digest()
        with self._lock:
            cached = self._cache.get(key)
        if cached is None:
            cached = self._faces(data)
            with self._lock:
                self._cache[key] = cached
        details = list(cached)
        extra = self.behaviour.extra_faces
        for i in range(extra):
            left, top = (i % 10) * 0.1 + 0.02, (i // 10 % 10) * 0.1 + 0.02
            details.append(
                {"BoundingBox": {"Width": 0.03, "Height": 0.04, "Left": left, "Top": top}, "Confidence": 90.0}
            )
        return {"FaceDetails": details[:FACE_LIMIT]}

    def _faces(self, data: bytes) -> list[dict[str, Any]]:
        from worker.detect.rekognition import smallest_face
        from worker.imaging import codec  # loads ImageMagick: after process.prepare()

        try:
            coder = codec.sniff(data)
            if coder not in ("jpeg", "png"):
                raise Refused("InvalidImageFormatException", "Request has invalid image format")
            header = codec.read_header(data, ImageSettings())
            if min(header.width, header.height) < MIN_SIDE:
                raise Refused("InvalidParameterException", "Request has invalid parameters")
            with codec.decode(data, header) as photo:
                (view,) = photo.views() if not photo.has_alpha else photo.views()[:1]
                faces = self._local().detect(view)
                upright_w, upright_h = photo.size
                orientation = header.orientation
        except FaceblurError as exc:
            raise Refused("InvalidImageFormatException", "Request has invalid image format") from exc
        out = []
        for f in faces:
            if f.w < smallest_face((upright_w, upright_h)):
                continue  # Rekognition does not see faces under its minimum size
            x, y, w, h = f.x, f.y, f.w, f.h
            size_w, size_h = upright_w, upright_h
            if coder == "png" and orientation != 1:
                # Rekognition does not correct PNGs: report the box in the stored pixels.
                inverse = {6: 8, 8: 6}.get(orientation, orientation)
                x, y, w, h = orient_box(x, y, w, h, inverse, upright_w, upright_h)
                size_w, size_h = header.width, header.height
            out.append(
                {
                    "BoundingBox": {"Width": w / size_w, "Height": h / size_h, "Left": x / size_w, "Top": y / size_h},
                    "Confidence": round(100.0 * f.score, 3),
                }
            )
        out.sort(key=lambda d: -d["BoundingBox"]["Width"] * d["BoundingBox"]["Height"])  # the largest first
        return out

    def _local(self) -> Any:
        with self._lock:
            if self._detector is None:
                from worker.detect.local import LocalDetector

                # Rekognition reports confident faces only: a strict threshold keeps the fake from inventing faces
                # in noise that the real service would not report.
                self._detector = LocalDetector(DetectSettings(threshold=0.5, coarse_threshold=0.5))
            return self._detector


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (a worker killed mid-call, a timeout) is normal here: no traceback for it."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeRekognition
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the counters say what happened
        pass

    def _send(self, status: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", hashlib.md5(body + str(time.time()).encode()).hexdigest())
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (read timeout): nothing to answer
            self.close_connection = True

    def _error(self, code: str, message: str) -> None:
        self._send(_SERVER_ERRORS.get(code, 400), {"__type": code, "message": message})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        fake = self.server_fake
        if self.headers.get("X-Amz-Target") != TARGET:
            self._error("UnknownOperationException", f"only {TARGET} is implemented")
            return
        code, delay = fake.decide()
        if delay:
            time.sleep(delay)
        if code:
            self._error(code, "Rate exceeded" if code == "ThrottlingException" else f"injected {code}")
            return
        try:
            answer = fake.detect_faces(json.loads(raw or b"{}"))
        except Refused as exc:
            with fake._lock:
                fake.counts.refusals += 1
            self._error(exc.code, str(exc))
            return
        except json.JSONDecodeError:
            self._error("SerializationException", "request body is not JSON")
            return
        with fake._lock:
            fake.counts.answered += 1
        self._send(200, answer)


def start_fake_rekognition(port: int = 0, host: str = "127.0.0.1", **behaviour: Any) -> FakeRekognition:
    """A started fake; `behaviour` holds Behaviour fields (throttle_rate=0.5, error_rate=..., fail_with=...)."""
    return FakeRekognition(Behaviour(**behaviour), host=host, port=port).start()


def main(argv: list[str] | None = None) -> int:
    process.prepare()
    p = argparse.ArgumentParser(prog="python -m worker.dev.fake_rekognition", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--throttle-rate", type=float, default=0.0)
    p.add_argument("--throttle-burst", default="0/0", help="n/m: throttle the first n of every m calls")
    p.add_argument("--error-rate", type=float, default=0.0, help="probability of a 500 InternalServerError")
    p.add_argument("--fail-with", default="", help="answer every call with this error code")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    n, _, m = args.throttle_burst.partition("/")
    fake = start_fake_rekognition(
        args.port,
        throttle_rate=args.throttle_rate,
        throttle_burst=(int(n or 0), int(m or 0)),
        error_rate=args.error_rate,
        fail_with=args.fail_with,
        delay_seconds=args.delay,
        seed=args.seed,
    )
    print(f"fake Rekognition at {fake.endpoint}  (AWS_ENDPOINT_URL_REKOGNITION={fake.endpoint})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
        print(json.dumps(fake.snapshot()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
