"""A fault-injecting HTTP reverse proxy for the chaos soak test.

Worker processes get `AWS_ENDPOINT_URL=<proxy.url>`; the proxy forwards every request to a moto server (S3 and SQS
on one port) and, for a configurable fraction of them, injects the failures a real AWS endpoint produces: 5xx
answers before or *after* the request was applied, slow answers and TCP resets before or after the request was
applied. The "after" kinds lose a response whose effect already happened upstream, which is what the worker's
idempotency has to survive.

It is protocol-agnostic: method, request-target, headers and body go upstream unchanged apart from hop-by-hop
headers (the client's Host is kept, so SigV4 signatures and the URLs moto builds from Host, e.g. QueueUrl, still
name the proxy). Client connections are HTTP/1.1 keep-alive, as botocore pools them; each client connection has
its own upstream connection.

    proxy = FaultProxy("http://127.0.0.1:5000", Faults(rate=0.1, seed=1)).start()
    proxy.url        # http://127.0.0.1:PORT
    proxy.enabled = False   # stop injecting (e.g. before the final drain)
    proxy.counts()   # {"error_before": n, ..., "forwarded": n, "requests": n, ...}
    proxy.stop()

or as a process: `python -m tests.soak.faultproxy --upstream URL --port N --rate 0.1` prints its URL, runs until
SIGTERM/SIGINT and then prints its counts as JSON on stderr; SIGUSR1 stops injecting, SIGUSR2 resumes.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import random
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)


class Fault(StrEnum):
    ERROR_BEFORE = "error_before"  # 500/503 without forwarding: the request never happened
    ERROR_AFTER = "error_after"  # forwarded and applied, then 500/503 instead of the real answer
    SLOW = "slow"  # a delay, then forwarded normally
    RESET_BEFORE = "reset_before"  # TCP RST without forwarding
    RESET_AFTER = "reset_after"  # forwarded and applied, then TCP RST instead of the answer


BEFORE = frozenset({Fault.ERROR_BEFORE, Fault.RESET_BEFORE})


@dataclass(frozen=True, slots=True)
class Request:
    """What an `exclude` predicate sees: the request as the client sent it (body de-chunked)."""

    method: str
    path: str  # request-target: path and query, still percent-encoded
    headers: Message
    body: bytes

    @property
    def operation(self) -> str | None:
        """The SQS-style operation name (JSON `X-Amz-Target: AmazonSQS.SendMessage` or query `Action=`), if any."""
        target = self.headers.get("X-Amz-Target")
        if target:
            return target.rsplit(".", 1)[-1]
        action = _form(self).get("Action")
        return action[0] if action else None


@dataclass(frozen=True, slots=True)
class Faults:
    """Which faults to inject and how often. `rate` is the fraction of requests that get a fault; `weights` split
    it between the kinds (missing kinds never happen). `exclude` exempts requests (e.g. the harness's own checks)."""

    rate: float = 0.0
    weights: Mapping[Fault, float] = field(default_factory=lambda: dict.fromkeys(Fault, 1.0))
    slow_seconds: tuple[float, float] = (0.3, 2.0)
    error_statuses: tuple[int, ...] = (500, 503)
    exclude: Callable[[Request], bool] | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be within [0, 1], not {self.rate}")
        weights = {Fault(k): float(v) for k, v in self.weights.items()}  # also accepts "slow"-style keys
        if any(w < 0 for w in weights.values()) or (self.rate > 0 and not any(weights.values())):
            raise ValueError(f"weights must be >= 0 with a positive total: {self.weights}")
        object.__setattr__(self, "weights", weights)
        low, high = self.slow_seconds
        if not 0 <= low <= high:
            raise ValueError(f"slow_seconds must be 0 <= min <= max, not {self.slow_seconds}")
        if not self.error_statuses or any(s not in (500, 503) for s in self.error_statuses):
            raise ValueError(f"error_statuses must be among 500 and 503, not {self.error_statuses}")

    @classmethod
    def only(cls, *kinds: Fault, rate: float = 1.0, **kwargs: object) -> Faults:
        """Faults of the given kinds only, equally likely."""
        return cls(rate=rate, weights=dict.fromkeys(kinds, 1.0), **kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class _Decision:
    fault: Fault | None
    status: int = 0
    delay: float = 0.0


# Hop-by-hop headers (RFC 9110 7.6.1) are per connection; Content-Length is recomputed, Expect was answered here.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)
UPSTREAM_TIMEOUT = 120.0  # above SQS's 20 s long poll


class FaultProxy:
    def __init__(self, upstream: str, faults: Faults | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL, not {upstream!r}")
        self.upstream_host: str = parts.hostname
        self.upstream_port: int = parts.port or 80
        self.faults: Faults = faults or Faults()  # may be replaced while running
        self._address = (host, port)
        self._rng = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        keys = [*(kind.value for kind in Fault), "forwarded", "requests", "upstream_errors", "connections"]
        self._counts: dict[str, int] = dict.fromkeys(keys, 0)
        self._enabled = threading.Event()
        self._enabled.set()
        self._open: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._server = _Server(self._address, self)
        # A short poll interval: stop() waits for serve_forever to notice the shutdown request.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="faultproxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        # Keep-alive connections outlive the listener; end them so no worker keeps talking through a stopped proxy.
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self if self._server else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- runtime control -------------------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self._enabled.is_set()

    @enabled.setter
    def enabled(self, value: bool) -> None:
        if value:
            self._enabled.set()
        else:
            self._enabled.clear()

    def counts(self) -> dict[str, int]:
        """Injections by kind, plus "requests" (complete requests received), "forwarded" (upstream answered),
        "upstream_errors" (upstream unreachable: answered 502) and "connections" (client connections accepted).
        requests == forwarded + error_before + reset_before + upstream_errors."""
        with self._lock:
            return dict(self._counts)

    # -- used by the handler ---------------------------------------------------------------------------------------

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _track(self, sock: socket.socket, opened: bool) -> None:
        with self._lock:
            if opened:
                self._open.add(sock)
                self._counts["connections"] += 1
            else:
                self._open.discard(sock)

    def _decide(self, request: Request) -> _Decision:
        faults = self.faults
        with self._lock:
            self._counts["requests"] += 1
            # Draw under the lock so a seed gives one sequence of decisions (the order of requests may still vary).
            if not self._enabled.is_set() or faults.rate <= 0 or self._rng.random() >= faults.rate:
                return _Decision(None)
            kinds, weights = zip(*faults.weights.items(), strict=True)
            fault = self._rng.choices(kinds, weights)[0]
            status = self._rng.choice(faults.error_statuses)
            delay = self._rng.uniform(*faults.slow_seconds)
        # Outside the lock: the predicate is the harness's code.
        if faults.exclude is not None and faults.exclude(request):
            return _Decision(None)
        return _Decision(fault, status, delay)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a soak starts many workers at once

    def __init__(self, address: tuple[str, int], proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a reverse DNS lookup that can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            log.debug("client %s went away", client_address)  # expected: clients give up on slow answers
        else:
            log.exception("faultproxy: error serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and BaseHTTPRequestHandler answers Expect: 100-continue
    server: _Server
    _upstream: http.client.HTTPConnection | None = None

    def setup(self) -> None:
        super().setup()
        self.server.proxy._track(self.connection, opened=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.proxy._track(self.connection, opened=False)
            if self._upstream is not None:
                self._upstream.close()

    def log_message(self, format: str, *args: object) -> None:
        log.debug("faultproxy: " + format, *args)

    def _handle(self) -> None:
        body = self._read_body()
        if body is None:
            return
        request = Request(self.command, self.path, self.headers, body)
        proxy = self.server.proxy
        decision = proxy._decide(request)
        if decision.fault is Fault.ERROR_BEFORE:
            proxy._count(Fault.ERROR_BEFORE)
            self._reply_error(request, decision.status)
            return
        if decision.fault is Fault.RESET_BEFORE:
            proxy._count(Fault.RESET_BEFORE)
            self._reset()
            return
        if decision.fault is Fault.SLOW:
            proxy._count(Fault.SLOW)
            time.sleep(decision.delay)

        answer = self._forward(request)
        if answer is None:
            proxy._count("upstream_errors")
            self._reply(502, [("Content-Type", "text/plain")], b"faultproxy: upstream unreachable\n")
            return
        proxy._count("forwarded")
        if decision.fault is Fault.ERROR_AFTER:
            proxy._count(Fault.ERROR_AFTER)
            self._reply_error(request, decision.status)
        elif decision.fault is Fault.RESET_AFTER:
            proxy._count(Fault.RESET_AFTER)
            self._reset()
        else:
            self._relay(*answer)

    # http.server dispatches on these names.
    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = _handle  # noqa: N815

    # -- request side ----------------------------------------------------------------------------------------------

    def _read_body(self) -> bytes | None:
        """The whole request body (always read, so the connection stays usable); None after a 400."""
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self._read_chunked()
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self.close_connection = True
            self._reply(400, [("Content-Type", "text/plain"), ("Connection", "close")], b"bad request body\n")
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise ValueError("connection closed inside a chunked body")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                break
            chunks.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF after the chunk
        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
            pass  # trailers are dropped: the body goes upstream with a Content-Length
        return b"".join(chunks)

    def _forward(self, request: Request) -> tuple[int, str, list[tuple[str, str]], bytes] | None:
        """Send the request upstream; (status, reason, headers, body), or None if the upstream could not answer."""
        dropped = HOP_BY_HOP | {v.strip().lower() for v in request.headers.get("Connection", "").split(",")}
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in dropped]
        if "host" not in {k.lower() for k, _ in headers}:
            headers.append(("Host", f"{self.server.proxy.upstream_host}:{self.server.proxy.upstream_port}"))
        if request.body or "Content-Length" in request.headers or "Transfer-Encoding" in request.headers:
            headers.append(("Content-Length", str(len(request.body))))
        target = request.path
        if "://" in target:  # absolute-form request-target: forward origin-form
            parts = urlsplit(target)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

        for attempt in (1, 2):
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection(
                    self.server.proxy.upstream_host, self.server.proxy.upstream_port, timeout=UPSTREAM_TIMEOUT
                )
            conn = self._upstream
            reused = conn.sock is not None
            try:
                conn.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
                for k, v in headers:
                    conn.putheader(k, v)
                conn.endheaders(request.body or None)
                response = conn.getresponse()
                return response.status, response.reason, response.getheaders(), response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                conn.close()
                self._upstream = None
                # A kept-alive upstream connection may have been closed while idle; the request was then never
                # read, so sending it once more on a fresh connection is safe (urllib3 does the same).
                if not reused or attempt == 2:
                    log.warning("faultproxy: upstream failed: %s", e)
                    return None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                self._upstream = None
                log.warning("faultproxy: upstream failed: %s", e)
                return None
        return None

    # -- response side ---------------------------------------------------------------------------------------------

    def _relay(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
        bodiless = self.command == "HEAD" or status in (204, 304) or status < 200
        kept = [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP]
        if bodiless:
            # HEAD's Content-Length describes the object (head_object's ContentLength): relay it as is.
            kept += [(k, v) for k, v in headers if k.lower() == "content-length"]
            self._write(status, kept, b"", reason)
        else:
            self._reply(status, kept, body, reason)

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes, reason: str | None = None) -> None:
        self._write(status, [*headers, ("Content-Length", str(len(body)))], body, reason)

    def _write(self, status: int, headers: list[tuple[str, str]], body: bytes, reason: str | None) -> None:
        self.send_response_only(status, reason)  # not send_response: upstream's Date and Server are relayed
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
        self.log_request(status, len(body))

    def _reply_error(self, request: Request, status: int) -> None:
        headers, body = error_response(request, status)
        self._reply(status, headers, body)

    def _reset(self) -> None:
        """Drop the client connection with a TCP RST: SO_LINGER 0, then close without shutdown (which sends FIN)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # its reference would defer the real close to finish()
        self.connection.close()


def _form(request: Request) -> dict[str, list[str]]:
    """Query-protocol parameters (form body or query string)."""
    params = parse_qs(urlsplit(request.path).query)
    if request.headers.get_content_type() == "application/x-www-form-urlencoded":
        params.update(parse_qs(request.body.decode("utf-8", "replace")))
    return params


def error_response(request: Request, status: int) -> tuple[list[tuple[str, str]], bytes]:
    """A 500/503 the way the service the request is for answers it, so botocore parses and retries it as such."""
    request_id = uuid.uuid4().hex
    unavailable = status == 503
    target = request.headers.get("X-Amz-Target")
    if target:  # JSON protocol (SQS since botocore 1.31.x); the query-compatible header sets the error code
        code = "ServiceUnavailable" if unavailable else "InternalError"
        namespace = "com.amazonaws.sqs#" if target.startswith("AmazonSQS.") else ""
        body = json.dumps({"__type": namespace + code, "message": f"faultproxy: injected {status}"}).encode()
        content_type = request.headers.get("Content-Type") or "application/x-amz-json-1.0"
        return [
            ("Content-Type", content_type),
            ("x-amzn-RequestId", request_id),
            ("x-amzn-query-error", f"{code};Receiver"),
        ], body
    if "Action" in _form(request):  # query protocol
        code = "ServiceUnavailable" if unavailable else "InternalError"
        body = (
            f"<ErrorResponse><Error><Type>Receiver</Type><Code>{code}</Code>"
            f"<Message>faultproxy: injected {status}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        return [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)], body
    # S3 (REST-XML)
    code, message = ("SlowDown", "Please reduce your request rate.") if unavailable else ("InternalError", "")
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message or 'We encountered an internal error. Please try again.'}"
        f" (faultproxy: injected {status})</Message><RequestId>{request_id}</RequestId></Error>"
    ).encode()
    return [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)], body


def _weights(text: str) -> dict[Fault, float]:
    """`error_before=1,slow=2` -> weights; a bare kind means weight 1."""
    weights: dict[Fault, float] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        kind, _, weight = item.partition("=")
        weights[Fault(kind.strip())] = float(weight or 1)
    return weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak.faultproxy", description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:5000 (the moto server)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--rate", type=float, default=0.1, help="fraction of requests that get a fault")
    parser.add_argument("--weights", type=_weights, default=None, help="e.g. error_before=1,slow=2 (default: equal)")
    parser.add_argument("--slow", type=float, nargs=2, default=(0.3, 2.0), metavar=("MIN", "MAX"))
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")

    faults = Faults(rate=args.rate, slow_seconds=tuple(args.slow), seed=args.seed)
    if args.weights is not None:
        faults = Faults(rate=args.rate, weights=args.weights, slow_seconds=tuple(args.slow), seed=args.seed)
    proxy = FaultProxy(args.upstream, faults, host=args.host, port=args.port).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())

    def switch(signum: int, _frame: object) -> None:
        proxy.enabled = signum == signal.SIGUSR2

    signal.signal(signal.SIGUSR1, switch)
    signal.signal(signal.SIGUSR2, switch)
    print(proxy.url, flush=True)
    while not done.wait(1.0):  # a timed wait so signal handlers run promptly
        pass
    proxy.stop()
    print(json.dumps(proxy.counts()), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
